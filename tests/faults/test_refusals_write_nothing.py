"""Refused input writes nothing: no MLflow store, run or study is created for a command that
ends in a one-line refusal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.experiments.test_run import _write_jpegs
from tests.faults.processes import TINY, env
from tests.servers import free_port

pytestmark = pytest.mark.slow


def _run(tmp_path, *overrides):
    return subprocess.run([sys.executable, "-m", "experiments.run", *TINY, *overrides], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_corrupt_image_is_named_before_any_store_or_run_is_written(tmp_path):
    _write_jpegs(tmp_path / "imgs", per_class=12, size=(16, 16))
    bad = tmp_path / "imgs" / "cat" / "003.jpg"
    bad.write_bytes(bad.read_bytes()[:120])
    out = _run(tmp_path, "data=image_folder", f"data.path={tmp_path / 'imgs'}", "data.image_size=[16,16]",
               f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"hydra.run.dir={tmp_path / 'out'}")  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: data.path: received ") and str(bad) in line, line
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "m.db").exists()  # no store, so no FAILED run in it


def test_an_unreachable_postgresql_storage_leaves_no_tracking_store(tmp_path):
    storage = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/optuna"
    out = _run(tmp_path, "+sweep=quick", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=1",
               f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"hydra.sweep.dir={tmp_path / 'multirun'}")  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: hydra.sweeper.storage: cannot open Optuna storage '{storage}'"), line
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "m.db").exists()
