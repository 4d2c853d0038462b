"""Every MLflow call of the project lives here.

A :class:`RunTracker` owns one MLflow run: it logs the resolved config, per-epoch metrics,
final figures, the model and tags, and always ends the run in a truthful state: FINISHED on
success, FAILED (with a ``failure_reason`` tag) on an error, KILLED on Ctrl-C.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from experiments.cli import RunFailure
from experiments.locks import sqlite_setup_lock
from experiments.signals import interruption_reason

log = logging.getLogger(__name__)

# Runs started by a parent process must not attach to the parent's run by accident.
_INHERITED_ENV = ("MLFLOW_RUN_ID",)
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


def process_tags() -> dict[str, str]:
    """Which process owns a run: a run left RUNNING by a process that is gone is marked KILLED
    by the next command on this host (:func:`reap_dead_runs`)."""
    return {
        "process.host": socket.gethostname(),
        "process.pid": str(os.getpid()),
        "process.start": _start_time(os.getpid()),
    }


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where unknown): with the pid, it
    tells a live process from a later one that reused the pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_gone(pid: str, start: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return bool(start) and _start_time(int(pid)) not in ("", start)


def reap_dead_runs(tracking_uri: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose process (on this host) is gone; return their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    host = socket.gethostname()
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    runs = client.search_runs(
        ids, filter_string=f"attributes.status = 'RUNNING' and tags.`process.host` = '{host}'", max_results=5000
    )
    reaped = []
    for run in runs:
        pid, start = run.data.tags.get("process.pid", ""), run.data.tags.get("process.start", "")
        if pid and _process_gone(pid, start):
            client.set_tag(
                run.info.run_id, "failure_reason", f"its process {pid} on {host} ended without ending the run"
            )
            client.set_terminated(run.info.run_id, status="KILLED")
            reaped.append(run.info.run_id)
    return reaped


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


def http_retries(uri: str, retry_s: float) -> None:
    """Bound MLflow's HTTP retries to about ``retry_s`` seconds per request (its defaults retry
    for minutes): 3 attempts of ``retry_s / 4`` each with back-offs of 1 and 2 s. Process-wide
    (MLflow reads these variables per request); only for http(s) stores."""
    if uri.startswith(("http://", "https://")):
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "2"
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(retry_s / 4)))


def local_output_dir(run_id: str | None) -> Path:
    """Where a run keeps its local record: Hydra's output directory for the run (or job), else
    ``outputs/runs/<run id>``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - not inside a Hydra app (finalize, evaluate, the API)
        return Path("outputs") / "runs" / (run_id or "unknown")


class LocalRecord:
    """A run's record on local disk, beside the tracking store: its config and every metric as
    logged (``metrics.jsonl``), and its model when the store could not take it."""

    def __init__(self, directory: Path):
        self.dir = directory

    def write_text(self, name: str, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / name).write_text(text)

    def append_metrics(self, metrics: Mapping[str, float], step: int | None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"time": round(time.time(), 3), "step": step or 0, **{k: float(v) for k, v in metrics.items()}}
        )
        with (self.dir / "metrics.jsonl").open("a") as f:
            f.write(line + "\n")


class RunTracker:
    """One MLflow run. Use :meth:`open` as a context manager.

    When the store stops answering (a server gone, a database unwritable) the run goes on:
    after bounded retries the tracker records locally only, and when the run ends it raises
    :class:`StoreLost`, naming ``tracking.tracking_uri`` and the local directory that holds the
    config, every metric and the model."""

    @property
    def page(self) -> str | None:
        """This run's page in the MLflow UI, for an HTTP tracking server."""
        return ui_link(self.tracking_uri, self.experiment_id, self.run_id) if self.run_id else None

    def __init__(self, tracking_uri: str, experiment_name: str, *, retry_s: float = 30.0, system_metrics: bool = False):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.retry_s = retry_s
        self.system_metrics = system_metrics  # MLflow's own sampler (psutil), every 10 s by default
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.lost: BaseException | None = None  # the store's failure, once it failed
        self.local: LocalRecord | None = None
        self._background: _BackgroundMetrics | None = None  # per-epoch metrics being written

    @contextmanager
    def open(
        self,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        ended_ok: tuple[type[BaseException], ...] = (),
    ):
        """Start (or resume, with ``run_id``) a run; end it FINISHED, FAILED or KILLED.

        Exceptions of the ``ended_ok`` types (e.g. a pruned trial) end the run FINISHED with
        a ``stopped_early`` tag, and are re-raised.
        """
        import mlflow

        for var in _INHERITED_ENV:
            os.environ.pop(var, None)
        http_retries(self.tracking_uri, self.retry_s)
        # MLflow's SQL store logs every database error with a full traceback before raising it;
        # a failing store is reported here, once, in one line.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment_id = self.experiment_id = get_or_create_experiment(self.experiment_name)
        all_tags = {**package_versions(), **process_tags(), **(tags or {})}
        commit = git_commit()
        if commit:
            all_tags["git_commit"] = commit
        while mlflow.active_run() is not None:  # never nest under a leftover run
            mlflow.end_run()
        run = mlflow.start_run(
            run_id=run_id,
            experiment_id=None if run_id else experiment_id,
            run_name=None if run_id else run_name,
            parent_run_id=parent_run_id,
            tags=all_tags,
            log_system_metrics=self.system_metrics,
        )
        self.run_id = run.info.run_id
        self.lost = None
        self.local = LocalRecord(local_output_dir(self.run_id))
        self._background = None
        try:
            yield self
            self._drain()  # a metric the store refused fails the run, as when logged directly
        except ended_ok as err:
            self._drain(quiet=True)
            self._end("FINISHED", tag=("stopped_early", str(err) or type(err).__name__))
            raise
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (experiments.signals)
            self._drain(quiet=True)
            self._end("KILLED", tag=("failure_reason", interruption_reason(err)))
            raise
        except BaseException as err:
            self._drain(quiet=True)
            self._end("FAILED", tag=("failure_reason", f"{type(err).__name__}: {err}"[:5000]))
            raise
        else:
            self._end("FINISHED")
        if self.lost is not None:
            text = str(self.lost).strip()
            first = text.splitlines()[0][:300] if text else type(self.lost).__name__
            raise StoreLost(
                f"tracking.tracking_uri: the MLflow tracking store {self.tracking_uri!r} failed during run "
                f"{self.run_id} ({first}); the run finished and its config, metrics and model are in "
                f"{self.local.dir.resolve()}"
            )

    def _end(self, status: str, tag: tuple[str, str] | None = None) -> None:
        import mlflow

        if tag is not None:
            self._remote(mlflow.set_tag, *tag)
        self._remote(mlflow.end_run, status=status)  # (MLflow forgets the active run first, even if this fails)

    def _remote(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` against the store, unless it was lost; a store failure marks
        it lost (and is logged once) instead of failing the run."""
        if self.lost is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not is_store_failure(err):
                raise
            self._store_lost(err)
            return None

    def _store_lost(self, err: BaseException) -> None:
        if self.lost is None:
            self.lost = err
            text = str(err).strip()
            log.warning(
                "tracking.tracking_uri: MLflow tracking store %r failed (%s); this run goes on and records in %s",
                self.tracking_uri, text.splitlines()[0][:200] if text else type(err).__name__,
                self.local.dir if self.local else "?",
            )  # fmt: skip

    def _drain(self, *, quiet: bool = False) -> None:
        """Wait until the metrics logged in the background are in the store."""
        background, self._background = self._background, None
        if background is not None:
            try:
                background.close()
            except Exception as err:
                if not quiet:
                    raise
                log.warning("MLflow run %s: some per-epoch metrics were not logged: %s", self.run_id, err)

    # -- logging helpers (only valid inside ``open``) -------------------------------------
    def epoch_callback(self):
        from experiments.epoch_logger import MlflowEpochLogger  # (a Keras callback: Keras on use)

        return MlflowEpochLogger(self)

    def log_config(self, container: Mapping[str, Any], yaml_text: str) -> None:
        import mlflow

        self.local.write_text("config.yaml", yaml_text)
        params = flatten(container)
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self._remote(mlflow.log_params, dict(items[i : i + 100]))
        self._remote(mlflow.log_text, yaml_text, "config.yaml")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, *, background: bool = False) -> None:
        """Log ``metrics`` now, or with ``background`` from a thread, in order, so that training
        does not wait for the store (a write to SQLite takes ~7 ms, at every epoch of every
        trial). Each metric keeps the time of this call; the run waits for them before it ends.
        Every metric is also appended to the run's local ``metrics.jsonl``."""
        self.local.append_metrics(metrics, step)
        if self.lost is not None:
            return
        if background:
            if self._background is None:
                self._background = _BackgroundMetrics(self.tracking_uri, self.run_id, on_lost=self._store_lost)
            self._background.put(metrics, step)
            return
        import mlflow

        self._drain()  # keep the order of the writes (and one writer at a time)
        self._remote(mlflow.log_metrics, {k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        import mlflow

        self._drain()
        self._remote(mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_text(self, text: str, artifact_file: str) -> None:
        import mlflow

        self._remote(mlflow.log_text, text, artifact_file)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        import mlflow

        self._remote(mlflow.log_dict, dict(data), artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        self._remote(mlflow.log_artifact, str(path), artifact_path)

    def log_dataset(self, data) -> None:
        """Log the run's data as an MLflow dataset input: its origin, a digest of its splits'
        contents, the split sizes and class names (the UI's Dataset column)."""
        import mlflow
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        if data.origin.startswith(("http://", "https://")):
            source = HTTPDatasetSource(data.origin)
        else:
            source = CodeDatasetSource({"origin": data.origin, "data.source": data.source})
        sizes = {"train": data.num_train, "validation": data.num_val, "test": data.num_test}
        name = f"{data.source} " + "/".join(str(v) for v in sizes.values())
        tags = {f"{k}_images": str(v) for k, v in sizes.items()}
        tags["classes"] = ",".join(data.class_names)[:5000]
        self._remote(
            mlflow.log_input, MetaDataset(source, name=name, digest=data.digest), context="training", tags=tags
        )

    def log_model(
        self, model, example_input, *, metadata: Mapping[str, Any], registered_name: str | None = None
    ) -> str:
        """Log ``model`` (a serving model of standard Keras layers) as an MLflow Model named
        ``model``: keras flavour (``.keras`` file) and pyfunc, with its output signature and
        input example (images as the source gives them; ``metadata`` states the input); register
        it as a new version of ``registered_name`` if given. Returns the model's URI
        (``runs:/<run id>/model``), or, when the store is lost, the local folder it was saved to
        instead (``mlflow.pyfunc.load_model`` takes either)."""
        import keras
        import mlflow
        import mlflow.keras
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        # A direct call, not predict(): predict traces one more function, and TensorFlow keeps
        # memory for every traced function for the life of the process.
        example = keras.ops.convert_to_numpy(example_input)
        probs = keras.ops.convert_to_numpy(model(example, training=False))
        # Outputs only: MLflow 3.17's pyfunc checks a tensor input schema for the exact dtype
        # and rank (float32 refuses float64 and uint8; (n, 8, 8, 1) refuses (n, 8, 8)), with an
        # error that prints the whole array. Without one, Keras casts any numeric dtype, adds a
        # missing channel axis and names the expected shape in one line on a wrong one.
        signature = ModelSignature(outputs=Schema([TensorSpec(probs.dtype, (-1, *probs.shape[1:]))]))
        # Pinned requirements given, not inferred: inferring them loads the model again in a
        # fresh interpreter that imports TensorFlow (seconds per run).
        requirements = [f"{pkg}=={version(pkg)}" for pkg in ("keras", "tensorflow", "mlflow") if _installed(pkg)]
        options = {"signature": signature, "input_example": example, "pip_requirements": requirements,
                   "metadata": dict(metadata)}  # fmt: skip
        with _quiet_mlflow_model_logging():
            logged = self._remote(
                mlflow.models.Model.log,
                artifact_path=None,
                flavor=_KerasFlavour,
                model=model,
                name="model",
                registered_model_name=registered_name,
                validate_serving_input=False,  # (reloads the model to predict the example: our tests do that)
                **options,
            )
            if logged is not None:
                return f"runs:/{self.run_id}/model"
            path = self.local.dir / "model"  # the store is gone: the model is kept here
            shutil.rmtree(path, ignore_errors=True)
            _KerasFlavour.save_model(path=str(path), model=model, **options)
        return str(path.resolve())


class _KerasFlavour:
    """``mlflow.keras`` for :meth:`mlflow.models.Model.log`, with the model directory made
    before the flavour writes the input example into it: MLflow 3.17's ``mlflow.keras.save_model``
    writes the example first and fails (FileNotFoundError) when given one. A signature without
    inputs (which that function refuses: it reads their tensor specs) is set on the MLmodel it
    writes. ``tests/experiments/test_model_logging.py`` fails once MLflow no longer needs this."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path, validate_serving_input=None, signature=None, mlflow_model=None, **kwargs):
        import mlflow.keras
        from mlflow.models import Model

        os.makedirs(path, exist_ok=True)
        if signature is None or signature.inputs is not None:
            return mlflow.keras.save_model(path=path, signature=signature, mlflow_model=mlflow_model, **kwargs)
        mlflow_model = mlflow_model if mlflow_model is not None else Model()
        mlflow_model.signature = signature
        # (it warns that the model has no signature: it has one, without inputs)
        save_log = logging.getLogger("mlflow.keras.save")
        level = save_log.level
        save_log.setLevel(logging.ERROR)
        try:
            return mlflow.keras.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        finally:
            save_log.setLevel(level)


def _installed(pkg: str) -> bool:
    try:
        version(pkg)
        return True
    except PackageNotFoundError:
        return False


@contextmanager
def _quiet_mlflow_model_logging():
    """MLflow logs an INFO line per registered version and warns about the input example's
    serving payload; our own summary line says where the model is."""
    loggers = [logging.getLogger(n) for n in ("mlflow.models.model", "mlflow.tracking._model_registry.client")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _BackgroundMetrics:
    """One run's metrics, written by a background thread in the order they were logged
    (held while the training thread is between epochs: see :mod:`experiments.background`)."""

    def __init__(self, tracking_uri: str, run_id: str, on_lost=None):
        from mlflow.tracking import MlflowClient

        from experiments.background import OrderedWriter

        self._client, self._run_id = MlflowClient(tracking_uri), run_id
        self._writer = OrderedWriter("mlflow-metrics")
        self._on_lost, self._lost = on_lost, False  # a store failure: reported, later writes skipped

    def put(self, metrics: Mapping[str, float], step: int | None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)  # the time of the call, not of the write
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._writer.submit(self._write, batch)

    def _write(self, batch) -> None:
        if self._lost:
            return
        try:
            self._client.log_batch(self._run_id, metrics=batch)
        except Exception as err:
            if self._on_lost is None or not is_store_failure(err):
                raise  # a refused metric fails the run
            self._lost = True
            self._on_lost(err)

    def close(self) -> None:
        """Wait for every metric put so far; raise the store's error, if any."""
        self._writer.close()


class NullTracker:
    """Stands in for :class:`RunTracker` when tracking is disabled (benchmarks)."""

    run_id = page = None

    @contextmanager
    def open(self, **_: Any):
        yield self

    def epoch_callback(self):
        import keras

        return keras.callbacks.Callback()

    def __getattr__(self, name):  # every log_* / set_* call is a no-op
        return lambda *args, **kwargs: None


class StudyRuns:
    """Client-side MLflow operations of a sweep: the parent run and trial-run bookkeeping.

    The sweeper never uses MLflow's fluent (active-run) API, so the jobs it launches in the
    same process can start their own runs freely.
    """

    def __init__(self, tracking_uri: str, experiment_name: str):
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = get_or_create_experiment(experiment_name)

    def parent_run(self, study_name: str, known_run_id: str | None) -> str:
        """The study's parent run: the one recorded in the study, else the oldest parent run
        tagged with the study, else a new one. Workers starting together may each create one;
        all then agree on the oldest and the others delete theirs."""
        if known_run_id:
            try:
                run = self.client.get_run(known_run_id)
                if run.info.lifecycle_stage == "active":
                    self.client.update_run(known_run_id, status="RUNNING")
                    return known_run_id
            except Exception:  # noqa: BLE001 - deleted or from another store: make a new one
                log.warning("parent run %s not found; creating a new one", known_run_id)
        existing = self._parents(study_name)
        if existing:
            self.client.update_run(existing[0], status="RUNNING")
            return existing[0]
        tags = {"sweep.study": study_name, "sweep.role": "parent", **package_versions()}
        commit = git_commit()
        if commit:
            tags["git_commit"] = commit
        mine = self.client.create_run(self.experiment_id, run_name=study_name, tags=tags).info.run_id
        chosen = self._parents(study_name)[0]
        if chosen != mine:
            self.client.delete_run(mine)
        return chosen

    def _parents(self, study_name: str) -> list[str]:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`sweep.study` = '{study_name}' and tags.`sweep.role` = 'parent'",
            max_results=100,
        )
        return [r.info.run_id for r in sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))]

    def end(self, run_id: str, status: str, reason: str | None = None) -> None:
        if reason:
            self.client.set_tag(run_id, "failure_reason", reason[:5000])
        self.client.set_terminated(run_id, status=status)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metric(self, run_id: str, key: str, value: float, step: int | None = None) -> None:
        self.client.log_metric(run_id, key, float(value), step=step or 0)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(local_dir), artifact_path)

    def record_trial_without_training(
        self,
        parent_run_id: str,
        name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        status: str = "FINISHED",
    ) -> str:
        """A child run for a trial that never trained (rejected, or its model failed to build)."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={"mlflow.parentRunId": parent_run_id, **{k: str(v) for k, v in tags.items()}},
        )
        self.log_params(run.info.run_id, params)
        self.client.set_terminated(run.info.run_id, status=status)
        return run.info.run_id

    def trial_runs(self, parent_run_id: str) -> list:
        """All child runs of ``parent_run_id``."""
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=50000
        )

    def kill_stale_runs(
        self, parent_run_id: str, live_trials: set[int], finished: dict[int, str] | None = None
    ) -> list[str]:
        """Mark RUNNING child runs KILLED unless their trial is still live; return their ids.

        ``finished``: the final Optuna state of each finished trial. A run whose worker died
        after the run ended but before the sweeper tagged it gets its trial's ``sweep.state``,
        so MLflow and Optuna agree."""
        killed = []
        for run in self.trial_runs(parent_run_id):
            trial = run.data.tags.get("sweep.trial")
            state = (finished or {}).get(int(trial)) if trial is not None else None
            if state and "sweep.state" not in run.data.tags:
                self.client.set_tag(run.info.run_id, "sweep.state", state)
            if run.info.status == "RUNNING" and (trial is None or int(trial) not in live_trials):
                self.client.set_tag(run.info.run_id, "failure_reason", "worker died (stale trial)")
                self.client.set_terminated(run.info.run_id, status="KILLED")
                killed.append(run.info.run_id)
        return killed
