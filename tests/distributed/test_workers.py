"""Several workers, one study: PostgreSQL-backed sweeps, MLflow tracking server, crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from tests.distributed.conftest import REPO

SMALL = [
    "model.depths=[1,1,1]",
    "model.widths=[8,8,16]",
    "model.stem_width=8",
    "trainer.batch_size=128",
    "trainer.verbose=0",
    "tracking.log_model=false",
    "tracking.log_summary=false",
]


def worker_cmd(tmp_path, storage, tracking_uri, experiment, *overrides):
    return [
        sys.executable, "-m", "experiments.run", "+sweep=quick", *SMALL,
        f"hydra.sweeper.storage={storage}", f"tracking.tracking_uri={tracking_uri}",
        f"tracking.experiment_name={experiment}", f"hydra.sweep.dir={tmp_path}/multirun/{uuid.uuid4().hex[:6]}",
        *overrides,
    ]  # fmt: skip


def env():
    e = {**os.environ, "PYTHONPATH": str(REPO)}
    e.pop("MLFLOW_RUN_ID", None)
    return e


def runs(tracking_uri, experiment):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    all_runs = client.search_runs([exp.experiment_id], max_results=5000)
    parents = [r for r in all_runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in all_runs if r.data.tags.get("sweep.role") == "trial"]
    return parents, children


def test_three_workers_share_one_study(tmp_path, pg_url, mlflow_server):
    experiment = "three-workers"
    # In-process trials (basic launcher): 3 workers x 5 trials on 2 cores without 6 more
    # TensorFlow imports; the process launcher is covered by the kill -9 test.
    common = [
        "hydra.sweeper.n_trials=15",
        "trainer.epochs=1",
        "hydra.sweeper.heartbeat_interval=2",
        "hydra/launcher=basic",
    ]
    # Create the study, the MLflow experiment and the parent run once, before the workers.
    setup = subprocess.run(worker_cmd(tmp_path, pg_url, mlflow_server, experiment, *common, "hydra.sweeper.setup_only=true"),
                           cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert setup.returncode == 0, setup.stderr[-3000:]
    assert "study 'quick' ready" in setup.stdout
    workers = [
        subprocess.Popen(
            worker_cmd(tmp_path, pg_url, mlflow_server, experiment, *common),
            cwd=tmp_path,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="quick", storage=pg_url)
    assert len(study.trials) == 15
    assert sorted(t.number for t in study.trials) == list(range(15))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    # The baseline, enqueued once when the study was set up, is the first trial; no worker
    # enqueued it again.
    labels = {t.number: t.user_attrs["baseline"] for t in study.trials if "baseline" in t.user_attrs}
    assert labels == {0: "default"}
    # Every worker did some of the work.
    assert all("COMPLETE" in out or "PRUNED" in out for out in outputs)
    parents, children = runs(mlflow_server, experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    by_trial = {}
    for r in children:
        by_trial.setdefault(int(r.data.tags["sweep.trial"]), []).append(r)
    assert sorted(by_trial) == list(range(15)) and all(len(v) == 1 for v in by_trial.values())
    for t in study.trials:
        (run,) = by_trial[t.number]
        assert run.info.status == "FINISHED" and run.data.tags["sweep.state"] == t.state.name
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id


def test_killed_worker_trial_is_failed_and_retried_from_its_checkpoint(tmp_path, pg_url, mlflow_server):
    """kill -9 of a worker (its whole process group) mid-trial: the next worker fails the trial
    for its missing heartbeat and retries it, and the retry resumes from the checkpoints the
    dead one left in the folder all workers share (hydra.sweeper.checkpoints)."""
    experiment, epochs, shared = "kill-and-resume", 12, tmp_path / "shared-checkpoints"
    common = ["hydra.sweeper.n_trials=3", "hydra.sweeper.pruner.name=none", f"trainer.epochs={epochs}",
              "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4",
              f"hydra.sweeper.checkpoints={shared}"]  # fmt: skip
    worker = subprocess.Popen(worker_cmd(tmp_path, pg_url, mlflow_server, experiment, *common), cwd=tmp_path,
                              env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    # Wait until a trial is in the middle of training (two epochs checkpointed), then kill -9.
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline:
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name="quick", storage=pg_url)
        except KeyError:
            continue
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            if (shared / "quick" / f"t{t.number:04d}" / "epoch-0002" / "state.json").exists():
                victim = t
    assert victim is not None, "no trial reached mid-training"
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    folder = shared / "quick" / f"t{victim.number:04d}"
    k = max(int(p.name.split("-")[1]) for p in folder.glob("epoch-*"))
    assert k < epochs
    _, children = runs(mlflow_server, experiment)
    assert any(r.info.status == "RUNNING" for r in children)  # what a killed process leaves behind

    resume = subprocess.run(worker_cmd(tmp_path, pg_url, mlflow_server, experiment, *common),
                            cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    study = optuna.load_study(study_name="quick", storage=pg_url)
    trials = {t.number: t for t in study.trials}
    assert trials[victim.number].state == TrialState.FAIL
    retries = [t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == victim.number]
    assert len(retries) == 1
    (retry,) = retries
    assert retry.params == victim.params and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["epochs_resumed"] == k  # trained only the epochs the dead worker had not
    assert sorted(retry.intermediate_values) == list(range(k + 1, epochs + 1))
    counted = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(counted) == 3  # the study reached its total
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not (shared / "quick").exists()  # ...so no trial keeps a checkpoint
    parents, children = runs(mlflow_server, experiment)
    assert not [r for r in parents + children if r.info.status == "RUNNING"]
    killed = [r for r in children if int(r.data.tags["sweep.trial"]) == victim.number]
    assert [r.info.status for r in killed] == ["KILLED"]
    reason = trials[victim.number].user_attrs["fail_reason"]  # both stores say why, the same way
    assert reason.startswith("worker died (no heartbeat for ") and killed[0].data.tags["failure_reason"] == reason
    assert "fail_reason" not in retry.user_attrs
    (retry_run,) = [r for r in children if int(r.data.tags["sweep.trial"]) == retry.number]
    assert retry_run.data.tags["sweep.retry_of"] == str(victim.number) and retry_run.info.status == "FINISHED"
    steps = [m.step for m in MlflowClient(mlflow_server).get_metric_history(retry_run.info.run_id, "val/accuracy")]
    assert steps == list(range(1, epochs + 1))  # the dead attempt's epochs, then its own: no gap, no repeat
    assert retry_run.data.metrics["train/epochs_resumed"] == k
    per_epoch = -(-int(retry_run.data.metrics["data/num_train"]) // 128)  # (SMALL's batch size)
    assert retry_run.data.metrics["train/steps_trained"] == (epochs - k) * per_epoch  # not one batch twice


def sweep_through_launcher(tmp_path, pg_url, mlflow_server, experiment, *launcher, n_trials=4, timeout=600):
    """A 1-epoch sweep on a PostgreSQL study through another Hydra launcher, 2 jobs at a time;
    returns the trials' MLflow runs once every trial completed."""
    proc = subprocess.run(
        worker_cmd(tmp_path, pg_url, mlflow_server, experiment, *launcher, "hydra.sweeper.n_jobs=2",
                   f"hydra.sweeper.n_trials={n_trials}", "trainer.epochs=1"),
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = optuna.load_study(study_name="quick", storage=pg_url)
    assert len(study.trials) == n_trials and all(t.state == TrialState.COMPLETE for t in study.trials)
    _, children = runs(mlflow_server, experiment)
    assert sorted(int(r.data.tags["sweep.trial"]) for r in children) == list(range(n_trials))
    return children


def test_joblib_launcher_on_one_machine(tmp_path, pg_url, mlflow_server):
    sweep_through_launcher(
        tmp_path, pg_url, mlflow_server, "joblib", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )


def test_submitit_local_launcher_takes_the_slurm_path(tmp_path, pg_url, mlflow_server):
    """``hydra/launcher=submitit_local``: submitit's local executor pickles each job and reads
    its result back as its SLURM executor does (the recipe for a cluster, run here)."""
    # One batch of 2 jobs (each a new process importing TensorFlow).
    children = sweep_through_launcher(tmp_path, pg_url, mlflow_server, "submitit", "hydra/launcher=submitit_local",
                                      "hydra.launcher.timeout_min=10", n_trials=2, timeout=900)  # fmt: skip
    assert all(r.info.status == "FINISHED" for r in children)
    assert list((tmp_path / "multirun").glob("*/.submitit/*/*_result.pkl"))  # submitit's own result files


def test_unreachable_services_fail_at_start(tmp_path, pg_url):
    from tests.parallel import run_together

    dead_db = "postgresql://postgres@127.0.0.1:9/nowhere"
    no_db, no_server = run_together([
        dict(args=worker_cmd(tmp_path, dead_db, f"sqlite:///{tmp_path}/m.db", "x"), cwd=tmp_path, env=env()),
        dict(args=worker_cmd(tmp_path, pg_url, "http://127.0.0.1:9", "x"), cwd=tmp_path, env=env()),
    ], timeout=120)  # fmt: skip
    assert no_db.returncode == 2
    assert "hydra.sweeper.storage: cannot open Optuna storage" in no_db.stderr and "Traceback" not in no_db.stderr
    assert no_server.returncode == 2
    assert "tracking.tracking_uri: cannot reach MLflow tracking store" in no_server.stderr
    assert "Epoch" not in no_server.stdout and "Traceback" not in no_server.stderr


def test_sqlite_with_several_jobs_is_refused(tmp_path):
    proc = subprocess.run(
        worker_cmd(tmp_path, f"sqlite:///{tmp_path}/o.db", f"sqlite:///{tmp_path}/m.db", "x",
                   "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"),
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "SQLite locks under concurrent writers" in proc.stderr
    assert not (tmp_path / "o.db").exists()
