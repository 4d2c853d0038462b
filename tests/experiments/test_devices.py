"""Device placement from the config: each worker its own device slot, for its whole life."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from experiments.devices import check_trial_devices, device_slots
from resnet_blocks import SpecError
from tests.conftest import REPO_ROOT, subprocess_env

APP = REPO_ROOT / "tests" / "plugins" / "where_app.py"


def test_device_slots_from_the_config(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device_slots(None, 1, 1) is None
    assert device_slots([0, 1], 2, 1) == ["0", "0", "1", "1"]
    assert device_slots("cpu", 1, 3) == ["cpu", "cpu", "cpu"]
    monkeypatch.setattr("experiments.devices.visible_gpus", lambda: [])
    assert device_slots("auto", 1, 1) is None  # no GPU: as without placement, no warning
    monkeypatch.setattr("experiments.devices.visible_gpus", lambda: ["0", "1"])
    assert device_slots("auto", 1, 1) == ["0", "1"]
    for bad in ([], [0, 0], [-1], ["a"], "gpu"):
        with pytest.raises(SpecError) as err:
            device_slots(bad, 1, 1)
        assert err.value.field == "hydra.sweeper.devices"
    with pytest.raises(SpecError):
        device_slots([0], 0, 1)
    assert device_slots([0, 1, 2, 3], 1, 1, devices_per_trial=2) == ["0,1", "2,3"]  # mirrored trials
    assert device_slots([0, 1], 2, 1, devices_per_trial=2) == ["0,1", "0,1"]
    with pytest.raises(SpecError) as err:
        device_slots([0, 1, 2], 1, 1, devices_per_trial=2)
    assert err.value.field == "hydra.sweeper.devices_per_trial"


def test_indices_are_positions_among_the_gpus_the_process_was_given(monkeypatch):
    """Under SLURM or in a container, CUDA_VISIBLE_DEVICES names the GPUs this job was given
    (nvidia-smi lists the whole machine's): ``auto`` takes those, and ``[0]`` is the first
    of them, as CUDA numbers them inside the process."""
    monkeypatch.setattr("experiments.devices.visible_gpus", lambda: ["0", "1", "2", "3"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert device_slots("auto", 1, 1) == ["2", "3"]
    assert device_slots([1], 2, 1) == ["3", "3"]
    with pytest.raises(SpecError) as err:
        device_slots([0, 2], 1, 1)
    assert "indices into the 2 GPU(s) this process was given (CUDA_VISIBLE_DEVICES='2,3'): 0 to 1" in str(err.value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,GPU-bb")
    assert device_slots("auto", 1, 1, devices_per_trial=2) == ["GPU-aa,GPU-bb"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # given none: auto is the CPU
    assert device_slots("auto", 1, 1) is None


def test_a_mirrored_trial_on_gpus_needs_several_devices_per_slot():
    check_trial_devices("mirrored", [0, 1], 2)
    check_trial_devices("mirrored", "cpu", 1)  # (mirrored over the CPU: nothing to place)
    check_trial_devices("none", [0, 1], 1)
    with pytest.raises(SpecError) as err:
        check_trial_devices("mirrored", "auto", 1)
    assert err.value.field == "hydra.sweeper.devices_per_trial"
    assert ">= 2 with trainer.distribute=mirrored" in str(err.value)


def _sweep(tmp_path, *overrides, launcher="resnet_blocks_process"):
    args = [sys.executable, str(APP), "--multirun", "hydra/sweeper=resnet_blocks", f"hydra/launcher={launcher}",
            f"record={tmp_path / 'where.jsonl'}", "x=range(0,8)", "hydra.sweeper.n_trials=8",
            "hydra.sweeper.sampler.name=grid", f"hydra.sweeper.storage=sqlite:///{tmp_path / 'o.db'}",
            "hydra.sweeper.allow_sqlite_parallel=true", "hydra.sweeper.direction=minimize",
            f"hydra.sweep.dir={tmp_path / 'm'}", *overrides]  # fmt: skip
    env = subprocess_env()
    env.pop("CUDA_VISIBLE_DEVICES", None)  # (the machine's GPUs, none here: indices are not checked against them)
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [("resnet_blocks_process",), ("joblib", "hydra.launcher.n_jobs=4"), ("submitit_local",)],
    ids=["our-pool", "joblib", "submitit-local"],
)
def test_with_four_devices_eight_trials_run_four_at_a_time_each_on_one_device_of_its_own(tmp_path, launcher):
    """Under our pool, and under Hydra's joblib and local submitit launchers, whose workers
    (jobs) claim their slots from the environment the sweeper gives them."""
    name, *extra = launcher
    out = _sweep(tmp_path, "hydra.sweeper.devices=[0,1,2,3]", "hold_s=5", *extra, launcher=name)  # (all 4 overlap)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = [json.loads(x) for x in (tmp_path / "where.jsonl").read_text().splitlines()]
    assert sorted(j["x"] for j in jobs) == list(range(8))
    assert all(j["cuda_visible_devices"] in {"0", "1", "2", "3"} for j in jobs)  # exactly one device each
    assert all(j["growth"] == "true" for j in jobs)
    by_pid = {}
    for j in jobs:  # a worker keeps its device for its life
        by_pid.setdefault(j["pid"], set()).add(j["cuda_visible_devices"])
    assert all(len(d) == 1 for d in by_pid.values())
    for a, b in itertools.combinations(jobs, 2):  # never two at once on one device
        if a["cuda_visible_devices"] == b["cuda_visible_devices"]:
            assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)
    most = max(sum(1 for j in jobs if j["start"] <= t < j["end"]) for t in (j["start"] for j in jobs))
    assert most == 4  # the pool runs one worker per device


@pytest.mark.slow
def test_two_trials_per_device_share_it_and_more_jobs_than_slots_are_refused(tmp_path):
    out = _sweep(tmp_path, "hydra.sweeper.devices=[5]", "hydra.sweeper.trials_per_device=2")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = [json.loads(x) for x in (tmp_path / "where.jsonl").read_text().splitlines()]
    assert {j["cuda_visible_devices"] for j in jobs} == {"5"} and len({j["pid"] for j in jobs}) == 2
    (tmp_path / "where.jsonl").unlink()
    pairs = _sweep(tmp_path, "hydra.sweeper.devices=[0,1,2,3]", "hydra.sweeper.devices_per_trial=2",
                   "hydra.sweeper.study_name=pairs")  # fmt: skip
    assert pairs.returncode == 0, pairs.stderr[-3000:]
    jobs = [json.loads(x) for x in (tmp_path / "where.jsonl").read_text().splitlines()]
    assert {j["cuda_visible_devices"] for j in jobs} == {"0,1", "2,3"}  # two devices of its own per trial
    bad = _sweep(tmp_path, "hydra.sweeper.devices=[0,1]", "hydra.sweeper.n_jobs=3", "hydra.sweeper.study_name=other")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: hydra.sweeper.n_jobs: received 3"
    )


@pytest.mark.slow
def test_launchers_that_cannot_place_their_jobs_are_refused_in_one_line(tmp_path):
    cases = [
        ("joblib", "hydra.launcher.n_jobs=2", "error: hydra.launcher.n_jobs: received 2; allowed: 4 with hydra.sweeper.devices"),
        ("basic", "hydra.sweeper.n_jobs=1", "error: hydra.sweeper.devices: received [0, 1, 2, 3]; allowed: null with "
         "hydra/launcher=BasicLauncher"),
    ]  # fmt: skip
    for i, (launcher, extra, message) in enumerate(cases):
        bad = _sweep(
            tmp_path, "hydra.sweeper.devices=[0,1,2,3]", extra, f"hydra.sweeper.study_name=s{i}", launcher=launcher
        )
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert bad.stderr.strip().splitlines()[-1].startswith(message), bad.stderr[-2000:]
        assert not (tmp_path / "where.jsonl").exists()  # no job ran
