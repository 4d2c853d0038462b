"""What a sweep loses to kill -9, with and without resumable trials, and what checkpoints cost.

Three sweeps of the same study settings (``+sweep=quick`` on digits, a small ResNet, no
pruning, a SQLite study): one uninterrupted; one killed with kill -9 (the sweeper and its
workers) at the same three moments, then rerun until it completes, with checkpoints
(``hydra.sweeper.checkpoints=auto``, the default); and the same without them (``none``).
Epochs trained are counted from the study: every trial, killed, retried or not, reports each
epoch it trained once (a retry only those it trains); lost = trained - needed, where needed is the epochs of the
completed trials that trained (a repeat the study answers from a trained trial, as
``reuse_duplicates`` does, needs none); epochs cut short by a kill are not counted (at most
one per kill). Wall time is summed over
the attempts.

Then the cost of checkpointing: single runs of the default model alternating with and without
``trainer.checkpoint_dir``, compared by the fit time they log (``perf/fit_s``).

    python benchmarks/preemption.py [--epochs 10] [--trials 3] [--kills 3] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.depths=[1,1,1]", "model.stem_width=8", "trainer.batch_size=128", "trainer.verbose=0"]
EPOCH_LINE = re.compile(r"t\d+ epoch \d+/\d+:")


def _env() -> dict[str, str]:
    # (Unbuffered: a kill -9 must not swallow the epoch lines printed before it.)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _sweep_cmd(folder: Path, epochs: int, trials: int, checkpoints: str) -> list[str]:
    return [sys.executable, "-m", "experiments.run", "+sweep=quick", *TINY, f"trainer.epochs={epochs}",
            f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.pruner.name=none", "hydra.sweeper.baselines=[]",
            "hydra.sweeper.heartbeat_interval=null", f"hydra.sweeper.checkpoints={checkpoints}",
            f"hydra.sweeper.storage=sqlite:///{folder / 'optuna.db'}", f"hydra.sweep.dir={folder / 'multirun'}",
            f"tracking.tracking_uri=sqlite:///{folder / 'mlflow.db'}"]  # fmt: skip


def _attempt(cmd: list[str], cwd: Path, kill_after: tuple[int, float] | None) -> tuple[int, float, bool]:
    """Run ``cmd``; with ``kill_after=(m, s)``, kill -9 its group ``s`` seconds after its m-th
    epoch line. Returns (epoch lines, wall seconds, killed)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    lines, killed = [0], [False]

    def killer_after(delay: float) -> None:
        time.sleep(delay)
        if proc.poll() is None:
            killed[0] = True
            os.killpg(proc.pid, signal.SIGKILL)

    assert proc.stdout is not None
    for line in proc.stdout:
        if EPOCH_LINE.search(line):
            lines[0] += 1
            if kill_after is not None and lines[0] == kill_after[0]:
                threading.Thread(target=killer_after, args=(kill_after[1],), daemon=True).start()
    proc.wait()
    if not killed[0] and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[-6:])} exited {proc.returncode}")
    return lines[0], time.monotonic() - t0, killed[0]


def sweep_until_done(folder: Path, args, checkpoints: str, kills: list[tuple[int, float]]) -> dict:
    folder.mkdir(parents=True)
    cmd = _sweep_cmd(folder, args.epochs, args.trials, checkpoints)
    wall = 0.0
    attempts, pending = 0, list(kills)
    while True:
        attempts += 1
        _, s, killed = _attempt(cmd, folder, pending[0] if pending else None)
        wall += s
        if killed:
            pending.pop(0)
        else:
            break
    epochs, needed = _epochs_reported(folder, args.epochs)
    return {"checkpoints": checkpoints, "kills": len(kills) - len(pending), "attempts": attempts, "epochs_needed": needed, "epochs_trained": int(epochs),
            "epochs_lost": int(epochs - needed), "wall_s": round(wall, 1)}  # fmt: skip


def _epochs_reported(folder: Path, epochs: int) -> tuple[int, int]:
    """(epochs trained over every attempt, epochs the completed trials needed). Each trial,
    killed, retried or not, reports each epoch it trained to the study once (a retry only the
    epochs it trains); a completed trial that trained needed ``epochs``, one the study answered
    as a repeat of a trained one (``reuse_duplicates``) none."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{folder / 'optuna.db'}")
    trained = sum(len(t.intermediate_values) for t in study.trials)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    needed = epochs * sum(1 for t in done if t.intermediate_values or "epochs_resumed" in t.user_attrs)
    return trained, needed


def _fit_s(folder: Path, with_checkpoints: bool, epochs: int) -> float:
    import mlflow

    uri = f"sqlite:///{folder / 'cost.db'}"
    extra = [f"trainer.checkpoint_dir={folder / 'ckpt'}"] if with_checkpoints else []
    subprocess.run([sys.executable, "-m", "experiments.run", f"trainer.epochs={epochs}", "tracking.log_model=false",
                    f"tracking.tracking_uri={uri}", f"hydra.run.dir={folder / 'out'}", "trainer.verbose=0", *extra],
                   cwd=folder, env=_env(), check=True, capture_output=True)  # fmt: skip
    client = mlflow.MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "resnet-blocks"]
    (last,) = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    return last.data.metrics["perf/fit_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs each way for the cost")
    parser.add_argument("--cost-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    total = args.trials * args.epochs
    # The same three moments for both: after the m-th epoch line of an attempt, a random part of a second.
    kills = [(rng.randint(2, max(2, total // (args.kills + 1))), rng.uniform(0.0, 1.0)) for _ in range(args.kills)]
    out: dict = {"kills_at": kills, "sweeps": [], "cost": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out["sweeps"].append(sweep_until_done(root / "whole", args, "auto", []))
        out["sweeps"].append(sweep_until_done(root / "resumable", args, "auto", kills))
        out["sweeps"].append(sweep_until_done(root / "restart", args, "none", kills))
        print(f"{'sweep':<28}{'attempts':>9}{'needed':>8}{'epochs trained':>16}{'lost':>6}{'wall s':>9}")
        for r in out["sweeps"]:
            label = "uninterrupted" if not r["kills"] else f"{r['kills']} kills, checkpoints={r['checkpoints']}"
            print(f"{label:<28}{r['attempts']:>9}{r['epochs_needed']:>8}{r['epochs_trained']:>16}{r['epochs_lost']:>6}"
                  f"{r['wall_s']:>9}")  # fmt: skip

        if not args.rounds:
            return _write(args, out)
        fits: dict[str, list[float]] = {"without": [], "with": []}
        for i in range(args.rounds):
            for way in ("with", "without") if i % 2 else ("without", "with"):
                (root / "cost").mkdir(exist_ok=True)
                fits[way].append(_fit_s(root / "cost", way == "with", args.cost_epochs))
        med = {k: statistics.median(v) for k, v in fits.items()}
        out["cost"] = {"fit_s": fits, "median_ratio": med["with"] / med["without"]}
        print(
            f"\ncheckpointing cost ({args.cost_epochs} epochs of the default model, {args.rounds} runs each, alternating):"
        )
        for k, v in fits.items():
            print(f"  {k:<8} fit_s min {min(v):.2f}  median {statistics.median(v):.2f}  max {max(v):.2f}")
        print(f"  with / without (medians): {out['cost']['median_ratio']:.3f}")
    _write(args, out)


def _write(args, out: dict) -> None:
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
