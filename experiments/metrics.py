"""One naming scheme for metrics: ``train/loss``, ``val/accuracy``, ``lr``, ``test/accuracy``."""

from __future__ import annotations

import math

EPOCH_METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")
COST_OBJECTIVES = ("macs", "params", "latency_ms")
_MAXIMISE = ("accuracy",)


def keras_name(metric: str) -> str:
    """``val/accuracy`` -> ``val_accuracy`` (what Keras puts in ``logs``)."""
    split, _, name = metric.partition("/")
    return name if split == "train" else f"{split}_{name}"


def keras_logs_to_metrics(logs, model=None) -> dict[str, float]:
    out = {}
    for key, value in logs.items():
        if "/" in key:  # already named (e.g. perf/epoch_train_s)
            out[key] = float(value)
        elif key.startswith("val_"):
            out[f"val/{key[4:]}"] = float(value)
        elif key in ("learning_rate", "lr"):
            continue
        else:
            out[f"train/{key}"] = float(value)
    if model is not None and getattr(model, "optimizer", None) is not None:
        out["lr"] = float(model.optimizer.learning_rate)
    return out


def direction(metric: str) -> str:
    """'maximize' for accuracies, 'minimize' for losses and costs."""
    return "maximize" if metric.rsplit("/", 1)[-1] in _MAXIMISE else "minimize"


def best(values, metric: str) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan")
    return max(finite) if direction(metric) == "maximize" else min(finite)
