"""The Keras callback that logs a run's epochs through its tracker (:mod:`experiments.tracking`).

Apart from the tracker so that importing tracking imports no Keras (commands that never train
stay fast)."""

from __future__ import annotations

import keras

from experiments.metrics import EPOCH_METRICS, best, keras_logs_to_metrics


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics (``train/loss``, ``val/accuracy``, ``lr``) with step = epoch."""

    def __init__(self, tracker):
        super().__init__()
        self.tracker = tracker
        self.timing = None  # set by experiments.train: the EpochTiming callback, which runs first
        self._best: dict[str, float] = {}

    def on_train_begin(self, logs=None):
        # Logged now, not with the final metrics, so a pruned or failed trial has them too.
        # (A sweep job set up ahead waited ``slot_wait_s`` for a training slot; the metric's
        # timestamp is when its training began.)
        phases = self.timing.phases if self.timing is not None else {}
        metrics = {f"perf/{k}": phases[k] for k in ("build_compile_s", "slot_wait_s") if k in phases}
        if metrics:
            self.tracker.log_metrics(metrics, background=True)

    def on_resume(self, history: list[dict[str, float]]) -> None:
        """Training resumes from a checkpoint: this run gets the epochs an earlier attempt
        trained (the same steps and values it logged), so its history has no gap."""
        for epoch, metrics in enumerate(history):
            self._log_epoch(epoch, dict(metrics))

    def on_epoch_end(self, epoch, logs=None):
        metrics = keras_logs_to_metrics(logs or {}, self.model)
        if self.timing is not None and self.timing.train_s:
            metrics["perf/epoch_train_s"] = self.timing.train_s[-1]
            metrics["perf/epoch_eval_s"] = self.timing.eval_s[-1]
        self._log_epoch(epoch, metrics)

    def _log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        # Best so far, every epoch: a pruned or interrupted run sorts by it like a finished one.
        for key in EPOCH_METRICS:
            if key in metrics:
                self._best[key] = best([self._best.get(key, float("nan")), metrics[key]], key)
        metrics.update({f"best/{k}": v for k, v in self._best.items()})
        self.tracker.log_metrics(metrics, step=epoch + 1, background=True)
