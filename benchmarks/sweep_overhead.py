"""Share of a sweep's wall time not spent in training or evaluation steps.

Runs a real sweep (default ``+sweep=quick``) with MLflow tracking into a temporary store,
then compares the sweeper's own wall time (``sweep/wall_s`` on the parent run: sampling,
model checks, job set-up, data, build, compile, logging, storage) with the time the trials
spent in Keras train and validation steps (``perf/train_time_s`` + ``perf/eval_time_s`` of
each child run). The first epoch of each trial also traces the training graph; that part is
reported separately (first epoch minus the trial's median later epoch).

    python benchmarks/sweep_overhead.py                      # the quick sweep as shipped
    python benchmarks/sweep_overhead.py trainer.epochs=8     # extra overrides
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default="quick")
    p.add_argument("--json")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        cmd = [sys.executable, "-m", "experiments.run", f"+sweep={args.sweep}", f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db",
               f"tracking.tracking_uri={uri}", f"hydra.sweep.dir={tmp}/multirun", "trainer.verbose=0", *args.overrides]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        process_wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("resnet-blocks")
        runs = client.search_runs([exp.experiment_id], max_results=10000)
        parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
        children = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
        sweep_wall = parent.data.metrics["sweep/wall_s"]
        train = sum(r.data.metrics.get("perf/train_time_s", 0.0) for r in children)
        evaluate = sum(r.data.metrics.get("perf/eval_time_s", 0.0) for r in children)
        tracing = 0.0
        for r in children:
            hist = client.get_metric_history(r.info.run_id, "perf/epoch_train_s")
            epochs = [m.value for m in sorted(hist, key=lambda m: m.step)]
            if len(epochs) > 1:
                tracing += max(0.0, epochs[0] - statistics.median(epochs[1:]))
    steps = train + evaluate
    result = {
        "trials": len(children),
        "process_wall_s": process_wall,
        "sweep_wall_s": sweep_wall,
        "train_s": train,
        "eval_s": evaluate,
        "first_epoch_tracing_s": tracing,
        "overhead_share": 1 - steps / sweep_wall,
        "overhead_share_with_tracing": 1 - (steps - tracing) / sweep_wall,
    }
    print(f"sweep {args.sweep} {' '.join(args.overrides)}: {len(children)} trials")
    print(f"  process wall (incl. Python/TF start-up): {process_wall:8.1f} s")
    print(f"  sweeper wall:                            {sweep_wall:8.1f} s")
    print(
        f"  train steps: {train:8.1f} s   eval steps: {evaluate:8.1f} s   (first-epoch graph tracing ~{tracing:.1f} s)"
    )
    print(f"  overhead share (not train/eval steps):   {result['overhead_share']:8.1%}  (target <= 5%)")
    print(f"  counting first-epoch tracing as overhead: {result['overhead_share_with_tracing']:7.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
