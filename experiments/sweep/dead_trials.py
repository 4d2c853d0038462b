"""The Optuna side of ``experiments.cleanup``: trials left RUNNING by workers that are gone.

A sweep killed with kill -9 leaves its trials RUNNING in the study and their MLflow runs
RUNNING. Cleanup ends the runs of dead processes (:func:`experiments.tracking.reap_dead_runs`);
here each such run's trial, found in the storage its parent run names (``sweep.storage``), is
marked FAIL with the reason MLflow got, so both stores say the same. (A resumed sweep does the
same through its heartbeats; cleanup serves a study that is not resumed.)
"""

from __future__ import annotations

import logging

log = logging.getLogger("experiments.sweep")

REASON = "worker died (its process is gone: found by experiments.cleanup)"


def fail_trials_of_dead_runs(tracking_uri: str, reaped: list[str]) -> list[str]:
    """FAIL the RUNNING trials whose runs were just reaped; return ``study/t07`` labels."""
    import optuna
    from optuna.trial import TrialState

    from experiments.sweep import study as st
    from experiments.sweep.internals import storage_of, trial_id
    from experiments.tracking import tags_with_parents

    by_study: dict[tuple[str, str], set[int]] = {}
    for t, parent in tags_with_parents(tracking_uri, reaped).values():
        storage = parent.get("sweep.storage")
        if t.get("sweep.role") != "trial" or "sweep.trial" not in t or not storage or "***" in storage:
            continue
        by_study.setdefault((t["sweep.study"], storage), set()).add(int(t["sweep.trial"]))
    failed = []
    for (name, storage), numbers in by_study.items():
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except Exception as err:  # noqa: BLE001 - storage gone or moved: the runs are ended anyway
            log.warning("study %s in %s: not reachable (%s); its trials are left as they are", name, storage, err)
            continue
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in numbers:
                storage_of(study).set_trial_user_attr(trial_id(t), st.FAIL_REASON_ATTR, REASON)
                study.tell(t.number, state=TrialState.FAIL)
                failed.append(f"{name}/t{t.number:02d}")
    return failed
