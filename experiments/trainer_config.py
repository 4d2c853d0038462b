"""Trainer settings checked before anything trains: no Keras needed to refuse a bad value."""

from __future__ import annotations

import math

from experiments.metrics import EPOCH_METRICS
from resnet_blocks import SpecError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("none", "mirrored")


def validate_trainer_config(t) -> None:
    """Reject bad trainer settings with the field, the value and what is allowed."""

    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise SpecError(f"trainer.{key}", getattr(t, key), allowed)

    need(t.epochs >= 1, "epochs", "an integer >= 1")
    need(t.batch_size >= 1, "batch_size", "an integer >= 1")
    need(t.optimizer in OPTIMIZERS, "optimizer", "one of " + ", ".join(OPTIMIZERS))
    need(t.schedule in SCHEDULES, "schedule", "one of " + ", ".join(SCHEDULES))
    need(math.isfinite(t.learning_rate) and t.learning_rate > 0, "learning_rate", "a number > 0")
    need(0 <= t.momentum < 1, "momentum", "a number in [0, 1)")
    need(t.weight_decay >= 0, "weight_decay", "a number >= 0")
    need(0 <= t.label_smoothing < 1, "label_smoothing", "a number in [0, 1)")
    need(0 <= t.warmup_epochs < t.epochs, "warmup_epochs", f"an integer in [0, epochs={t.epochs})")
    need(all(0 < m < 1 for m in t.step_milestones), "step_milestones", "fractions of the epochs, each in (0, 1)")
    need(0 < t.step_gamma <= 1, "step_gamma", "a number in (0, 1]")
    need(t.mixed_precision in PRECISIONS, "mixed_precision", "one of " + ", ".join(PRECISIONS))
    need(t.monitor in EPOCH_METRICS, "monitor", "one of " + ", ".join(EPOCH_METRICS))
    need(t.early_stopping_patience is None or t.early_stopping_patience >= 1, "early_stopping_patience", "null or >= 1")
    need(t.steps_per_epoch is None or t.steps_per_epoch >= 1, "steps_per_epoch", "null or an integer >= 1")
    need(t.verbose in (0, 1, 2), "verbose", "0, 1 or 2")
    need(t.distribute in STRATEGIES, "distribute", "one of " + ", ".join(STRATEGIES))
    need(t.max_memory_gb is None or t.max_memory_gb > 0, "max_memory_gb", "null or a number > 0")
