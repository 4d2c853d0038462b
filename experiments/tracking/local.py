"""A run's record on local disk, beside the tracking store (what survives a lost store)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("experiments.tracking")


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


def out_of_space_line(local: LocalRecord | None, run_id: str | None, ended: bool, where: str) -> str:
    """A disk that filled up during a run, in one line: where, what the store knows of the run
    (``ended``: FAILED was written), and what its local record kept."""
    state = (f"run {run_id} ended FAILED" if ended and run_id else
             f"run {run_id or '(not started)'} could not be ended in the store (it may be full too: "
             "python -m experiments.cleanup ends it once there is space)")  # fmt: skip
    kept = sorted(p.name for p in local.dir.iterdir()) if local and local.dir.is_dir() else []
    folder = local.dir.resolve() if local else "?"
    return f"no space left on device{where}: {state}; kept in {folder}: " + (", ".join(kept) if kept else "nothing")
