"""Runs and sweep trials that are killed resume where they stopped: real processes killed with
kill -9 and SIGTERM, real checkpoints damaged on disk, real stores."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import psutil
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.faults.processes import TINY, env, new_store, runs, wait_for

pytestmark = pytest.mark.slow

EPOCHS = 12  # long enough that a run is still training well after the epoch a test waits for


def _newest_epoch(folder: Path, pattern: str = "epoch-*/state.json") -> int:
    """The newest complete checkpoint's epoch under ``folder`` (0 if none). Tests wait for "at
    least epoch k", never for one folder: only the newest two are kept, so a poll can miss one."""
    return max((int(p.parent.name.split("-")[1]) for p in folder.glob(pattern)), default=0)


def _run_cmd(tmp_path: Path, uri: str, ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "experiments.run", *TINY, f"trainer.epochs={EPOCHS}",
            f"trainer.checkpoint_dir={ckpt}", f"tracking.tracking_uri={uri}", "tracking.log_model=false",
            f"hydra.run.dir={tmp_path / 'out'}", *extra]  # fmt: skip


def _run(cmd, cwd) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _start_and_stop_after(cmd, cwd, ckpt: Path, epochs: int, sig: int) -> subprocess.Popen:
    """Start ``cmd``; once its checkpoint of epoch ``epochs`` is on disk, send ``sig``."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _newest_epoch(ckpt) >= epochs, 300, proc, f"epoch {epochs}'s checkpoint")
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return proc


def _history(uri: str, run, key: str = "val/loss") -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run.info.run_id, key)]


def _arrays(folder: Path) -> list[np.ndarray]:
    with np.load(folder / "arrays.npz") as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


@pytest.mark.parametrize(
    "extra", [(), ("data.augment=true", "model.dropout=0.3")], ids=["plain", "augmented-with-dropout"]
)
def test_a_run_killed_after_epoch_k_trains_only_the_rest_and_ends_with_the_uninterrupted_weights(tmp_path, extra):
    """Random crops and flips (keyed by the data's seeded stream) and dropout (its layer's seed
    state, checkpointed) draw after the resume what they would have drawn without the kill."""
    whole_uri, whole_ckpt = new_store(tmp_path / "whole.db"), tmp_path / "whole-ckpt"
    _run(_run_cmd(tmp_path, whole_uri, whole_ckpt, "trainer.keep_checkpoints=true", *extra), tmp_path)

    uri, ckpt = new_store(tmp_path / "killed.db"), tmp_path / "ckpt"
    cmd = _run_cmd(tmp_path, uri, ckpt, "trainer.keep_checkpoints=true", *extra)
    killed = _start_and_stop_after(cmd, tmp_path, ckpt, 2, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    k = max(int(p.name.split("-")[1]) for p in ckpt.glob("epoch-*"))  # (the kill may land after epoch 3's)
    resumed = _run(cmd, tmp_path)
    assert f"{k} epoch(s) trained before" in resumed.stdout + resumed.stderr

    (whole,) = runs(whole_uri)
    first, second = sorted(runs(uri), key=lambda r: r.info.start_time)
    m = second.data.metrics
    steps_per_epoch = -(-int(m["data/num_train"]) // 128)
    assert m["train/epochs_resumed"] == k and m["train/epochs_run"] == EPOCHS
    assert m["train/steps_trained"] == (EPOCHS - k) * steps_per_epoch  # exactly the remaining epochs' steps
    # The resumed run's history is whole (the restored epochs, then its own), with no gap or
    # repeat, and equal to the uninterrupted run's, as are the final weights (CPU: deterministic).
    assert [s for s, _ in _history(uri, second)] == list(range(1, EPOCHS + 1))
    assert _history(uri, second) == _history(whole_uri, whole)
    assert m["best/val/accuracy"] == whole.data.metrics["best/val/accuracy"]
    final, reference = _arrays(ckpt / f"epoch-{EPOCHS:04d}"), _arrays(whole_ckpt / f"epoch-{EPOCHS:04d}")
    assert len(final) == len(reference) and all(np.array_equal(a, b) for a, b in zip(final, reference, strict=True))
    assert m["test/accuracy"] == whole.data.metrics["test/accuracy"]  # the model kept (best epoch) is the same


def _sleep_into_epoch_3(ckpt: Path) -> None:
    """Once epoch 2's checkpoint is in ``ckpt``: sleep until 40% into epoch 3 (timed from the
    first two checkpoints), inside its training batches."""
    written = {p.parent.name: json.loads(p.read_text())["written"] for p in ckpt.glob("epoch-*/state.json")}
    period = written["epoch-0002"] - written["epoch-0001"] if "epoch-0001" in written else 1.0
    time.sleep(max(0.0, written["epoch-0002"] + 0.4 * period - time.time()))


def _stop_mid_epoch(cmd, cwd, ckpt: Path, sig: int) -> subprocess.Popen:
    """Start ``cmd``; send ``sig`` 40% into epoch 3."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _newest_epoch(ckpt) >= 2, 300, proc, "epoch 2's checkpoint")
    _sleep_into_epoch_3(ckpt)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return proc


# Small batches and a small validation split: most of an epoch is its training batches.
MID_EPOCH = ("trainer.batch_size=16", "data.validation_split=0.05", "trainer.keep_checkpoints=true")


def test_sigterm_mid_epoch_writes_a_stop_checkpoint_and_the_next_attempt_trains_only_the_remaining_batches(tmp_path):
    """SIGTERM inside an epoch: a checkpoint at that batch boundary; the next attempt trains that
    epoch's remaining batches, then the rest, and ends with an uninterrupted run's weights,
    metrics (its resumed epoch's training metrics included) and test accuracy."""
    whole_uri, whole_ckpt = new_store(tmp_path / "whole.db"), tmp_path / "whole-ckpt"
    _run(_run_cmd(tmp_path, whole_uri, whole_ckpt, *MID_EPOCH), tmp_path)

    uri, ckpt = new_store(tmp_path / "mlflow.db"), tmp_path / "ckpt"
    cmd = _run_cmd(tmp_path, uri, ckpt, *MID_EPOCH)
    stopped = _stop_mid_epoch(cmd, tmp_path, ckpt, signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM
    newest = max(ckpt.glob("epoch-*"))
    assert "-batch-" in newest.name, sorted(p.name for p in ckpt.glob("epoch-*"))
    state = json.loads((newest / "state.json").read_text())
    k, b, steps_before = state["epochs"], state["batch"], state["steps"]
    resumed = _run(cmd, tmp_path)
    assert f"{k} epoch(s) trained before, {steps_before} step(s)" in resumed.stdout + resumed.stderr

    (whole,) = runs(whole_uri)
    first, second = sorted(runs(uri), key=lambda r: r.info.start_time)
    assert first.info.status == "KILLED" and first.data.tags["failure_reason"] == "terminated by SIGTERM"
    m = second.data.metrics
    steps_per_epoch = -(-int(m["data/num_train"]) // 16)
    assert 0 < b < steps_per_epoch and steps_before == k * steps_per_epoch + b
    assert m["train/epochs_resumed"] == k and m["train/epochs_run"] == EPOCHS
    assert m["train/steps_trained"] == EPOCHS * steps_per_epoch - steps_before  # not one batch twice
    for key in ("val/loss", "train/loss", "train/accuracy"):
        assert [s for s, _ in _history(uri, second, key)] == list(range(1, EPOCHS + 1))
        assert _history(uri, second, key) == _history(whole_uri, whole, key), key
    final, reference = _arrays(ckpt / f"epoch-{EPOCHS:04d}"), _arrays(whole_ckpt / f"epoch-{EPOCHS:04d}")
    assert len(final) == len(reference) and all(np.array_equal(a, b) for a, b in zip(final, reference, strict=True))
    assert m["test/accuracy"] == whole.data.metrics["test/accuracy"]


def test_sigterm_leaves_a_checkpoint_the_next_attempt_resumes_from_and_a_finished_run_keeps_none(tmp_path):
    uri, ckpt = new_store(tmp_path / "mlflow.db"), tmp_path / "ckpt"
    cmd = _run_cmd(tmp_path, uri, ckpt)
    stopped = _start_and_stop_after(cmd, tmp_path, ckpt, 2, signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM
    left = sorted(p.name for p in ckpt.glob("epoch-*"))
    assert left and left[-1] >= "epoch-0002"
    k = json.loads((ckpt / left[-1] / "state.json").read_text())["epochs"]
    _run(cmd, tmp_path)
    first, second = sorted(runs(uri), key=lambda r: r.info.start_time)
    assert first.info.status == "KILLED" and first.data.tags["failure_reason"] == "terminated by SIGTERM"
    assert second.info.status == "FINISHED" and second.data.metrics["train/epochs_resumed"] == k
    assert not ckpt.exists()  # a finished run keeps no checkpoint (trainer.keep_checkpoints: false)


def _interrupted_run(tmp_path: Path, uri: str, ckpt: Path, epochs: int) -> list[Path]:
    """A run stopped by Ctrl-C once its checkpoint of epoch ``epochs`` is written; its
    checkpoint folders, newest first (the two it keeps)."""
    proc = _start_and_stop_after(_run_cmd(tmp_path, uri, ckpt), tmp_path, ckpt, epochs, signal.SIGINT)
    assert proc.returncode == 130
    return sorted(ckpt.glob("epoch-*"), reverse=True)


def test_a_truncated_checkpoint_is_ignored_with_a_warning_and_the_one_before_is_used(tmp_path):
    uri, ckpt = new_store(tmp_path / "mlflow.db"), tmp_path / "ckpt"
    newest, before = _interrupted_run(tmp_path, uri, ckpt, 3)
    arrays = newest / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])  # a write cut short
    done = _run(_run_cmd(tmp_path, uri, ckpt, "trainer.keep_checkpoints=true"), tmp_path)
    assert f"{newest.name} ignored: arrays.npz does not match its SHA-256" in done.stdout + done.stderr
    last = max(runs(uri), key=lambda r: r.info.start_time)
    assert last.data.metrics["train/epochs_resumed"] == int(before.name.split("-")[1])  # the one before
    assert last.info.status == "FINISHED" and last.data.metrics["train/epochs_run"] == EPOCHS


def test_a_torn_state_file_is_ignored_and_training_starts_over(tmp_path):
    uri, ckpt = new_store(tmp_path / "mlflow.db"), tmp_path / "ckpt"
    for folder in _interrupted_run(tmp_path, uri, ckpt, 2):
        (folder / "state.json").write_text('{"format": 1, "conf')  # a write cut short
    done = _run(_run_cmd(tmp_path, uri, ckpt), tmp_path)
    assert "ignored: its state.json is missing or unreadable" in done.stdout + done.stderr
    last = max(runs(uri), key=lambda r: r.info.start_time)
    assert last.data.metrics["train/epochs_resumed"] == 0 and last.data.metrics["train/epochs_run"] == EPOCHS


def test_a_checkpoint_written_for_another_configuration_is_not_loaded(tmp_path):
    uri, ckpt = new_store(tmp_path / "mlflow.db"), tmp_path / "ckpt"
    _interrupted_run(tmp_path, uri, ckpt, 2)
    done = _run(_run_cmd(tmp_path, uri, ckpt, "trainer.learning_rate=0.2"), tmp_path)
    assert "ignored: it was written for another configuration" in done.stdout + done.stderr
    last = max(runs(uri), key=lambda r: r.info.start_time)
    assert last.data.metrics["train/epochs_resumed"] == 0


def _sweep_cmd(tmp_path: Path, storage: str, uri: str, epochs: int, *extra: str, trials: int = 2) -> list[str]:
    return [sys.executable, "-m", "experiments.run", "+sweep=quick", *TINY, f"trainer.epochs={epochs}", *extra,
            f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.pruner.name=none", "hydra.sweeper.baselines=[]",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3",
            f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
            f"tracking.tracking_uri={uri}"]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "SIGTERM"])
def test_a_sweep_killed_mid_trial_retries_it_from_its_checkpoint(tmp_path, sig):
    """kill -9 of the whole sweep (SQLite study) after epoch 2, or SIGTERM to its process group
    inside epoch 3, as SLURM sends it: the same command retries the trial, which trains only its
    remaining epochs (SIGTERM: the remaining batches of the epoch it was stopped in, then the
    rest), reports only those, and its run's history has no gap."""
    epochs = 8
    terminated = sig == signal.SIGTERM
    batch_size = 16 if terminated else 128  # (SIGTERM: many batches, a boundary to stop at)
    uri, storage = new_store(tmp_path / "mlflow.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    ckpts = tmp_path / "optuna-checkpoints" / "quick"
    cmd = _sweep_cmd(tmp_path, storage, uri, epochs, f"trainer.batch_size={batch_size}", "data.validation_split=0.05")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    wait_for(lambda: _newest_epoch(ckpts, "t*/epoch-*/state.json") >= 2, 300, proc, "a trial's second checkpoint")
    if terminated:
        (folder,) = ckpts.iterdir()
        _sleep_into_epoch_3(folder)
    os.killpg(proc.pid, sig)
    proc.communicate(timeout=120)
    if terminated:  # stopped, not killed: nothing is left waiting or running
        stopped = optuna.load_study(study_name="quick", storage=storage).trials
        assert proc.returncode == 128 + sig and all(t.state.is_finished() for t in stopped)
    (folder,) = ckpts.iterdir()
    victim_number = int(folder.name[1:])
    newest = max(folder.glob("epoch-*"))  # (names sort in training order)
    assert ("-batch-" in newest.name) == terminated, sorted(p.name for p in folder.glob("epoch-*"))
    state = json.loads((newest / "state.json").read_text())
    k, b = state["epochs"], state.get("batch", 0)

    done = _run(cmd, tmp_path)
    study = optuna.load_study(study_name="quick", storage=storage)
    trials = {t.number: t for t in study.trials}
    assert trials[victim_number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim_number]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[victim_number].params
    assert retry.user_attrs["epochs_resumed"] == k
    assert sorted(retry.intermediate_values) == list(range(k + 1, epochs + 1))  # none reported twice
    counted = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(counted) == 2
    client = MlflowClient(uri)
    (run,) = [r for r in runs(uri) if r.data.tags.get("sweep.trial") == str(retry.number)]
    assert run.data.tags["sweep.retry_of"] == str(victim_number)
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [m.step for m in history] == list(range(1, epochs + 1))  # the killed attempt's epochs, then its own
    steps = -(-int(run.data.metrics["data/num_train"]) // batch_size)
    assert run.data.metrics["train/steps_trained"] == (epochs - k) * steps - b  # not one batch twice
    for step in range(k + 1, epochs + 1):  # what Optuna was told is what MLflow shows
        assert retry.intermediate_values[step] == pytest.approx(history[step - 1].value)
    assert not (tmp_path / "optuna-checkpoints").exists(), done.stderr[-2000:]  # the study reached its total


def _submitit_job(sweep: subprocess.Popen) -> psutil.Process:
    """The process submitit runs the job in (under its local controller)."""
    for child in psutil.Process(sweep.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "submitit.core._submit" in " ".join(child.cmdline()):
                return child
    raise AssertionError("no submitit job process under the sweep")


def test_a_trial_preempted_under_submitit_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """SLURM warns a job it preempts (or times out) with SIGUSR2; submitit's handler checkpoints
    Hydra's job and requeues it by raising SystemExit wherever training is. The trial keeps its
    checkpoints through that exit, and the requeued job (the same trial) trains only what is
    left: the path ``hydra/launcher=submitit_slurm`` takes, run by ``submitit_local``."""
    epochs = 8
    uri, storage = new_store(tmp_path / "mlflow.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    ckpts = tmp_path / "optuna-checkpoints" / "quick"
    cmd = _sweep_cmd(tmp_path, storage, uri, epochs, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     trials=1)  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    wait_for(lambda: _newest_epoch(ckpts, "t*/epoch-*/state.json") >= 2, 300, proc, "the trial's second checkpoint")
    _submitit_job(proc).send_signal(signal.SIGUSR2)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "requeue" in (out + err + "".join(p.read_text() for p in tmp_path.glob("multirun/**/*_log.*"))).lower()
    (trial,) = optuna.load_study(study_name="quick", storage=storage).trials
    assert trial.state == TrialState.COMPLETE
    k = trial.user_attrs["epochs_resumed"]  # (the requeued job restored the preempted one's checkpoint)
    assert k >= 2
    assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
    finished = [r for r in runs(uri) if r.data.tags.get("sweep.trial") == "0" and r.info.status == "FINISHED"]
    (run,) = finished
    steps = -(-int(run.data.metrics["data/num_train"]) // 128)
    trained = run.data.metrics["train/steps_trained"]
    assert (epochs - k - 1) * steps < trained <= (epochs - k) * steps  # the rest, from where it stopped
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "val/accuracy")
    assert [m.step for m in history] == list(range(1, epochs + 1))
    assert not (tmp_path / "optuna-checkpoints").exists()  # finished: its checkpoints removed


def test_each_trial_removes_its_checkpoints_once_recorded_unless_they_are_kept(tmp_path):
    """Disk stays bounded over a long sweep: a trial's checkpoints go as soon as it is recorded
    (not only when the study reaches its total); ``keep_checkpoints=true`` keeps every trial's."""
    epochs = 2
    uri, storage = new_store(tmp_path / "mlflow.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    ckpts = tmp_path / "optuna-checkpoints" / "quick"
    # (EPOCHS: the second trial trains long enough to be seen training, however fast the machine)
    proc = subprocess.Popen(_sweep_cmd(tmp_path, storage, uri, EPOCHS), cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    wait_for(lambda: _newest_epoch(ckpts / "t0001") >= 1, 300, proc, "the second trial's first checkpoint")
    assert not (ckpts / "t0000").exists()  # the first trial ended: its folder is gone
    os.killpg(proc.pid, signal.SIGKILL)  # (what was to be seen is seen: the sweeper and its workers)
    proc.communicate(timeout=60)

    kept = tmp_path / "kept"
    kept.mkdir()
    uri, storage = new_store(kept / "mlflow.db"), f"sqlite:///{kept / 'optuna.db'}"
    _run(_sweep_cmd(kept, storage, uri, epochs, "hydra.sweeper.keep_checkpoints=true"), kept)
    folders = sorted((kept / "optuna-checkpoints" / "quick").iterdir())
    assert [f.name for f in folders] == ["t0000", "t0001"]
    assert [_newest_epoch(f) for f in folders] == [epochs, epochs]
