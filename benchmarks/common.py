"""What the benchmark scripts share: running a sweep (or any command) in a child process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def run_checked(cmd: Sequence[str], cwd: str | Path, what: str) -> float:
    """Run ``cmd`` in ``cwd``; return its wall time in seconds, or stop with its output's tail."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall
