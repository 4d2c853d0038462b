"""Lock files beside SQLite stores serialise what races and leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from experiments.locks import claim_sqlite_study, sqlite_setup_lock

REPO = Path(__file__).resolve().parents[2]


def test_the_setup_lock_serialises_and_leaves_no_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    inside, overlaps = [0], []

    def hold():
        for _ in range(20):
            with sqlite_setup_lock(url):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.001)
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]  # flock: one per open file, so threads exclude too
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(overlaps) == 1 and len(overlaps) == 80
    assert list(tmp_path.iterdir()) == []


def _claim(url: str, name: str, hold_s: float) -> subprocess.Popen:
    code = (f"import sys, time; from experiments.locks import claim_sqlite_study as c; ok = c({url!r}, {name!r}); "
            f"print(ok, flush=True); time.sleep({hold_s} if ok else 0)")  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)


def test_a_study_claim_lasts_the_process_and_its_file_goes_with_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = _claim(url, "quick", 30)
    assert first.stdout.readline().strip() == "True"
    assert not claim_sqlite_study(url, "quick")  # another live process holds it
    assert claim_sqlite_study(url, "other")
    first.kill()  # killed outright: its file stays, unlocked
    first.wait()
    second = _claim(url, "quick", 0)
    assert second.stdout.readline().strip() == "True"
    second.wait()
    assert [p.name for p in tmp_path.iterdir()] == ["optuna.db.other.worker.lock"]  # ours, held until we exit
