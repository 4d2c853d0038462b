"""A study's runs in MLflow: its parent run and the bookkeeping of its trials' child runs, and
reading runs back (:class:`RunReader`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.tracking.store import (
    PARENT_RUN_TAG,
    get_or_create_experiment,
    git_commit,
    http_retries,
    package_versions,
)

log = logging.getLogger("experiments.tracking")


class RunReader:
    """A store's runs, read back (a report's learning curves): writes nothing."""

    def __init__(self, tracking_uri: str):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every value of metric ``key`` that run ``run_id`` logged, as ``(step, value)``."""
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]


class StudyRuns(RunReader):
    """Client-side MLflow operations of a sweep: the parent run and trial-run bookkeeping.

    The sweeper never uses MLflow's fluent (active-run) API, so the jobs it launches in the
    same process can start their own runs freely.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, *, retry_s: float = 30.0):
        import mlflow

        http_retries(tracking_uri, retry_s)  # every call the sweep makes gives up in about retry_s
        mlflow.set_tracking_uri(tracking_uri)
        super().__init__(tracking_uri)
        self.experiment_id = get_or_create_experiment(experiment_name)

    def parent_run(self, study_name: str, known_run_id: str | None) -> str:
        """The study's parent run (:meth:`_find_parent`), RUNNING and tagged with this process:
        if the process dies, ``experiments.cleanup`` (or the next run on this host) ends it."""
        from experiments.tracking.processes import process_tags

        run_id = self._find_parent(study_name, known_run_id)
        self.set_tags(run_id, process_tags())
        return run_id

    def _find_parent(self, study_name: str, known_run_id: str | None) -> str:
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

    def existing_parent(self, study_name: str, known_run_id: str | None) -> str | None:
        """The parent run :meth:`parent_run` would reopen, without touching it; None if none."""
        if known_run_id:
            try:
                if self.client.get_run(known_run_id).info.lifecycle_stage == "active":
                    return known_run_id
            except Exception:  # noqa: BLE001 - deleted or from another store
                pass
        existing = self._parents(study_name)
        return existing[0] if existing else None

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
            tags={PARENT_RUN_TAG: parent_run_id, **{k: str(v) for k, v in tags.items()}},
        )
        self.log_params(run.info.run_id, params)
        self.client.set_terminated(run.info.run_id, status=status)
        return run.info.run_id

    def trial_runs(self, parent_run_id: str) -> list:
        """All child runs of ``parent_run_id``."""
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.{PARENT_RUN_TAG} = '{parent_run_id}'", max_results=50000
        )

    def trial_runs_by_number(self, parent_run_id: str) -> dict[int, dict]:
        """The newest child run of each trial number: ``{run_id, status}``."""
        out: dict[int, dict] = {}
        for run in sorted(self.trial_runs(parent_run_id), key=lambda r: r.info.start_time or 0):
            if (trial := run.data.tags.get("sweep.trial")) is not None:
                out[int(trial)] = {"run_id": run.info.run_id, "status": run.info.status}
        return out

    def catch_up_trial(
        self, parent_run_id: str, run_id: str | None, name: str, tags: Mapping[str, Any], local: str | None, status: str
    ) -> str:
        """Bring a trial that finished while the store was lost up to date from its local
        record (``config.yaml``, ``metrics.jsonl``, ``model/``): its run, made if it never
        started, gets the metrics it missed, the tags and its end."""
        import json

        from mlflow.entities import Metric

        if run_id is None:
            run_id = self.client.create_run(
                self.experiment_id, run_name=name, tags={PARENT_RUN_TAG: parent_run_id}
            ).info.run_id
        folder = Path(local) if local else None
        if folder is not None and (folder / "metrics.jsonl").exists():
            logged = self.client.get_run(run_id).data.metrics
            last_step = {k: max((step for step, _ in self.metric_history(run_id, k)), default=-1) for k in logged}
            batch = []
            for line in (folder / "metrics.jsonl").read_text().splitlines():
                entry = json.loads(line)
                when, step = int(entry.pop("time") * 1000), int(entry.pop("step"))
                batch += [Metric(k, float(v), when, step) for k, v in entry.items() if step > last_step.get(k, -1)]
            for i in range(0, len(batch), 1000):
                self.client.log_batch(run_id, metrics=batch[i : i + 1000])
            if (folder / "config.yaml").exists():
                self.client.log_artifact(run_id, str(folder / "config.yaml"))
            if (folder / "model").is_dir():
                self.client.log_artifacts(run_id, str(folder / "model"), "model")
        self.set_tags(run_id, tags)
        self.client.set_terminated(run_id, status=status)
        return run_id

    def finalize_runs(self, parent_run_id: str) -> list[dict]:
        """The finalize runs under a study's parent run, oldest first: ``{run_id, status, tags,
        metrics}`` each (metrics: their last values)."""
        found = [r for r in self.trial_runs(parent_run_id) if r.data.tags.get("sweep.role") == "finalize"]
        found.sort(key=lambda r: r.info.start_time or 0)
        return [{"run_id": r.info.run_id, "status": r.info.status, "tags": dict(r.data.tags),
                 "metrics": dict(r.data.metrics)} for r in found]  # fmt: skip

    def tags_of(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def kill_stale_runs(
        self,
        parent_run_id: str,
        live_trials: set[int],
        finished: dict[int, str] | None = None,
        reasons: dict[int, str] | None = None,
    ) -> list[str]:
        """Mark RUNNING child runs KILLED unless their trial is still live; return their ids.

        ``finished``: the final Optuna state of each finished trial. A run whose worker died
        after the run ended but before the sweeper tagged it gets its trial's ``sweep.state``,
        so MLflow and Optuna agree. ``reasons``: why failed trials failed (a signal that
        stopped the sweep, a worker found dead), given to their runs as ``failure_reason``."""
        killed = []
        for run in self.trial_runs(parent_run_id):
            trial = run.data.tags.get("sweep.trial")
            state = (finished or {}).get(int(trial)) if trial is not None else None
            if state and "sweep.state" not in run.data.tags:
                self.client.set_tag(run.info.run_id, "sweep.state", state)
            if run.info.status == "RUNNING" and (trial is None or int(trial) not in live_trials):
                reason = (reasons or {}).get(int(trial)) if trial is not None else None
                self.client.set_tag(run.info.run_id, "failure_reason", reason or "worker died (stale trial)")
                self.client.set_terminated(run.info.run_id, status="KILLED")
                killed.append(run.info.run_id)
        return killed
