"""MLflow and Optuna agree on how each trial ended, also when a worker died at the wrong time."""

from __future__ import annotations

from experiments.tracking import StudyRuns


def test_a_run_ended_before_its_worker_died_gets_its_trials_state(tmp_path):
    runs = StudyRuns(f"sqlite:///{tmp_path / 'mlflow.db'}", "resnet-blocks")
    parent = runs.parent_run("s", None)
    base = {"sweep.study": "s", "sweep.role": "trial"}
    ended = runs.record_trial_without_training(parent, "t00", {}, {**base, "sweep.trial": 0})  # no sweep.state
    tagged = runs.record_trial_without_training(parent, "t01", {}, {**base, "sweep.trial": 1, "sweep.state": "PRUNED"})
    running = runs.client.create_run(
        runs.experiment_id, tags={"mlflow.parentRunId": parent, **base, "sweep.trial": "2"}
    ).info.run_id
    live = runs.client.create_run(
        runs.experiment_id, tags={"mlflow.parentRunId": parent, **base, "sweep.trial": "3"}
    ).info.run_id

    killed = runs.kill_stale_runs(parent, {3}, {0: "COMPLETE", 1: "PRUNED", 2: "FAIL"})

    get = runs.client.get_run
    assert get(ended).data.tags["sweep.state"] == "COMPLETE" and get(ended).info.status == "FINISHED"
    assert get(tagged).data.tags["sweep.state"] == "PRUNED"
    assert killed == [running]
    assert get(running).info.status == "KILLED" and get(running).data.tags["sweep.state"] == "FAIL"
    assert get(live).info.status == "RUNNING" and "sweep.state" not in get(live).data.tags
