"""Share of a sweep's wall time not spent in training or evaluation steps.

Runs a real sweep (default ``+sweep=quick``) with MLflow tracking into a temporary store,
then compares the sweeper's own wall time (``sweep/wall_s`` on the parent run: sampling,
model checks, job set-up, data, build, compile, logging, storage) with the time the trials
spent in Keras train and validation steps (``perf/epoch_train_s`` + ``perf/epoch_eval_s`` of
each child run, summed over epochs so that pruned trials count too), with a
breakdown of the rest. The first epoch of each trial also traces the training graph; that
part is reported separately (first epoch minus the trial's median later epoch).

    python benchmarks/sweep_overhead.py                      # the quick sweep as shipped
    python benchmarks/sweep_overhead.py trainer.epochs=8     # extra overrides
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import optuna
from common import run_checked  # benchmarks/common.py (scripts run as python benchmarks/<name>.py)


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
        process_wall = run_checked(cmd, tmp, f"sweep {args.sweep}")
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("resnet-blocks")
        runs = client.search_runs([exp.experiment_id], max_results=10000)
        parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
        children = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
        sweep_wall = parent.data.metrics["sweep/wall_s"]
        study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp}/optuna.db")
        trial_s = sum(
            (t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials if t.datetime_complete
        )

        def total(key: str) -> float:
            return sum(r.data.metrics.get(key, 0.0) for r in children)

        # Per-epoch timings exist for every trial, pruned ones included (their final metrics do not).
        train = evaluate = tracing = 0.0
        for r in children:
            epochs = [m.value for m in sorted(client.get_metric_history(r.info.run_id, "perf/epoch_train_s"),
                                              key=lambda m: m.step)]  # fmt: skip
            train += sum(epochs)
            evaluate += sum(m.value for m in client.get_metric_history(r.info.run_id, "perf/epoch_eval_s"))
            if len(epochs) > 1:
                tracing += max(0.0, epochs[0] - statistics.median(epochs[1:]))
        run_span = sum((r.info.end_time - r.info.start_time) / 1000 for r in children if r.info.end_time)
        build, data = total("perf/build_compile_s"), total("perf/data_s")
    steps = train + evaluate
    # Where the sweeper's wall time went, summed over trials (one trial at a time on this machine).
    parts = {
        "train steps (after first-epoch tracing)": train - tracing,
        "eval steps": evaluate,
        "first-epoch graph tracing": tracing,
        "model build + compile": build,
        "data pipeline set-up": data,
        "rest of the job (fit() set-up, callbacks, MLflow logging)": run_span - steps - build - data,
        "launch (worker process, Hydra job, sweeper vetting, Optuna)": trial_s - run_span,
        "sweeper outside trials (study set-up, report)": sweep_wall - trial_s,
    }
    result = {
        "trials": len(children),
        "process_wall_s": process_wall,
        "sweep_wall_s": sweep_wall,
        "train_s": train,
        "eval_s": evaluate,
        "first_epoch_tracing_s": tracing,
        "overhead_share": 1 - steps / sweep_wall,
        "overhead_share_with_tracing": 1 - (steps - tracing) / sweep_wall,
        "breakdown_s": parts,
    }
    print(f"sweep {args.sweep} {' '.join(args.overrides)}: {len(children)} trials")
    print(f"  process wall (incl. Python/TF start-up): {process_wall:8.1f} s")
    print(f"  sweeper wall:                            {sweep_wall:8.1f} s")
    for name, secs in parts.items():
        print(f"    {name:<62} {secs:7.1f} s  {secs / sweep_wall:6.1%}  ({secs / max(1, len(children)):.2f} s/trial)")
    print(f"  overhead share (not train/eval steps):   {result['overhead_share']:8.1%}  (target <= 5%)")
    print(f"  counting first-epoch tracing as overhead: {result['overhead_share_with_tracing']:7.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
