"""``python -m experiments.cleanup [--tracking-uri URI]``: end runs whose process is gone.

A run whose process died (kill -9, a lost machine, a full disk) stays RUNNING in MLflow. Every
run records its host, pid and the process's start time; this marks KILLED, with a reason,
the RUNNING runs of this host whose process no longer exists (a sweep's parent run too), and
marks FAIL the Optuna trials of those runs, in the study their parent run names
(:mod:`experiments.sweep.dead_trials`). ``experiments.run`` ends such runs before each run;
sweeps reconcile their own trials through their heartbeats.
"""

from __future__ import annotations

import argparse
import sys

from experiments.cli import user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    from experiments.tracking import (
        DEFAULT_TRACKING_URI,
        TRACKING_URI_ENV,
        check_tracking_uri,
        default_tracking_uri,
        reap_dead_runs,
    )

    p = argparse.ArgumentParser(prog="python -m experiments.cleanup", description=__doc__.splitlines()[0])
    p.add_argument(
        "--tracking-uri",
        default=default_tracking_uri(),
        help=f"the MLflow tracking store (default: ${TRACKING_URI_ENV} or {DEFAULT_TRACKING_URI})",
    )
    args = p.parse_args(argv)
    check_tracking_uri(args.tracking_uri)
    reaped = reap_dead_runs(args.tracking_uri)
    for run_id in reaped:
        print(f"marked KILLED: run {run_id} (its process is gone)")
    print(f"{len(reaped)} run(s) ended" if reaped else "no run left RUNNING by a process that is gone")
    if reaped:
        from experiments.sweep.dead_trials import fail_trials_of_dead_runs

        for label in fail_trials_of_dead_runs(args.tracking_uri, reaped):
            print(f"marked FAIL: trial {label} (its worker is gone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
