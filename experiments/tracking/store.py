"""The tracking store: reaching it, naming its experiment, telling its failures from ours,
and what every run records about its environment (package versions, git commit)."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from experiments.cli import RunFailure
from experiments.locks import sqlite_setup_lock

log = logging.getLogger("experiments.tracking")


# Runs started by a parent process must not attach to the parent's run by accident.
INHERITED_ENV = ("MLFLOW_RUN_ID",)
# MLflow's system tag naming a child run's parent run (a sweep's trial runs, finalize's runs).
PARENT_RUN_TAG = "mlflow.parentRunId"
# The store of a command that names none (conf/tracking/mlflow.yaml says the same for runs).
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_PACKAGES = ("tensorflow", "keras", "hydra-core", "optuna", "mlflow", "scikit-learn", "resnet-blocks")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"depths": [3, 3]}}`` -> ``{"model.depths": "[3, 3]"}`` (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple, Mapping)) else str(value)
    return out


@functools.cache  # constant for the process; a sweep worker opens many runs
def package_versions() -> dict[str, str]:
    out = {}
    for pkg in _PACKAGES:
        try:
            out[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@functools.cache
def git_commit() -> str | None:
    """The checkout's commit, if the code runs from a git work tree."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def default_tracking_uri() -> str:
    """The tracking store a command uses when it names none: ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db`` in the working directory."""
    return os.environ.get(TRACKING_URI_ENV, DEFAULT_TRACKING_URI)


def quiet_progress_bars() -> None:
    """No MLflow progress bar per artifact download (a bar per model load), unless the user
    asked for them. MLflow reads the variable at each download: set before any."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def is_local_store(uri: str) -> bool:
    """A SQLite file or a local folder (created by the first command that opens it), as
    opposed to a server or database that exists on its own."""
    uri = str(uri)
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_tracking_uri(uri: str) -> None:
    """Fail fast (before any training) when the tracking store cannot be reached."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from experiments.cli import UserError

    mlflow.set_tracking_uri(uri)
    # Probe without MLflow's long retry back-off, so a dead server fails in seconds. (A new
    # SQLite store is created by the probe: one process at a time.)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
    try:
        with sqlite_setup_lock(uri):
            mlflow.tracking.MlflowClient(uri).search_experiments(max_results=1)
    except (MlflowException, OSError, Exception) as err:  # noqa: BLE001 - report any failure clearly
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"tracking.tracking_uri: cannot reach MLflow tracking store {uri!r}: {first}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# MLflow 3's UI opens an experiment without this tag in its GenAI (traces) view; ours train models.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ui_link(tracking_uri: str, experiment_id: str, run_id: str | None = None) -> str | None:
    """The MLflow UI's page of an experiment (or run) in its *Model training* view, for an
    HTTP tracking server; None for a local store (``mlflow ui`` serves it: see the README).

    MLflow 3.17's UI opens experiments in its GenAI view unless the link says otherwise (the
    ``mlflow.experimentKind`` tag alone does not change it)."""
    if not str(tracking_uri).startswith(("http://", "https://")):
        return None
    page = f"/runs/{run_id}" if run_id else "/runs"
    return f"{str(tracking_uri).rstrip('/')}/#/experiments/{experiment_id}{page}?workflowType=machine_learning"


def get_or_create_experiment(name: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow.tracking.MlflowClient().restore_experiment(exp.experiment_id)
        if "mlflow.experimentKind" not in exp.tags:  # created elsewhere: keep a kind the user chose
            mlflow.tracking.MlflowClient().set_experiment_tag(exp.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return exp.experiment_id
    try:
        return mlflow.create_experiment(name, tags=EXPERIMENT_KIND)
    except Exception:
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class StoreLost(RunFailure):
    """The tracking store stopped answering during a run; what the run produced is kept locally."""


def is_store_failure(err: BaseException) -> bool:
    """Whether ``err`` says the store is unreachable or unwritable (not that it refused a value)."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        message = str(err)
        return err.error_code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR") and (
            message.startswith("API request to") or "OperationalError" in message or "database" in message.lower()
        )
    import requests
    import sqlalchemy

    return isinstance(err, (requests.exceptions.RequestException, sqlalchemy.exc.OperationalError, ConnectionError))


def unless_store_fails(fn, *args, on_failure, **kwargs):
    """``fn(*args, **kwargs)``; a store failure (:func:`is_store_failure`) goes to
    ``on_failure(err)`` and gives None instead of raising; any other error is raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        if not is_store_failure(err):
            raise
        on_failure(err)
        return None


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an error's text (its type's name when it has none), for one-line reports."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def http_retries(uri: str, retry_s: float) -> None:
    """Bound MLflow's HTTP retries to about ``retry_s`` seconds per request (its defaults retry
    for minutes): 3 attempts of ``retry_s / 4`` each with back-offs of 1 and 2 s. Process-wide
    (MLflow reads these variables per request); only for http(s) stores."""
    if uri.startswith(("http://", "https://")):
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "2"
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(retry_s / 4)))


def warm_up(tracking_uri: str) -> None:
    """Open and cache the store, and what every run's tags need, in a fresh worker process."""
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags

    mlflow.set_tracking_uri(tracking_uri)  # (sets up MLflow's tracing provider: 0.02 s)
    mlflow.tracking.MlflowClient(tracking_uri).search_experiments(max_results=1)  # opens and caches the store
    package_versions(), git_commit()  # every run's tags, cached per process
    resolve_tags()  # MLflow's run context (its git lookup imports GitPython: 0.04 s)
