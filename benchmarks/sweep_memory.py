"""Resident memory of one sweep worker over many small trials (is it flat?).

Runs a real sweep (``+sweep=quick``, basic launcher: every trial in the same process) of
``--trials`` one-epoch trials on digits with MLflow tracking, and reads the RSS the sweeper
records after each trial (Optuna user attribute ``rss_mb``). Prints RSS per trial and the
growth from trial ``--warmup`` to the end; the target is under 150 MB.

    python benchmarks/sweep_memory.py --trials 50 --json memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5, help="growth is measured from after this trial")
    p.add_argument("--json")
    args = p.parse_args()
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/optuna.db"
        cmd = [
            sys.executable, "-m", "experiments.run", "+sweep=quick", f"hydra.sweeper.n_trials={args.trials}",
            f"hydra.sweeper.storage={storage}", "hydra.sweeper.pruner.name=none", "trainer.epochs=1",
            "trainer.verbose=0", f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db", f"hydra.sweep.dir={tmp}/multirun",
            "tracking.log_model=true",
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env={**os.environ})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
        study = optuna.load_study(study_name="quick", storage=storage)
        rss = [t.user_attrs["rss_mb"] for t in sorted(study.trials, key=lambda t: t.number) if "rss_mb" in t.user_attrs]
    print(f"{len(rss)} trials in one worker process, {wall:.0f} s")
    print("trial  RSS MB")
    for i, v in enumerate(rss, 1):
        if i <= 3 or i % 5 == 0 or i == len(rss):
            print(f"{i:>5}  {v:7.1f}")
    w = min(args.warmup, len(rss)) - 1
    growth = rss[-1] - rss[w]
    print(f"growth after trial {w + 1}: {growth:+.1f} MB (target < 150 MB) -> {'OK' if growth < 150 else 'OVER'}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rss_mb": rss, "growth_mb": growth, "warmup": w + 1, "wall_s": wall}, indent=2)
        )


if __name__ == "__main__":
    main()
