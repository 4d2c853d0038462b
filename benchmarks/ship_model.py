"""From a search to a shipped model, and its verdict against the default ResNet-20, on held-out CIFAR-10 images.

On the CIFAR-10 training images in ``../shared/data`` (an image-folder archive), a fixed part
is held out as the test split (``data.test_split``, never seen by the sweep, the finalized
runs' training or their selection); ``--samples`` of the rest are the sweep's data (train +
validation). Then, each step in its own process with shared Optuna and MLflow stores:

1. the shipped ``blocks`` sweep (``conf/sweep/blocks.yaml``) at its own budget, with a MACs
   constraint (``--max-macs``: what the shipped model may cost, by default the baseline's); its first
   trial is its baseline, the run config's own ``cifar_resnet20``;
2. ``python -m experiments.sweep.finalize`` of its top-k trials x seeds at the final budget,
   which retrains the baseline with the same seeds and ends with the verdict.

Prints the commands, wall times, the finalized ranking (val and test accuracy, mean ± sd over
seeds) and finalize's verdict (winner − baseline, paired by seed, 95% intervals, cost
ratios); ``--json`` writes them.

    python benchmarks/ship_model.py --samples 10000 --final-epochs 10 --top-k 3 --seeds 3
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
    p.add_argument("--sweep", default="blocks", help="a shipped sweep (conf/sweep/<name>.yaml)")
    p.add_argument("--sweep-overrides", nargs="*", default=[], help="more overrides of the sweep (default: none)")
    p.add_argument(
        "--skip-sweep", action="store_true", help="finalize the study already in --workdir (a sweep stopped early)"
    )
    p.add_argument("--final-epochs", type=int, default=10)
    p.add_argument("--max-macs", default="baseline",
                   help="the sweep's constraint: baseline (default), 0.6*baseline, or a number (ResNet-20: 40.6 M)")  # fmt: skip
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/resnet_blocks"))
    p.add_argument("--workdir", help="keep the stores here (default: a temporary folder)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if args.skip_sweep and not args.workdir:
        raise SystemExit("--skip-sweep: needs --workdir, the folder of the study to finalize")
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
        "data.augment=false", "data.validation_split=0.2",
    ]  # fmt: skip
    common = [f"tracking.tracking_uri={tracking}", "trainer.verbose=0"]
    py = [sys.executable, "-m"]
    study = args.sweep
    sweep = [
        *py, "experiments.run", f"+sweep={args.sweep}", f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={work / 'multirun'}", f"hydra.sweeper.constraints.max_macs={args.max_macs}",
        "trainer.batch_size=128", *data, *common, *args.sweep_overrides,
    ]  # fmt: skip
    final = [
        *py, "experiments.sweep.finalize", "--study", study, "--storage", storage, "--top-k", str(args.top_k),
        "--seeds", str(args.seeds), f"trainer.epochs={args.final_epochs}", *common,
    ]  # fmt: skip
    out: dict = {"args": vars(args), "commands": {}, "wall_s": {}}
    steps = [("finalize", final)] if args.skip_sweep else [("sweep", sweep), ("finalize", final)]
    for name, cmd in steps:
        print(f"{name}: {shlex.join(cmd[1:])}", flush=True)
        out["commands"][name] = shlex.join(cmd[1:])
        out["wall_s"][name] = run_checked(cmd, work, name)
        print(f"  {out['wall_s'][name]:.0f} s", flush=True)

    import optuna

    s = optuna.load_study(study_name=study, storage=storage)
    trials = s.trials
    out["sweep"] = {
        "trials": len(trials),
        "pruned": sum(t.state.name == "PRUNED" and "rejected" not in t.user_attrs for t in trials),
        "rejected": sum("rejected" in t.user_attrs for t in trials),
        "reused": sum("duplicate_of" in t.user_attrs for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials if "duplicate_of" not in t.user_attrs),
        "best_trial": s.best_trial.number,
        "best_val_accuracy": s.best_value,
    }
    (parent,) = _runs(tracking, role="parent")
    out["finalized"] = []
    by_trial: dict[str, list] = {}
    for r in _runs(tracking, role="finalize"):
        if r.info.status != "FINISHED":  # (a finalize stopped before this one)
            continue
        by_trial.setdefault(r.data.tags["finalize.trial"], []).append(r)
    winner = parent.data.tags["finalize.winner_trial"]
    for trial, rs in by_trial.items():
        out["finalized"].append(
            {"trial": int(trial), "arch": rs[0].data.tags["model.arch"], "baseline": rs[0].data.tags.get("finalize.baseline"),
             "params": rs[0].data.metrics["model/trainable_params"], "macs": rs[0].data.metrics.get("model/macs"),
             "val": _mean_sd([r.data.metrics["best/val/accuracy"] for r in rs]),
             "test": _mean_sd([r.data.metrics["test/accuracy"] for r in rs]), "shipped": trial == winner, "seeds": len(rs)}
        )  # fmt: skip
    out["finalized"].sort(key=lambda f: -f["val"][0])
    out["verdict"] = _verdict(tracking, parent.info.run_id)
    out["num_test"] = int(next(iter(by_trial.values()))[0].data.metrics["data/num_test"])
    sw = out["sweep"]
    print()
    print(f"sweep: {sw['trials']} trials ({sw['pruned']} pruned, {sw['rejected']} rejected by a constraint, "
          f"{sw['reused']} repeats answered from the study), {sw['epochs']} epochs trained, best t{sw['best_trial']:02d} "
          f"val {sw['best_val_accuracy']:.4f}")  # fmt: skip
    print(f"final budget {args.final_epochs} epochs x {args.seeds} seeds; test: {out['num_test']} held-out images")
    print(f"{'':<2}{'trial / architecture':<36} {'params':>9} {'MACs':>11} {'val acc':>15} {'test acc':>15}")
    for f in out["finalized"]:
        label = f"t{f['trial']:02d} " if f["trial"] >= 0 else "-- "
        label += ("baseline " if f["baseline"] else "") + f["arch"]
        macs = f"{int(f['macs']):,}" if f["macs"] else "n/a"
        print(f"{'*' if f['shipped'] else ' '} {label[:36]:<36} {int(f['params']):>9,} {macs:>11} "
              f"{f['val'][0]:>7.4f}±{f['val'][1]:.4f} {f['test'][0]:>7.4f}±{f['test'][1]:.4f}")  # fmt: skip
    print(out["verdict"].get("line", "verdict: none"))
    print("wall: " + ", ".join(f"{k} {v:.0f} s" for k, v in out["wall_s"].items()))
    return out


def _verdict(tracking_uri: str, parent_run_id: str) -> dict:
    """finalize's verdict as it logged it: finalize/verdict.json and the parent's tag."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(parent_run_id, "finalize/verdict.json", tmp)
        verdict = json.loads(Path(path).read_text())
    verdict["line"] = client.get_run(parent_run_id).data.tags.get("finalize.verdict", "")
    return verdict


if __name__ == "__main__":
    main()
