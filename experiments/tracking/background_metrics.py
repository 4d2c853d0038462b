"""A run's per-epoch metrics, written to the store by a background thread."""

from __future__ import annotations

import time
from collections.abc import Mapping

from experiments.tracking.store import is_store_failure


class BackgroundMetrics:
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
