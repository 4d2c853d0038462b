"""A run's log: :class:`RunTracker` owns one MLflow run; it logs the resolved config,
per-epoch metrics, final figures, the model and tags, and always ends the run in a truthful
state: FINISHED on success, FAILED (with a ``failure_reason`` tag) on an error, KILLED on
Ctrl-C. :class:`NullTracker` stands in when tracking is off."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from experiments.cli import RunFailure
from experiments.signals import delivered, interruption_reason
from experiments.tracking.background_metrics import BackgroundMetrics
from experiments.tracking.local import LocalRecord, local_output_dir, out_of_space_line
from experiments.tracking.processes import process_tags
from experiments.tracking.store import (
    INHERITED_ENV,
    StoreLost,
    first_line,
    flatten,
    get_or_create_experiment,
    git_commit,
    http_retries,
    is_store_failure,
    package_versions,
    ui_link,
    unless_store_fails,
)

log = logging.getLogger("experiments.tracking")
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


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
        self.model_uri: str | None = None  # where log_model put the run's model
        self._background: BackgroundMetrics | None = None  # per-epoch metrics being written

    @contextmanager
    def open(
        self,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        ended_ok: tuple[type[BaseException], ...] = (),
        local_at_start: bool = False,
    ):
        """Start (or resume, with ``run_id``) a run; end it FINISHED, FAILED or KILLED.

        Exceptions of the ``ended_ok`` types (e.g. a pruned trial) end the run FINISHED with
        a ``stopped_early`` tag, and are re-raised. ``local_at_start``: a store that fails as
        the run starts is lost as it would be later (the run records locally, then StoreLost);
        otherwise that failure is raised at once.
        """
        import mlflow

        for var in INHERITED_ENV:
            os.environ.pop(var, None)
        http_retries(self.tracking_uri, self.retry_s)
        # MLflow's SQL store logs every database error with a full traceback before raising it;
        # a failing store is reported here, once, in one line.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        mlflow.set_tracking_uri(self.tracking_uri)
        all_tags = {**package_versions(), **process_tags(), **(tags or {})}
        commit = git_commit()
        if commit:
            all_tags["git_commit"] = commit
        self.run_id, self.lost, self.model_uri, self._background = None, None, None, None
        try:
            experiment_id = self.experiment_id = get_or_create_experiment(self.experiment_name)
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
        except Exception as err:
            if not (local_at_start and is_store_failure(err)):
                raise
            self.local = LocalRecord(local_output_dir(None))
            self._store_lost(err)
        self.local = LocalRecord(local_output_dir(self.run_id))
        try:
            yield self
            self._drain()  # a metric the store refused fails the run, as when logged directly
        except ended_ok as err:
            self._drain(quiet=True)
            self._end("FINISHED", tag=("stopped_early", str(err) or type(err).__name__))
            raise
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (experiments.signals)
            delivered()
            self._drain(quiet=True)
            self._end("KILLED", tag=("failure_reason", interruption_reason(err)))
            raise
        except OSError as err:
            self._drain(quiet=True)
            if err.errno not in OUT_OF_SPACE:
                self._end("FAILED", tag=("failure_reason", f"{type(err).__name__}: {err}"[:5000]))
                raise
            where = f" writing {err.filename}" if err.filename else ""
            self._end("FAILED", tag=("failure_reason", f"no space left on device{where}"))
            raise self._out_of_space(where) from None
        except BaseException as err:
            self._drain(quiet=True)
            self._end("FAILED", tag=("failure_reason", f"{type(err).__name__}: {err}"[:5000]))
            raise
        else:
            self._end("FINISHED")
        if self.lost is not None:
            first = first_line(self.lost, 300)
            lost = StoreLost(
                f"tracking.tracking_uri: the MLflow tracking store {self.tracking_uri!r} failed "
                + (f"during run {self.run_id}" if self.run_id else "as the run started")
                + f" ({first}); the run finished and its config, metrics and model are in "
                f"{self.local.dir.resolve()}"
            )
            lost.local_dir = str(self.local.dir.resolve())
            raise lost

    def _out_of_space(self, where: str) -> RunFailure:
        """The one line for a disk that filled up during the run (:func:`out_of_space_line`)."""
        return RunFailure(out_of_space_line(self.local, self.run_id, self.lost is None, where))

    def _end(self, status: str, tag: tuple[str, str] | None = None) -> None:
        import mlflow

        if tag is not None:
            self.remote(mlflow.set_tag, *tag)
        self.remote(mlflow.end_run, status=status)  # (MLflow forgets the active run first, even if this fails)

    def remote(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` against the store, unless it was lost; a store failure marks
        it lost (and is logged once) instead of failing the run."""
        if self.lost is not None:
            return None
        return unless_store_fails(fn, *args, on_failure=self._store_lost, **kwargs)

    def _store_lost(self, err: BaseException) -> None:
        if self.lost is None:
            self.lost = err
            log.warning(
                "tracking.tracking_uri: MLflow tracking store %r failed (%s); this run goes on and records in %s",
                self.tracking_uri, first_line(err), self.local.dir if self.local else "?",
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
        from experiments.tracking.epoch_logger import MlflowEpochLogger  # (a Keras callback: Keras on use)

        return MlflowEpochLogger(self)

    def log_config(self, container: Mapping[str, Any], yaml_text: str) -> None:
        import mlflow

        self.local.write_text("config.yaml", yaml_text)
        params = flatten(container)
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.remote(mlflow.log_params, dict(items[i : i + 100]))
        self.remote(mlflow.log_text, yaml_text, "config.yaml")

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
                self._background = BackgroundMetrics(self.tracking_uri, self.run_id, on_lost=self._store_lost)
            self._background.put(metrics, step)
            return
        import mlflow

        self._drain()  # keep the order of the writes (and one writer at a time)
        self.remote(mlflow.log_metrics, {k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        import mlflow

        self._drain()
        self.remote(mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_text(self, text: str, artifact_file: str) -> None:
        import mlflow

        self.remote(mlflow.log_text, text, artifact_file)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        import mlflow

        self.remote(mlflow.log_dict, dict(data), artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        self.remote(mlflow.log_artifact, str(path), artifact_path)

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
        self.remote(mlflow.log_input, MetaDataset(source, name=name, digest=data.digest), context="training", tags=tags)

    def log_model(
        self, model, example_input, *, metadata: Mapping[str, Any], registered_name: str | None = None
    ) -> str:
        """Log ``model`` as the run's MLflow Model (:func:`experiments.tracking.models.log_model`);
        returns its URI, or the local folder it was kept in when the store is lost (also
        :attr:`model_uri`)."""
        from experiments.tracking.models import log_model

        self.model_uri = log_model(self, model, example_input, metadata=metadata, registered_name=registered_name)
        return self.model_uri


class NullTracker:
    """Stands in for :class:`RunTracker` when tracking is disabled (benchmarks): a run that is
    never recorded, whose every log_* and set_* call does nothing."""

    run_id = page = model_uri = lost = None

    @contextmanager
    def open(self, **_: Any):
        yield self

    def epoch_callback(self):
        import keras

        return keras.callbacks.Callback()

    def log_config(self, container: Mapping[str, Any], yaml_text: str) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, **_: Any) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_dataset(self, data) -> None: ...
    def log_model(self, model, example_input, **_: Any) -> None: ...  # (no URI: no model is kept)
