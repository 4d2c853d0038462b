"""TPE with median pruning against random search without pruning, at the same epoch budget.

Both searches run our real sweeper (``python -m experiments.run +sweep=bench_search``) on a
subsample of the CIFAR-10 training images in ``../shared/data`` (an image-folder archive),
each in its own process with its own Optuna and MLflow stores. Prints best validation
accuracy, epochs used, trials and wall time per strategy and seed; ``--json`` writes them.

    python benchmarks/search_efficiency.py --samples 3000 --epoch-budget 40 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import run_checked  # benchmarks/common.py (scripts run as python benchmarks/<name>.py)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"

STRATEGIES = {
    "tpe+median": ["hydra.sweeper.sampler.name=tpe", "hydra.sweeper.pruner.name=median",
                   "++hydra.sweeper.pruner.options.n_startup_trials=3",
                   "++hydra.sweeper.pruner.options.n_warmup_steps=1",
                   "++hydra.sweeper.sampler.options.n_startup_trials=4"],
    "random": ["hydra.sweeper.sampler.name=random", "hydra.sweeper.pruner.name=none"],
}  # fmt: skip


def run_strategy(name: str, seed: int, args, workdir: Path) -> dict:
    import optuna

    storage = f"sqlite:///{workdir / 'optuna.db'}"
    cmd = [
        sys.executable, "-m", "experiments.run", "+sweep=bench_search",
        f"hydra.searchpath=[file://{REPO / 'benchmarks' / 'conf'}]",
        f"hydra.sweep.dir={workdir / 'multirun'}",
        f"data.path={args.data}", f"data.max_samples={args.samples}", f"data.cache_dir={args.cache_dir}",
        f"hydra.sweeper.storage={storage}", f"hydra.sweeper.epoch_budget={args.epoch_budget}",
        f"hydra.sweeper.sampler.seed={seed}", f"trainer.epochs={args.epochs_per_trial}",
        f"tracking.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
        "trainer.verbose=0",
        *STRATEGIES[name],
    ]  # fmt: skip
    wall = run_checked(cmd, workdir, f"{name} seed {seed}")
    study = optuna.load_study(study_name="bench", storage=storage)
    complete = [t for t in study.trials if t.value is not None]
    best_curve = []  # best val/accuracy after each epoch spent, for the record
    spent, best = 0, 0.0
    for t in study.trials:
        for v in t.intermediate_values.values():
            spent += 1
            best = max(best, v)
            best_curve.append([spent, best])
    return {
        "strategy": name,
        "seed": seed,
        "best_val_accuracy": max((t.value for t in complete), default=float("nan")),
        "best_any_epoch": best,
        "epochs_used": spent,
        "trials": len(study.trials),
        "pruned": sum(t.state.name == "PRUNED" for t in study.trials),
        "wall_s": wall,
        "curve": best_curve,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--samples", type=int, default=3000, help="training images (before the validation split)")
    p.add_argument("--epochs-per-trial", type=int, default=5)
    p.add_argument("--epoch-budget", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/resnet_blocks"))
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"--data: {args.data} not found (an image folder or .tar.gz of one)")
    results = []
    for seed in args.seeds:
        for name in STRATEGIES:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_strategy(name, seed, args, Path(tmp))
            results.append(r)
            print(f"  {name:<11} seed {seed}: best {r['best_val_accuracy']:.4f} in {r['epochs_used']} epochs, "
                  f"{r['trials']} trials ({r['pruned']} pruned), {r['wall_s']:.0f} s", flush=True)  # fmt: skip
    print()
    print(f"CIFAR-10 subsample: {args.samples} images (80/20 split), {args.epochs_per_trial} epochs per trial, "
          f"budget {args.epoch_budget} epochs, seeds {args.seeds}")  # fmt: skip
    print(
        f"{'strategy':<12} {'best val acc (mean)':>20} {'min':>7} {'max':>7} {'epochs used':>12} {'trials':>7} {'wall s':>7}"
    )
    for name in STRATEGIES:
        rs = [r for r in results if r["strategy"] == name]
        accs = [r["best_val_accuracy"] for r in rs]
        print(
            f"{name:<12} {statistics.mean(accs):>20.4f} {min(accs):>7.4f} {max(accs):>7.4f} "
            f"{statistics.mean(r['epochs_used'] for r in rs):>12.1f} {statistics.mean(r['trials'] for r in rs):>7.1f} "
            f"{statistics.mean(r['wall_s'] for r in rs):>7.0f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
