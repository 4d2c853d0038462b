"""From a search to a shipped model, against the default ResNet-20, on held-out CIFAR-10 images.

On the CIFAR-10 training images in ``../shared/data`` (an image-folder archive), a fixed part
is held out as the test split (``data.test_split``, never seen by the sweep, the finalized
runs' training or their selection); ``--samples`` of the rest are the sweep's data (train +
validation). Then, each step in its own process with shared Optuna and MLflow stores:

1. a sweep of the shared benchmark space (``benchmarks/conf/sweep/bench_keras_tuner.yaml``: per-stage
   depths, widths, stride schedule, block) with a fixed epoch budget and a MACs constraint
   (``--max-macs``: what the shipped model may cost);
2. ``python -m experiments.sweep.finalize`` of its top-k trials x seeds at the final budget;
3. ``cifar_resnet20`` x the same seeds at the same final budget, same data and trainer.

Prints the commands, wall times and test accuracy mean ± std of the winner, of every
finalized architecture and of the baseline; ``--json`` writes them.

    python benchmarks/ship_model.py --samples 10000 --epoch-budget 40 --final-epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from common import run_checked  # benchmarks/common.py (scripts run as python benchmarks/<name>.py)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"


def _runs(tracking_uri: str, role: str | None = None, name_prefix: str | None = None) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("resnet-blocks")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    if role:
        runs = [r for r in runs if r.data.tags.get("sweep.role") == role]
    if name_prefix:
        runs = [r for r in runs if (r.info.run_name or "").startswith(name_prefix)]
    return runs


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--samples", type=int, default=10000, help="sweep images (train + validation)")
    p.add_argument("--test-split", type=float, default=0.1, help="held out of all images as the test split")
    p.add_argument("--epochs-per-trial", type=int, default=4)
    p.add_argument("--epoch-budget", type=int, default=40, help="the sweep's budget in epochs")
    p.add_argument("--final-epochs", type=int, default=10)
    p.add_argument("--max-macs", type=int, default=100_000_000, help="the sweep's constraint (ResNet-20: 41 M)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/resnet_blocks"))
    p.add_argument("--workdir", help="keep the stores here (default: a temporary folder)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"--data: {args.data} not found (an image folder or .tar.gz of one)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args, work)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def run(args, work: Path) -> dict:
    storage = f"sqlite:///{work / 'optuna.db'}"
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    data = [
        "data=image_folder", f"data.path={args.data}", "data.subdir=train", f"data.cache_dir={args.cache_dir}",
        f"data.test_split={args.test_split}", f"data.max_samples={args.samples}",
    ]  # fmt: skip
    common = [f"tracking.tracking_uri={tracking}", "trainer.verbose=0"]
    py = [sys.executable, "-m"]
    sweep = [
        *py, "experiments.run", "+sweep=bench_keras_tuner", f"hydra.searchpath=[file://{REPO / 'benchmarks' / 'conf'}]",
        "hydra.sweeper.study_name=ship", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={work / 'multirun'}",
        f"hydra.sweeper.epoch_budget={args.epoch_budget}", f"hydra.sweeper.constraints.max_macs={args.max_macs}",
        f"trainer.epochs={args.epochs_per_trial}", *data, *common,
    ]  # fmt: skip
    final = [
        *py, "experiments.sweep.finalize", "--study", "ship", "--storage", storage, "--top-k", str(args.top_k),
        "--seeds", str(args.seeds), f"trainer.epochs={args.final_epochs}", *common,
    ]  # fmt: skip
    # The baseline gets the trainer settings the sweep's trials (and so the finalized runs) use.
    baseline = [
        *py, "experiments.run", "model=cifar_resnet20", *data, "data.augment=false", "data.validation_split=0.2",
        "trainer.batch_size=128", "trainer.learning_rate=0.05", f"trainer.epochs={args.final_epochs}", *common,
        f"hydra.run.dir={work / 'outputs'}",
    ]  # fmt: skip
    out: dict = {"args": vars(args), "commands": {}, "wall_s": {}}
    for name, cmd in [("sweep", sweep), ("finalize", final)]:
        print(f"{name}: {shlex.join(cmd[1:])}", flush=True)
        out["commands"][name] = shlex.join(cmd[1:])
        out["wall_s"][name] = run_checked(cmd, work, name)
        print(f"  {out['wall_s'][name]:.0f} s", flush=True)
    out["wall_s"]["baseline"] = 0.0
    for i in range(args.seeds):
        cmd = [*baseline, f"trainer.seed={i}", f"tracking.run_name=baseline cifar_resnet20 seed {i}"]
        print(f"baseline seed {i}: {shlex.join(cmd[1:])}", flush=True)
        out["commands"][f"baseline_{i}"] = shlex.join(cmd[1:])
        out["wall_s"]["baseline"] += run_checked(cmd, work, f"baseline seed {i}")
    print(f"  {out['wall_s']['baseline']:.0f} s", flush=True)

    import optuna

    study = optuna.load_study(study_name="ship", storage=storage)
    out["sweep"] = {
        "trials": len(study.trials),
        "pruned": sum(t.state.name == "PRUNED" for t in study.trials),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        "best_trial": study.best_trial.number,
        "best_val_accuracy": study.best_value,
    }
    finals = _runs(tracking, role="finalize")
    by_trial: dict[str, list] = {}
    for r in finals:
        by_trial.setdefault(r.data.tags["finalize.trial"], []).append(r)
    (parent,) = _runs(tracking, role="parent")
    winner = parent.data.tags["finalize.winner_trial"]
    out["finalized"] = []
    for trial, rs in by_trial.items():
        val = _mean_sd([r.data.metrics["val/accuracy"] for r in rs])
        test = _mean_sd([r.data.metrics["test/accuracy"] for r in rs])
        out["finalized"].append(
            {"trial": int(trial), "arch": rs[0].data.tags["model.arch"], "params": rs[0].data.metrics["model/trainable_params"],
             "val": val, "test": test, "winner": trial == winner, "seeds": len(rs)}
        )  # fmt: skip
    out["finalized"].sort(key=lambda f: -f["val"][0])
    base = _runs(tracking, name_prefix="baseline cifar_resnet20")
    out["baseline"] = {
        "arch": base[0].data.tags["model.arch"],
        "params": base[0].data.metrics["model/trainable_params"],
        "val": _mean_sd([r.data.metrics["val/accuracy"] for r in base]),
        "test": _mean_sd([r.data.metrics["test/accuracy"] for r in base]),
        "seeds": len(base),
    }
    out["num_test"] = int(base[0].data.metrics["data/num_test"])
    s = out["sweep"]
    print()
    print(f"sweep: {s['trials']} trials ({s['pruned']} pruned), {s['epochs']} epochs, best t{s['best_trial']:02d} "
          f"val {s['best_val_accuracy']:.4f}; final budget {args.final_epochs} epochs; test: {out['num_test']} held-out images")  # fmt: skip
    print(f"{'':<2}{'architecture':<30} {'params':>9} {'val acc':>15} {'test acc':>15}")
    for f in [*out["finalized"], {**out["baseline"], "winner": False, "trial": None}]:
        label = f"t{f['trial']:02d} {f['arch']}" if f["trial"] is not None else f"baseline {f['arch']}"
        print(f"{'*' if f['winner'] else ' '} {label[:30]:<30} {int(f['params']):>9,} "
              f"{f['val'][0]:>7.4f}±{f['val'][1]:.4f} {f['test'][0]:>7.4f}±{f['test'][1]:.4f}")  # fmt: skip
    print("wall: " + ", ".join(f"{k} {v:.0f} s" for k, v in out["wall_s"].items()))
    return out


if __name__ == "__main__":
    main()
