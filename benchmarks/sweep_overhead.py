"""Share of a sweep's wall time not spent in training or evaluation steps.

Runs a real sweep (default ``+sweep=quick``) with MLflow tracking into a temporary store,
then compares the sweeper's own wall time (``sweep/wall_s`` on the parent run: sampling,
model checks, job set-up, data, build, compile, logging, storage) with the time the trials
spent in Keras train and validation steps (``perf/epoch_train_s`` + ``perf/epoch_eval_s`` of
each child run, summed over epochs so that pruned trials count too). The first epoch of
each trial also traces the training graph; that part is reported separately (first epoch
minus the trial's median later epoch). The breakdown places the rest on the sweep's time
line: from each trial's training start (``perf/slot_wait_s`` is logged then) to its last
epoch, and the stretches where no trial trains (before the first, between trials, after
the last). With ``hydra.sweeper.prefetch`` (default 1) a trial's set-up overlaps the
previous trial's training; it is listed per trial but costs wall time only where it is not
hidden.

    python benchmarks/sweep_overhead.py                      # the quick sweep as shipped
    python benchmarks/sweep_overhead.py trainer.epochs=8     # extra overrides
    python benchmarks/sweep_overhead.py --repeat 5           # five sweeps: the median share
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import run_checked  # benchmarks/common.py (scripts run as python benchmarks/<name>.py)


def total(runs, key: str) -> float:
    return sum(r.data.metrics.get(key, 0.0) for r in runs)


def measure(sweep: str, overrides: list[str]) -> dict:
    """Run the sweep once, into a temporary store; its wall time split as described above."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        cmd = [sys.executable, "-m", "experiments.run", f"+sweep={sweep}", f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db",
               f"tracking.tracking_uri={uri}", f"hydra.sweep.dir={tmp}/multirun", "trainer.verbose=0", *overrides]  # fmt: skip
        process_wall = run_checked(cmd, tmp, f"sweep {sweep}")
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("resnet-blocks")
        runs = client.search_runs([exp.experiment_id], max_results=10000)
        parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
        children = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
        sweep_wall = parent.data.metrics["sweep/wall_s"]

        # Per-epoch timings exist for every trial, pruned ones included (their final metrics do not).
        train = evaluate = tracing = 0.0
        spans = []  # (training began, last epoch ended, seconds it waited for its slot), one per trained trial
        for r in children:
            history = sorted(client.get_metric_history(r.info.run_id, "perf/epoch_train_s"), key=lambda m: m.step)
            epochs = [m.value for m in history]
            train += sum(epochs)
            evaluate += sum(m.value for m in client.get_metric_history(r.info.run_id, "perf/epoch_eval_s"))
            if len(epochs) > 1:
                tracing += max(0.0, epochs[0] - statistics.median(epochs[1:]))
            began = client.get_metric_history(r.info.run_id, "perf/slot_wait_s")
            if began and history:
                spans.append((began[0].timestamp / 1000, max(m.timestamp for m in history) / 1000, began[0].value))
        setup = {
            "model build + compile": total(children, "perf/build_compile_s"),
            "data pipeline set-up": total(children, "perf/data_s"),
        }
        (wall_metric,) = client.get_metric_history(parent.info.run_id, "sweep/wall_s")
    steps = train + evaluate
    # Where the sweeper's wall time went. With prefetching, each trial's set-up (job launch,
    # MLflow run, data, build, compile) runs while the previous trial trains, so what costs
    # wall time is the stretches where no trial is training.
    loop_end = wall_metric.timestamp / 1000
    loop_start = loop_end - sweep_wall
    spans.sort()
    handovers = [(max(0.0, n[0] - p[1]), n[2]) for p, n in zip(spans, spans[1:])]  # (gap, next trial's slot wait)
    parts = {
        "train steps (after first-epoch tracing)": train - tracing,
        "eval steps": evaluate,
        "first-epoch graph tracing": tracing,
        "in training, not in steps (fit set-up, callbacks)": sum(e - b for b, e, _ in spans) - steps,
        "before the first trial trains (worker start-up, set-up)": spans[0][0] - loop_start if spans else 0.0,
        "between trials (test eval, logging, hand-over)": sum(gap for gap, _ in handovers),
        "after the last trial (tell, clean-up)": loop_end - spans[-1][1] if spans else 0.0,
    }
    return {
        "trials": len(children),
        "process_wall_s": process_wall,
        "sweep_wall_s": sweep_wall,
        "train_s": train,
        "eval_s": evaluate,
        "first_epoch_tracing_s": tracing,
        "overhead_share": 1 - steps / sweep_wall,
        "overhead_share_with_tracing": 1 - (steps - tracing) / sweep_wall,
        "overhead_share_after_first_trial_starts": (1 - steps / (loop_end - spans[0][0]) if spans else float("nan")),
        "breakdown_s": parts,
        "per_trial_setup_s": setup,
        # The slowest hand-over, and whether the next trial was set up and waiting by then.
        "longest_handover_s": max(handovers, default=(0.0, 0.0))[0],
        "longest_handover_next_waited_s": max(handovers, default=(0.0, 0.0))[1],
    }


def report(result: dict, title: str) -> None:
    sweep_wall, n = result["sweep_wall_s"], max(1, result["trials"])
    print(title)
    print(f"  process wall (incl. Python/TF start-up):  {result['process_wall_s']:8.1f} s")
    print(f"  sweeper wall:                             {sweep_wall:8.1f} s")
    for name, secs in result["breakdown_s"].items():
        print(f"    {name:<62} {secs:7.1f} s  {secs / sweep_wall:6.1%}  ({secs / n:.2f} s/trial)")
    print("  set-up of each trial (overlapped with training when hydra.sweeper.prefetch > 0):")
    for name, secs in result["per_trial_setup_s"].items():
        print(f"    {name:<62} {secs:7.1f} s           ({secs / n:.2f} s/trial)")
    print(f"  longest hand-over: {result['longest_handover_s']:.3f} s (the next trial had waited "
          f"{result['longest_handover_next_waited_s']:.3f} s for its slot: 0 means it was not set up in time)")  # fmt: skip
    print(f"  overhead share (not train/eval steps):    {result['overhead_share']:8.1%}  (target <= 5%)")
    print(f"  counting first-epoch tracing as overhead: {result['overhead_share_with_tracing']:8.1%}")
    print(f"  from the first trial's training on:       {result['overhead_share_after_first_trial_starts']:8.1%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default="quick")
    p.add_argument("--repeat", type=int, default=1, help="run the sweep this many times and report the median share")
    p.add_argument("--json")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    runs = []
    for i in range(args.repeat):
        runs.append(measure(args.sweep, args.overrides))
        run = f" (run {i + 1} of {args.repeat})" if args.repeat > 1 else ""
        report(runs[-1], f"sweep {args.sweep} {' '.join(args.overrides)}: {runs[-1]['trials']} trials{run}")
    result = runs[0] if len(runs) == 1 else {"runs": runs}
    if len(runs) > 1:  # the machine is shared and noisy: one run says little about a few percent
        shares = [r["overhead_share"] for r in runs]
        result.update(overhead_share_median=statistics.median(shares), overhead_share_min=min(shares),
                      overhead_share_max=max(shares))  # fmt: skip
        print(f"overhead share over {len(runs)} runs: median {statistics.median(shares):.1%}, "
              f"range {min(shares):.1%}-{max(shares):.1%} (target <= 5%)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
