"""The private Optuna and Hydra parts the sweep uses (experiments/sweep/internals.py) are still
there and still mean what the sweep assumes: these fail when a library changes under them."""

from __future__ import annotations

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus

from experiments.sweep import internals


def test_optuna_trial_ids_and_storage():
    study = optuna.create_study()
    trial = study.ask()
    tid = internals.trial_id(trial)
    assert isinstance(tid, int)
    storage = internals.storage_of(study)
    assert storage.get_trial_id_from_study_id_trial_number(internals.study_id(study), trial.number) == tid
    trial.set_user_attr("k", 1)
    assert internals.frozen(study, trial).user_attrs == {"k": 1}
    assert internals.trial_id(internals.frozen(study, trial)) == tid


def test_the_local_copy_is_what_the_pruner_reads():
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    local = internals.local_trial(trial)
    assert local is not None and local.intermediate_values == {}
    local.intermediate_values[1] = 0.1  # (the job writes the study in the background)
    assert trial.should_prune()


def test_a_failed_jobs_exception_without_hydras_stderr_line(capsys):
    err = optuna.TrialPruned("pruned at epoch 1")
    ret = internals.failed_job(JobReturn(overrides=["x=1"]), err)
    assert ret.status == JobStatus.FAILED and internals.job_error(ret) is err
    assert capsys.readouterr().err == ""
    with pytest.raises(optuna.TrialPruned):
        ret.return_value  # noqa: B018 - the public way raises, after writing to stderr: the reason
    assert "Error executing job" in capsys.readouterr().err
    done = JobReturn(overrides=[], status=JobStatus.COMPLETED)
    done.return_value = 1.0
    assert internals.job_error(done) is None


def test_stale_trials_are_known_before_optuna_fails_them(tmp_path):
    import time

    from experiments.sweep.study import make_storage

    storage = make_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    storage.record_heartbeat(internals.trial_id(trial))  # then its worker dies: no more beats
    time.sleep(2.2)
    assert internals.stale_trial_ids(study) == [internals.trial_id(trial)]
    storage.set_trial_user_attr(internals.trial_id(trial), "fail_reason", "worker died")  # still RUNNING: allowed
    optuna.storages.fail_stale_trials(study)
    failed = study.get_trials()[0]  # (then its retry)
    assert failed.state == optuna.trial.TrialState.FAIL and failed.user_attrs["fail_reason"] == "worker died"
    assert internals.stale_trial_ids(optuna.create_study()) == []  # in memory: no heartbeats
