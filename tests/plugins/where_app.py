"""A plain Hydra app for the placement tests: each job records where it ran (its process and
the devices it sees) and for how long, then returns ``x``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore

# (a plain dict: the jobs' configs go to worker processes, where this module is not __main__)
ConfigStore.instance().store(name="where", node={"x": 0.0, "record": "where.jsonl", "hold_s": 1.5})


@hydra.main(version_base="1.3", config_name="where", config_path=None)
def main(cfg) -> float:
    start = time.time()
    time.sleep(cfg.hold_s)
    seen = {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"), "start": start, "end": time.time(), "x": cfg.x}  # fmt: skip
    with Path(cfg.record).open("a") as f:
        f.write(json.dumps(seen) + "\n")
    return float(cfg.x)


if __name__ == "__main__":
    main()
