"""Resident memory of one sweep worker over many small trials (is it flat?).

Runs a real sweep (``+sweep=quick``) of ``--trials`` one-epoch trials on digits with MLflow
tracking, and reads the RSS recorded after each trial: the sweeper process (``rss_mb``) and
the process that trained the trial (``job_rss_mb``). By default trials run in worker
processes recycled every 5 trials (``hydra/launcher=resnet_blocks_process``,
``--max-trials-per-process``);
``--launcher basic`` runs every trial inside the sweeper process instead, for comparison.
Prints RSS per trial, the drift of the worker's memory after ``--warmup`` trials (mean of the
last 10 trials minus mean of the 10 after warm-up; target < 150 MB) and its range.

    python benchmarks/sweep_memory.py --trials 50 --json memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import run_checked  # benchmarks/common.py (scripts run as python benchmarks/<name>.py)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5, help="growth is measured from after this trial")
    p.add_argument("--launcher", choices=["resnet_blocks_process", "basic"], default="resnet_blocks_process")
    p.add_argument("--max-trials-per-process", type=int, default=None, help="(default: no count limit)")
    p.add_argument("--max-worker-growth-mb", type=float, default=None, help="(default: the launcher's, 400)")
    p.add_argument("--json")
    args = p.parse_args()
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/optuna.db"
        cmd = [
            sys.executable, "-m", "experiments.run", "+sweep=quick", f"hydra.sweeper.n_trials={args.trials}",
            f"hydra.sweeper.storage={storage}", "hydra.sweeper.pruner.name=none", "trainer.epochs=1",
            "trainer.verbose=0", f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db", f"hydra.sweep.dir={tmp}/multirun",
            "tracking.log_model=true", f"hydra/launcher={args.launcher}",
            *([f"hydra.launcher.max_trials_per_process={args.max_trials_per_process}"]
              if args.launcher != "basic" and args.max_trials_per_process else []),
            *([f"hydra.launcher.max_worker_growth_mb={args.max_worker_growth_mb}"]
              if args.launcher != "basic" and args.max_worker_growth_mb else []),
        ]  # fmt: skip
        wall = run_checked(cmd, tmp, "sweep quick")
        study = optuna.load_study(study_name="quick", storage=storage)
        trials = sorted(study.trials, key=lambda t: t.number)
        rss = [t.user_attrs.get("rss_mb", float("nan")) for t in trials]
        job = [t.user_attrs.get("job_rss_mb", float("nan")) for t in trials]
        workers = len({t.user_attrs.get("job_pid") for t in trials})
    separate = args.launcher != "basic"
    print(f"{len(rss)} trials, launcher {args.launcher}, {wall:.0f} s, {workers} worker process(es)")
    print("trial  sweeper RSS MB  trial-process RSS MB")
    for i, (v, j) in enumerate(zip(rss, job), 1):
        if i <= 3 or i % 5 == 0 or i == len(rss):
            print(f"{i:>5}  {v:14.1f}  {j:20.1f}")
    w = min(args.warmup, len(rss)) - 1
    worker = [r + j if separate else r for r, j in zip(rss, job)]  # all memory this worker holds
    early, late = worker[w : w + 10], worker[-10:]
    drift = sum(late) / len(late) - sum(early) / len(early)  # long-term growth
    amplitude = max(worker[w:]) - min(worker[w:])  # the saw-tooth between recycles
    print(f"sweeper process: {rss[w]:.0f} MB after trial {w + 1}, {rss[-1]:.0f} MB after trial {len(rss)}")
    print(f"worker (sweeper + trial process): mean of trials {w + 1}-{w + len(early)} {sum(early) / len(early):.0f} MB, "
          f"mean of the last {len(late)} {sum(late) / len(late):.0f} MB -> drift {drift:+.1f} MB (target < 150 MB: "
          f"{'OK' if drift < 150 else 'OVER'}); range after trial {w + 1}: {amplitude:.0f} MB")  # fmt: skip
    if args.json:
        result = {
            "launcher": args.launcher,
            "rss_mb": rss,
            "job_rss_mb": job,
            "drift_mb": drift,
            "range_mb": amplitude,
            "warmup": w + 1,
            "wall_s": wall,
            "worker_processes": workers,
        }
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
