"""Every MLflow call of the project lives in this package (an import-linter contract in
``pyproject.toml`` keeps it so); the rest of the code speaks of runs, studies and models.

- :mod:`~experiments.tracking.store`: reaching the store, its experiment, its failures;
- :mod:`~experiments.tracking.runs`: a run's log (:class:`RunTracker`, :class:`NullTracker`);
- :mod:`~experiments.tracking.epoch_logger`: the Keras callback that logs epochs to it;
- :mod:`~experiments.tracking.local`: a run's record on local disk;
- :mod:`~experiments.tracking.models`: the model store (log, load, register);
- :mod:`~experiments.tracking.resnet_blocks_pyfunc`: the pyfunc loader shipped in each model;
- :mod:`~experiments.tracking.study_runs`: a study's parent and trial runs;
- :mod:`~experiments.tracking.processes`: runs of dead processes.
"""

from experiments.tracking.local import LocalRecord, local_output_dir
from experiments.tracking.models import load_keras_model, model_info, register_run_model, run_config_text
from experiments.tracking.processes import process_tags, reap_dead_runs
from experiments.tracking.runs import NullTracker, RunTracker
from experiments.tracking.store import (
    StoreLost,
    check_tracking_uri,
    client,
    first_line,
    flatten,
    get_or_create_experiment,
    git_commit,
    http_retries,
    is_local_store,
    is_store_failure,
    package_versions,
    ui_link,
    unless_store_fails,
    warm_up,
)
from experiments.tracking.study_runs import StudyRuns

__all__ = [
    "LocalRecord", "NullTracker", "RunTracker", "StoreLost", "StudyRuns", "check_tracking_uri", "client",
    "first_line", "flatten", "get_or_create_experiment", "git_commit", "http_retries", "is_local_store", "is_store_failure",
    "load_keras_model", "local_output_dir", "model_info", "package_versions", "process_tags",
    "reap_dead_runs", "register_run_model", "run_config_text", "ui_link", "unless_store_fails", "warm_up",
]  # fmt: skip
