"""A tracking store that goes away never costs the result: the server stopped mid-run, the
database made unwritable mid-run, a process killed with its run RUNNING."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import mlflow.pyfunc
import pytest
from mlflow.tracking import MlflowClient

from tests.faults.processes import TINY, env, epochs_logged, new_store, wait_for
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow


def _start_run(tmp_path: Path, tracking_uri: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *TINY, f"tracking.tracking_uri={tracking_uri}",
         f"hydra.run.dir={tmp_path / 'out'}", *extra],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_epochs(store_uri: str, n: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    wait_for(lambda: epochs_logged(store_uri) >= n, timeout, proc, f"{n} epochs were logged")


def _assert_result_kept(tmp_path: Path, err: str, tracking_uri: str, epochs: int) -> None:
    out = tmp_path / "out"
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: tracking.tracking_uri: the MLflow tracking store {tracking_uri!r} failed")
    assert str(out.resolve()) in last
    assert len(err.strip().splitlines()) < 15, err  # no traceback
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted(x["step"] for x in lines if "val/accuracy" in x) == list(range(1, epochs + 1))
    assert (out / "config.yaml").exists()
    model = mlflow.pyfunc.load_model(str(out / "model"))
    from sklearn.datasets import load_digits

    assert model.predict(load_digits().images[:20]).shape == (20, 10)  # (as scikit-learn gives them)


def test_the_tracking_server_stopping_mid_run_keeps_the_result(tmp_path):
    backend = new_store(tmp_path / "server.db")
    with ExitStack() as stack:
        url = stack.enter_context(mlflow_server(backend, tmp_path / "artifacts", tmp_path / "server.log"))
        proc = _start_run(tmp_path, url, "trainer.epochs=40", "tracking.retry_s=8")
        _wait_epochs(backend, 3, proc)
    stopped = time.monotonic()  # the server is gone
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert time.monotonic() - stopped < 120  # bounded retries, not minutes of them
    _assert_result_kept(tmp_path, err, url, 40)


def test_an_unwritable_store_mid_run_keeps_the_result(tmp_path):
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed: cannot make the store immutable")
    db = tmp_path / "mlflow.db"
    uri = new_store(db)
    proc = _start_run(tmp_path, uri, "trainer.epochs=30")
    try:
        _wait_epochs(uri, 3, proc)
        subprocess.run(["chattr", "+i", str(db)], check=True)
        _, err = proc.communicate(timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=False)
    assert proc.returncode == 1, err[-3000:]
    _assert_result_kept(tmp_path, err, uri, 30)


def test_a_run_left_running_by_a_dead_process_is_ended_by_the_next_command(tmp_path):
    uri = new_store(tmp_path / "mlflow.db")
    proc = _start_run(tmp_path, uri, "trainer.epochs=400", "tracking.log_model=false")
    _wait_epochs(uri, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("resnet-blocks").experiment_id])
    assert run.info.status == "RUNNING" and run.data.tags["process.pid"] == str(proc.pid)
    out = subprocess.run([sys.executable, "-m", "experiments.cleanup", "--tracking-uri", uri], cwd=tmp_path,
                         env=env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"marked KILLED: run {run.info.run_id}" in out.stdout
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and f"its process {proc.pid}" in run.data.tags["failure_reason"]


def test_cleanup_after_a_killed_sweep_leaves_nothing_running_in_either_store(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from experiments.sweep.dead_trials import REASON

    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", "+sweep=quick", *TINY, "trainer.epochs=400", "hydra.sweeper.n_trials=2",
         "hydra.sweeper.baselines=[]", f"tracking.tracking_uri={uri}", f"hydra.sweeper.storage={storage}",
         f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, env=env(), stdout=(tmp_path / "out.txt").open("w"), stderr=(tmp_path / "err.txt").open("w"),
        start_new_session=True,
    )  # fmt: skip
    # (Polling the stores while the sweep creates their schemas races MLflow's migrations.)
    try:
        wait_for(lambda: " epoch 2/400" in (tmp_path / "out.txt").read_text(), 180, proc, "a trial trained 2 epochs")
    except (AssertionError, TypeError):
        raise AssertionError((tmp_path / "err.txt").read_text()[-3000:]) from None
    import os

    os.killpg(proc.pid, signal.SIGKILL)  # the sweeper and its workers, at once
    proc.wait(timeout=60)
    time.sleep(1)
    study = optuna.load_study(study_name="quick", storage=storage)
    assert TrialState.RUNNING in [t.state for t in study.trials]
    out = subprocess.run([sys.executable, "-m", "experiments.cleanup", "--tracking-uri", uri], cwd=tmp_path,
                         env=env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    client = MlflowClient(uri)
    every = client.search_runs([client.get_experiment_by_name("resnet-blocks").experiment_id])
    assert {r.data.tags.get("sweep.role") for r in every} == {"parent", "trial"}
    assert [r.info.status for r in every if r.info.status == "RUNNING"] == [], out.stdout
    trained = [r for r in every if r.data.tags.get("sweep.role") == "trial"]
    study = optuna.load_study(study_name="quick", storage=storage)
    assert TrialState.RUNNING not in [t.state for t in study.trials], out.stdout
    for run in trained:
        (t,) = [t for t in study.trials if t.number == int(run.data.tags["sweep.trial"])]
        assert run.info.status == "KILLED", (
            run.info.run_name,
            run.info.status,
            t.state,
            t.user_attrs,
            run.data.tags.get("failure_reason"),
        )
        assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == REASON
        assert f"marked FAIL: trial quick/t{t.number:02d}" in out.stdout


def test_runs_of_live_processes_are_left_alone(tmp_path, make_cfg, mlflow_client, tracking_uri):
    """The next command reaps only runs whose process is gone: this process's own run stays."""
    from experiments.tracking import RunTracker, reap_dead_runs

    with RunTracker(tracking_uri, "resnet-blocks").open(run_name="live") as tr:
        assert reap_dead_runs(tracking_uri) == []
        assert mlflow_client.get_run(tr.run_id).info.status == "RUNNING"
    assert mlflow_client.get_run(tr.run_id).info.status == "FINISHED"


def test_a_sweep_that_loses_its_tracking_server_keeps_its_trials_stops_in_one_line_and_catches_up(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from tests.servers import free_port

    backend, port = new_store(tmp_path / "server.db"), free_port()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    epochs = 16  # (a trial caught at epoch 2-4 still trains for seconds after the server stops)

    def command(url):
        return [sys.executable, "-m", "experiments.run", "+sweep=quick", *TINY, f"trainer.epochs={epochs}",
                "hydra.sweeper.n_trials=3", "hydra.sweeper.baselines=[]", "hydra.sweeper.pruner.name=none",
                f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
                f"tracking.tracking_uri={url}", "tracking.retry_s=4"]  # fmt: skip

    def trials():
        try:
            return optuna.load_study(study_name="quick", storage=storage).trials
        except KeyError:
            return []

    def one_done_one_training() -> bool:
        found = trials()
        return any(t.state == TrialState.COMPLETE for t in found) and any(
            t.state == TrialState.RUNNING and 2 <= len(t.intermediate_values) <= 4 for t in found
        )

    with mlflow_server(backend, tmp_path / "artifacts", tmp_path / "server.log", port=port) as url:
        proc = subprocess.Popen(command(url), cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        wait_for(one_done_one_training, 300, proc, "a trial complete and another training")
        in_flight = [t.number for t in trials() if t.state == TrialState.RUNNING]
        assert in_flight
    stopped = time.monotonic()  # the server is gone
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert time.monotonic() - stopped < 60  # noticed and ended within a minute, not MLflow's minutes of retries
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: tracking.tracking_uri: the MLflow tracking store {url!r} stopped answering"), last
    assert "the same command brings MLflow up to date" in last and len(err.strip().splitlines()) < 5, err[-3000:]
    after = {t.number: t for t in trials()}
    assert not [t for t in after.values() if not t.state.is_finished()]
    for number in in_flight:  # trained to its end, kept in the study, its record on disk
        assert after[number].state == TrialState.COMPLETE, after[number].user_attrs
        assert Path(after[number].user_attrs["local_dir"], "metrics.jsonl").exists()

    with mlflow_server(backend, tmp_path / "artifacts", tmp_path / "server.log", port=port) as url:
        resumed = subprocess.run(command(url), cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = [t for t in trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 3
    client = MlflowClient(backend)
    recorded = client.search_runs([client.get_experiment_by_name("resnet-blocks").experiment_id])
    assert not [r for r in recorded if r.info.status == "RUNNING"]
    children = {int(r.data.tags["sweep.trial"]): r for r in recorded if r.data.tags.get("sweep.role") == "trial"}
    for t in done:  # every complete trial's run is FINISHED with all its epochs (a repeat trains none)
        run = children[t.number]
        assert run.info.status == "FINISHED" and run.data.tags["sweep.state"] == "COMPLETE"
        if "duplicate_of" in t.user_attrs:
            continue
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")]
        assert steps == list(range(1, epochs + 1)), (t.number, steps)
    for number in in_flight:
        assert children[number].data.tags["tracking.recovered_from"] == after[number].user_attrs["local_dir"]
