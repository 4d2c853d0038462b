"""The private parts of Optuna and Hydra the sweep relies on, in one place, each with why.
``tests/experiments/sweep/test_internals.py`` fails when a library changes under them.

- Optuna has no public accessor for a trial's id or a study's storage; its storage API (which
  the sweeper uses to tell, fail and inspect trials it did not create in this process, and to
  read a trial back without copying the whole study) takes trial ids.
- Optuna fails stale trials (dead workers) and only then calls its callback, when a finished
  trial can no longer take the user attribute that says why; the sweeper asks which trials are
  stale first and records the reason while they still run.
- Hydra's ``JobReturn.return_value`` raises a failed job's exception and first writes
  "Error executing job ..." to stderr: a sweep would print that for every pruned trial.
"""

from __future__ import annotations

from typing import Any


def trial_id(trial) -> int:
    """The storage id of an ``optuna.Trial`` or ``FrozenTrial``."""
    return trial._trial_id  # noqa: SLF001


def storage_of(study):
    """The storage an ``optuna.Study`` reads and writes."""
    return study._storage  # noqa: SLF001


def study_id(study) -> int:
    return study._study_id  # noqa: SLF001


def stale_trial_ids(study) -> list[int]:
    """Ids of the RUNNING trials whose heartbeat is older than the storage's grace period
    (those ``optuna.storages.fail_stale_trials`` fails next); [] without heartbeats."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = storage_of(study)
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        return []
    return list(storage._get_stale_trial_ids(study_id(study)))  # noqa: SLF001


def frozen(study, trial):
    """``trial`` as the storage has it now (one trial, not the whole study)."""
    return storage_of(study).get_trial(trial_id(trial))


def job_error(ret) -> BaseException | None:
    """The exception a failed Hydra job raised (None for a completed one), without the stderr
    line ``return_value`` writes."""
    return ret._return_value if ret.status.name != "COMPLETED" else None  # noqa: SLF001


def failed_job(ret, err: BaseException):
    """Record ``err`` as the failed job's exception, where Hydra's launchers keep it."""
    from hydra.core.utils import JobStatus

    ret.status = JobStatus.FAILED
    ret._return_value = err  # noqa: SLF001
    return ret


def local_trial(trial) -> Any:
    """The ``FrozenTrial`` an ``optuna.Trial`` keeps locally (what ``should_prune`` reads), or None."""
    return getattr(trial, "_cached_frozen_trial", None)
