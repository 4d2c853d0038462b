"""Our search (TPE with median pruning) against Keras Tuner's Hyperband, at the same epoch budget.

Both search the space of ``benchmarks/conf/sweep/bench_keras_tuner.yaml`` (depths per stage,
widths, stride schedule, block type; fixed learning rate) on the same subsample of the CIFAR-10
training images in ``../shared/data``. Ours runs the real sweeper
(``python -m experiments.run +sweep=bench_keras_tuner``); Keras Tuner runs in its own process
with a HyperModel whose choices are read from the same sweep config, and which builds, compiles
and feeds each trial with our code (``plan_run``, ``build_resnet``, ``make_optimizer``,
``load_data``): same architectures, initial weights, optimizer, batch size, split and
preprocessing. Every epoch trained counts towards the budget on both sides (Hyperband's
continued training of a promoted trial counts only the epochs it runs); each side stops starting
trials once the budget is spent, so the last trial may overshoot it, and the curves of best
validation accuracy against epochs spent are compared at the budget. Needs ``keras-tuner``
(the ``bench`` extra). Prints a table per seed and a summary; ``--json`` writes everything.

    python benchmarks/keras_tuner_compare.py --samples 2000 --epoch-budget 30 --seeds 0 1 2 --json /tmp/kt_compare.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import run_checked  # benchmarks/common.py (scripts run as python benchmarks/<name>.py)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"
SWEEP = "bench_keras_tuner"
SEARCH_PATH = f"hydra.searchpath=[file://{REPO / 'benchmarks' / 'conf'}]"
SIDES = ("ours", "keras_tuner")


def overrides(args, seed: int) -> list[str]:
    """The config overrides both sides share (data, epochs per trial, seed)."""
    return [
        f"+sweep={SWEEP}", SEARCH_PATH,
        f"data.path={args.data}", f"data.max_samples={args.samples}", f"data.cache_dir={args.cache_dir}",
        f"trainer.epochs={args.epochs_per_trial}", "trainer.verbose=0", f"hydra.sweeper.sampler.seed={seed}",
    ]  # fmt: skip


def pruner_overrides(args) -> list[str]:
    if args.pruner == "median":  # the sweep config's: TPE + median pruning, our shipped default
        return []
    return [  # Optuna's HyperbandPruner on the same resource ladder as Keras Tuner's Hyperband
        "hydra.sweeper.pruner.name=hyperband",
        "~hydra.sweeper.pruner.options.n_startup_trials", "~hydra.sweeper.pruner.options.n_warmup_steps",
        "++hydra.sweeper.pruner.options.min_resource=1",
        f"++hydra.sweeper.pruner.options.max_resource={args.epochs_per_trial}",
        f"++hydra.sweeper.pruner.options.reduction_factor={args.factor}",
    ]  # fmt: skip


def best_curve(values: list[float]) -> list[list[float]]:
    """[[epochs spent, best val accuracy so far], ...] from per-epoch values in training order."""
    curve, best = [], -math.inf
    for spent, v in enumerate(values, start=1):
        best = max(best, v)
        curve.append([spent, best])
    return curve


def best_after(curve: list[list[float]], epochs: int) -> float:
    """Best validation accuracy once ``epochs`` epochs were spent (nan before the first)."""
    points = [b for spent, b in curve if spent <= epochs]
    return points[-1] if points else float("nan")


# -- ours ---------------------------------------------------------------------------------
def run_ours(seed: int, args, workdir: Path) -> dict:
    import optuna
    from omegaconf import OmegaConf

    storage = f"sqlite:///{workdir / 'optuna.db'}"
    cmd = [
        sys.executable, "-m", "experiments.run", *overrides(args, seed), *pruner_overrides(args),
        f"hydra.sweep.dir={workdir / 'multirun'}", f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.epoch_budget={args.epoch_budget}",
        f"tracking.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
    ]  # fmt: skip
    wall = run_checked(cmd, workdir, f"ours seed {seed}")
    study = optuna.load_study(study_name="bench_kt", storage=storage)
    values, trials = [], []
    for t in study.trials:  # one worker: trial order is training order
        steps = sorted(t.intermediate_values)
        values += [t.intermediate_values[s] for s in steps]
        trials.append({"number": t.number, "state": t.state.name, "params": t.params, "epochs": len(steps)})
    job_cfg = next((workdir / "multirun").glob("*/.hydra/config.yaml"), None)
    shared = None
    if job_cfg is not None:  # a trial's composed config, to check both sides trained alike
        c = OmegaConf.load(job_cfg)
        shared = {"data": OmegaConf.to_container(c.data), "trainer": OmegaConf.to_container(c.trainer)}
    return {
        "side": "ours",
        "strategy": f"tpe+{args.pruner}",
        "values": values,
        "trials": trials,
        "pruned": sum(t["state"] == "PRUNED" for t in trials),
        "wall_s": wall,
        "shared_config": shared,
    }


# -- Keras Tuner --------------------------------------------------------------------------
def run_keras_tuner(seed: int, args, workdir: Path) -> dict:
    """Keras Tuner in a child process (as ours runs in one): this script with ``--worker``."""
    out = workdir / "keras_tuner.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(out), "--seeds", str(seed),
           "--data", args.data, "--samples", str(args.samples), "--cache-dir", args.cache_dir,
           "--epochs-per-trial", str(args.epochs_per_trial), "--epoch-budget", str(args.epoch_budget),
           "--factor", str(args.factor)]  # fmt: skip
    wall = run_checked(cmd, workdir, f"keras_tuner seed {seed}")
    result = json.loads(out.read_text())
    result["wall_s"] = wall
    return result


def keras_tuner_seed(seed: int) -> int:
    """Keras Tuner's oracle seed for our ``seed``.

    Its oracle treats 0 as "no seed" (a random one), and draws hyperparameter value n with
    ``random.Random(seed + n)``, so seeds 1 and 2 would share most draws: spread them apart.
    """
    return (seed + 1) * 100_000


class BudgetSpent(Exception):
    """Raised before Keras Tuner creates a trial once the epoch budget is spent."""


def compose_config(args, seed: int):
    from hydra import compose, initialize_config_dir

    import experiments.config  # noqa: F401 - registers the schema and resolvers

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=overrides(args, seed), return_hydra_config=True)


def keras_tuner_worker(args) -> None:
    """One Keras Tuner Hyperband search over the sweep config's space; writes ``args.worker``."""
    import keras
    import keras_tuner as kt
    from omegaconf import OmegaConf

    from experiments.data import load_data
    from experiments.run import plan_run
    from experiments.sweep.space import parse_space
    from experiments.train import make_optimizer
    from resnet_blocks import build_resnet

    (seed,) = args.seeds
    cfg = compose_config(args, seed)
    space = parse_space(OmegaConf.to_container(cfg.hydra.sweeper.params))
    if cfg.hydra.sweeper.custom_search_space.name or any(
        p.distribution is not None and not hasattr(p.distribution, "choices") for p in space
    ):
        raise SystemExit(f"{SWEEP}: only choice(...) params and fixed values can be shared with Keras Tuner")
    t = cfg.trainer
    if t.label_smoothing or t.steps_per_epoch or t.distribute != "none" or t.mixed_precision != "float32":
        raise SystemExit("the Keras Tuner side compiles like experiments.train without these trainer options")
    data = load_data(cfg.data, batch_size=t.batch_size)
    steps = math.ceil(data.num_train / t.batch_size)
    num_train, num_val = data.num_train, data.num_val
    del data

    def trial_config(values: dict):
        c = copy.deepcopy(cfg)
        for key, value in values.items():
            OmegaConf.update(c, key, value, merge=False)
        return c

    class SharedSpace(kt.HyperModel):
        """The sweep config's choices as Keras Tuner hyperparameters; builds like our trials."""

        def build(self, hp):
            values = {}
            for p in space:
                if p.distribution is None:
                    values[p.key] = p.fixed
                else:
                    v = hp.Choice(p.key, list(p.distribution.choices))
                    values[p.key] = json.loads(v) if p.encoded else v
            c = trial_config(values)
            spec = plan_run(c, build=False).spec
            keras.utils.set_random_seed(t.seed)  # as experiments.train: same initial weights per architecture
            model = build_resnet(spec, name=str(c.model.name))
            optimizer = make_optimizer(t, steps)  # SGD + cosine over trainer.epochs (= max_epochs)
            # A promoted trial resumes at tuner/initial_epoch: continue the schedule from there
            # (Keras Tuner would restart it at its peak learning rate).
            optimizer.iterations.assign(hp.values.get("tuner/initial_epoch", 0) * steps)
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"],
                jit_compile=t.jit_compile,
            )
            return model

    class BudgetedHyperband(kt.Hyperband):
        """Hyperband that counts the epochs it trains and stops at the epoch budget."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.values: list[float] = []  # val accuracy of every epoch trained, in order
            self.trial_epochs: dict[str, int] = {}
            self.lr_at_start: dict[str, float] = {}

        def pre_create_trial(self):
            if len(self.values) >= args.epoch_budget:
                raise BudgetSpent

        def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
            # keras-tuner 1.4.8 imports tensorboard here on every trial, even with no TensorBoard
            # callback to configure (as here); TF 2.21 no longer installs tensorboard.
            return None

        def run_trial(self, trial, *fit_args, **fit_kwargs):
            data = load_data(cfg.data, batch_size=t.batch_size)  # per trial, as our jobs do
            return super().run_trial(trial, data.train, validation_data=data.val, **fit_kwargs)

        def on_epoch_begin(self, trial, model, epoch, logs=None):
            super().on_epoch_begin(trial, model, epoch, logs)
            if trial.trial_id not in self.lr_at_start:
                opt = model.optimizer
                self.lr_at_start[trial.trial_id] = float(keras.ops.convert_to_numpy(opt.learning_rate))

        def on_epoch_end(self, trial, model, epoch, logs=None):
            super().on_epoch_end(trial, model, epoch, logs)
            self.values.append(float(logs["val_accuracy"]))
            self.trial_epochs[trial.trial_id] = self.trial_epochs.get(trial.trial_id, 0) + 1

    tuner = BudgetedHyperband(
        SharedSpace(),
        objective="val_accuracy",
        max_epochs=args.epochs_per_trial,
        factor=args.factor,
        hyperband_iterations=10**6,  # the epoch budget stops the search
        seed=keras_tuner_seed(seed),
        directory=str(Path.cwd() / "keras_tuner"),
        project_name="bench",
        overwrite=True,
    )
    try:
        tuner.search(verbose=0, shuffle=False)
    except BudgetSpent:
        pass
    trials = []
    for tr in tuner.oracle.trials.values():
        hp = tr.hyperparameters.values
        trials.append({
            "id": tr.trial_id, "status": tr.status, "score": tr.score,
            "params": {p.key: hp[p.key] for p in space if p.key in hp},
            "continues": hp.get("tuner/trial_id"), "initial_epoch": hp.get("tuner/initial_epoch"),
            "target_epoch": hp.get("tuner/epochs"), "bracket": hp.get("tuner/bracket"),
            "epochs": tuner.trial_epochs.get(tr.trial_id, 0), "lr_at_start": tuner.lr_at_start.get(tr.trial_id),
        })  # fmt: skip
    shared = {"data": OmegaConf.to_container(cfg.data), "trainer": OmegaConf.to_container(cfg.trainer)}
    Path(args.worker).write_text(json.dumps({
        "side": "keras_tuner",
        "strategy": f"hyperband (factor {args.factor}, max_epochs {args.epochs_per_trial})",
        "keras_tuner_version": kt.__version__,
        "keras_tuner_seed": tuner.oracle.seed,
        "values": tuner.values,
        "trials": trials,
        "continued": sum(tr["continues"] is not None for tr in trials),
        "num_train": num_train, "num_val": num_val,
        "shared_config": shared,
    }))  # fmt: skip


# -- report -------------------------------------------------------------------------------
def checkpoints(budget: int) -> list[int]:
    return sorted({max(1, round(budget * f)) for f in (1 / 3, 2 / 3, 1)})


def summarise(r: dict, budget: int) -> dict:
    """Add the curve and its figures to one search's result."""
    curve = best_curve(r["values"])
    r["curve"] = curve
    r["best_at"] = {str(e): best_after(curve, e) for e in checkpoints(budget)}
    r["best_at_budget"] = best_after(curve, budget)
    r["best_final"] = curve[-1][1] if curve else float("nan")
    r["epochs_used"] = len(r["values"])
    r["n_trials"] = len(r["trials"])
    seen: set[str] = set()
    r["repeat_epochs"] = 0  # epochs spent training a configuration again from scratch
    for t in r["trials"]:
        if t.get("continues") is None:  # Keras Tuner's continued trials resume, they do not repeat
            key = json.dumps(t["params"], sort_keys=True)
            r["repeat_epochs"] += t["epochs"] if key in seen else 0
            seen.add(key)
    r["distinct_configs"] = len(seen)
    return r


def report(results: list[dict], args) -> None:
    budget, seeds = args.epoch_budget, sorted({r["seed"] for r in results})
    labels = {"ours": f"ours (tpe+{args.pruner})", "keras_tuner": "keras-tuner hyperband"}
    kt = next(r for r in results if r["side"] == "keras_tuner")
    print(f"CIFAR-10 subsample: {args.samples} images ({kt['num_train']} train / {kt['num_val']} val), "
          f"{args.epochs_per_trial} epochs per trial, budget {budget} epochs, seeds {seeds}, "
          f"keras-tuner {kt['keras_tuner_version']}")  # fmt: skip
    marks = checkpoints(budget)
    head = " ".join(f"{'best@' + str(e):>8}" for e in marks)
    for seed in seeds:
        print(f"\nseed {seed}\n{'search':<22} {head} {'final':>8} {'epochs':>6} {'trials':>6} {'distinct':>8} "
              f"{'repeat ep':>9} {'pruned/cont':>11} {'wall s':>6}")  # fmt: skip
        for side in SIDES:
            r = next(r for r in results if r["side"] == side and r["seed"] == seed)
            cells = " ".join(f"{r['best_at'][str(e)]:>8.4f}" for e in marks)
            print(f"{labels[side]:<22} {cells} {r['best_final']:>8.4f} {r['epochs_used']:>6} {r['n_trials']:>6} "
                  f"{r['distinct_configs']:>8} {r['repeat_epochs']:>9} {r.get('pruned', r.get('continued')):>11} "
                  f"{r['wall_s']:>6.0f}")  # fmt: skip
    print(f"\nover seeds {seeds}: best val accuracy after e epochs (mean), and at the budget")
    print(f"{'search':<22} {head} {'min':>8} {'max':>8} {'epochs':>6} {'trials':>6} {'wall s':>6}")
    for side in SIDES:
        rs = [r for r in results if r["side"] == side]
        at = [r["best_at_budget"] for r in rs]
        cells = " ".join(f"{statistics.mean(r['best_at'][str(e)] for r in rs):>8.4f}" for e in marks)
        print(f"{labels[side]:<22} {cells} {min(at):>8.4f} {max(at):>8.4f} "
              f"{statistics.mean(r['epochs_used'] for r in rs):>6.1f} {statistics.mean(r['n_trials'] for r in rs):>6.1f} "
              f"{statistics.mean(r['wall_s'] for r in rs):>6.0f}")  # fmt: skip
    diffs = [
        next(r for r in results if r["side"] == "ours" and r["seed"] == s)["best_at_budget"]
        - next(r for r in results if r["side"] == "keras_tuner" and r["seed"] == s)["best_at_budget"]
        for s in seeds
    ]
    print(f"ours - keras-tuner at {budget} epochs, per seed: {', '.join(f'{d:+.4f}' for d in diffs)} "
          f"(mean {statistics.mean(diffs):+.4f})")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--samples", type=int, default=2000, help="training images (before the 80/20 validation split)")
    p.add_argument("--epochs-per-trial", type=int, default=5, help="ours: trainer.epochs; Keras Tuner: max_epochs")
    p.add_argument("--epoch-budget", type=int, default=30)
    p.add_argument("--factor", type=int, default=3, help="Hyperband reduction factor")
    p.add_argument("--pruner", choices=("median", "hyperband"), default="median", help="our pruner (TPE sampler)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/resnet_blocks"))
    p.add_argument("--json", help="write the results here")
    p.add_argument("--report", metavar="JSON", help="print the tables of a saved --json run again (trains nothing)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one Keras Tuner search, write JSON here
    args = p.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        saved_args = argparse.Namespace(**saved["args"])
        return report([summarise(r, saved_args.epoch_budget) for r in saved["results"]], saved_args)
    if not Path(args.data).exists():
        raise SystemExit(f"--data: {args.data} not found (an image folder or .tar.gz of one)")
    if args.worker:
        return keras_tuner_worker(args)
    try:
        import keras_tuner  # noqa: F401
    except ImportError:
        raise SystemExit("keras-tuner is not installed: pip install -e '.[bench]' -c constraints.txt") from None
    budget = args.epoch_budget
    results = []
    for seed in args.seeds:
        for side, run in (("ours", run_ours), ("keras_tuner", run_keras_tuner)):
            with tempfile.TemporaryDirectory() as tmp:
                r = summarise(run(seed, args, Path(tmp)), budget)
            r["seed"] = seed
            results.append(r)
            print(f"  {side:<11} seed {seed}: best {r['best_at_budget']:.4f} at {budget} epochs "
                  f"({r['best_final']:.4f} after {r['epochs_used']}), {r['n_trials']} trials, {r['wall_s']:.0f} s",
                  flush=True)  # fmt: skip
        ours, theirs = results[-2:]
        if ours["shared_config"] and ours["shared_config"] != theirs["shared_config"]:
            print(f"  WARNING seed {seed}: data/trainer configs differ between the two sides", flush=True)
    print()
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
