"""Every MLflow call of the project lives in this package (an import-linter contract in
``pyproject.toml`` keeps it so); the rest of the code speaks of runs, studies and models.

- :mod:`~experiments.tracking.store`: reaching the store, its experiment, its failures;
- :mod:`~experiments.tracking.runs`: a run's log (:class:`RunTracker`, :class:`NullTracker`);
- :mod:`~experiments.tracking.epoch_logger`: the Keras callback that logs epochs to it;
- :mod:`~experiments.tracking.local`: a run's record on local disk;
- :mod:`~experiments.tracking.models`: the model store (log, load, register);
- :mod:`~experiments.tracking.resnet_blocks_pyfunc`: the pyfunc loader shipped in each model;
- :mod:`~experiments.tracking.study_runs`: a study's parent and trial runs, runs read back;
- :mod:`~experiments.tracking.processes`: runs of dead processes, runs and their parents' tags.
"""

from experiments.tracking.local import LocalRecord, local_output_dir
from experiments.tracking.models import load_keras_model, model_info, model_uri, register_run_model, run_config_text
from experiments.tracking.processes import process_tags, reap_dead_runs, tags_with_parents
from experiments.tracking.runs import NullTracker, RunTracker
from experiments.tracking.store import (
    DEFAULT_TRACKING_URI,
    TRACKING_URI_ENV,
    StoreLost,
    check_tracking_uri,
    default_tracking_uri,
    first_line,
    flatten,
    get_or_create_experiment,
    git_commit,
    http_retries,
    is_local_store,
    is_store_failure,
    package_versions,
    quiet_progress_bars,
    ui_link,
    unless_store_fails,
    warm_up,
)
from experiments.tracking.study_runs import RunReader, StudyRuns

# What a process that will open runs can import ahead (a sweep's fork server does, for its
# workers): this package, MLflow (which the modules here import lazily) and its SQL store.
PRELOAD_MODULES = ("experiments.tracking", "mlflow", "mlflow.store.tracking.sqlalchemy_store")

quiet_progress_bars()  # (every MLflow call of the process comes after this package's import)

__all__ = [
    "DEFAULT_TRACKING_URI", "PRELOAD_MODULES", "TRACKING_URI_ENV", "LocalRecord", "NullTracker", "RunReader",
    "RunTracker", "StoreLost", "StudyRuns", "check_tracking_uri", "default_tracking_uri",
    "first_line", "flatten", "get_or_create_experiment", "git_commit", "http_retries", "is_local_store", "is_store_failure",
    "load_keras_model", "local_output_dir", "model_info", "model_uri", "package_versions", "process_tags",
    "reap_dead_runs", "register_run_model", "run_config_text", "tags_with_parents", "ui_link", "unless_store_fails",
    "warm_up",
]  # fmt: skip
