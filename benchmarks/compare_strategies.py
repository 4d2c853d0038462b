"""Search strategies compared on the tabular benchmark, over many seeds (``benchmarks/replay.py``).

Each strategy is the sweeper's own sampler and pruner (``experiments.sweep.study``) searching
the tabled space as a sweep would: the shipped ``blocks`` sweep's space cut to the table,
duplicates of a completed configuration reused at no cost (``reuse_duplicates``), trials
stopped by the pruner where it says, until ``--epoch-budget`` epochs are spent. After every
trial the incumbent (the completed trial with the best validation accuracy) is scored by its
held-out test accuracy (mean over the tabled seeds), so a strategy is judged on what a user
would ship, not on the noisy number it selected by.

    python benchmarks/compare_strategies.py --seeds 50 --epoch-budget 200 --out /tmp/strategies

Writes ``strategies.json`` (every trajectory), ``strategies.md`` (the table) and PNG curves.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from replay import DEFAULT_TABLE, KEYS, NotTabled, Table, replay_curve  # noqa: E402

# sampler / pruner settings as a sweep config writes them (hydra.sweeper.sampler / pruner)
STRATEGIES: dict[str, dict[str, Any]] = {
    "random": {"sampler": {"name": "random"}, "pruner": {"name": "none"}},
    # Optuna 5's TPE is multivariate (with the constant liar) by default
    "tpe-independent": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 8, "multivariate": False}},
                        "pruner": {"name": "none"}},
    "tpe-multivariate": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 8}}, "pruner": {"name": "none"}},
    "tpe+median (shipped before)": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 8}},
                                    "pruner": {"name": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 1}}},
    "tpe+successive-halving": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 8}},
                               "pruner": {"name": "successive_halving", "options": {"min_resource": 1, "reduction_factor": 3}}},
    "tpe+hyperband": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 8}},
                      "pruner": {"name": "hyperband", "options": {"min_resource": 1, "max_resource": 10, "reduction_factor": 3}}},
    "random+median": {"sampler": {"name": "random"},
                      "pruner": {"name": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 1}}},
    # candidates for the shipped defaults: fewer random start-up trials, later pruning
    "tpe4": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 4}}, "pruner": {"name": "none"}},
    "tpe4+median(warm-up 3)": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 4}},
                               "pruner": {"name": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 3}}},
    "tpe4+median(warm-up 5)": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 4}},
                               "pruner": {"name": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 5}}},
    "tpe4+median(warm-up 7)": {  # shipped now (conf/sweep/*.yaml)"sampler": {"name": "tpe", "options": {"n_startup_trials": 4}},
                               "pruner": {"name": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 7}}},
    "tpe4+hyperband": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 4}},
                       "pruner": {"name": "hyperband", "options": {"min_resource": 1, "max_resource": 10, "reduction_factor": 3}}},
    "tpe4+successive-halving(min 3)": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 4}},
                                       "pruner": {"name": "successive_halving", "options": {"min_resource": 3, "reduction_factor": 3}}},
}  # fmt: skip
MULTI_STRATEGIES: dict[str, dict[str, Any]] = {
    "random": {"sampler": {"name": "random"}, "pruner": {"name": "none"}},
    "nsga2": {"sampler": {"name": "nsga2", "options": {"population_size": 8}}, "pruner": {"name": "none"}},
    "tpe": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 8}}, "pruner": {"name": "none"}},
}  # fmt: skip


def table_space(table: Table):
    """The tabled space as sweep params (``choice(...)`` of each tabled value)."""
    from experiments.sweep.space import parse_space

    def choice(values: list[str]) -> str:
        lists = ["[" + v.replace("-", ",") + "]" if "-" in v else v for v in values]
        return "choice(" + ",".join(lists) + ")"

    return parse_space({k: choice(table.values[k]) for k in KEYS})


def _conf(d: dict[str, Any], seed: int):
    from omegaconf import OmegaConf

    return OmegaConf.create({"name": d["name"], "seed": seed, "options": d.get("options", {})})


def search(table: Table, strategy: dict[str, Any], seed: int, *, budget: int, multi: bool = False, max_asks: int = 400):
    """One replayed sweep; returns its trajectory: [epochs spent, incumbent test accuracy] after
    each trial (single objective), or the epochs and the (test accuracy, MACs) of every
    completed configuration (multi-objective)."""
    import optuna

    from experiments.sweep.space import sample
    from experiments.sweep.study import make_pruner, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = table_space(table)
    sampler = make_sampler(_conf(strategy["sampler"], seed))
    study = optuna.create_study(
        sampler=sampler, pruner=make_pruner(_conf(strategy["pruner"], seed)),
        directions=["maximize", "minimize"] if multi else ["maximize"],
    )  # fmt: skip
    completed: dict[tuple[str, ...], list[float]] = {}
    spent, trajectory, best = 0, [], (-math.inf, None)
    for _ in range(max_asks):
        if spent >= budget:
            break
        trial = study.ask()
        try:
            key = table.key(sample(trial, params))
        except NotTabled:  # a hole in a partial table: rejected, as the sweeper rejects an invalid model
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        if key in completed:  # the sweeper's reuse_duplicates: the earlier values, no training
            study.tell(trial, completed[key])
            continue
        curve = table.curve(key, trial.number + seed)
        try:
            done = replay_curve(trial, curve, report=not multi)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            spent += trial.user_attrs["replay.epochs"]
            if not multi:
                trajectory.append([spent, best[1]])
            continue
        values = [done.best_val, float(curve.macs)] if multi else [done.best_val]
        completed[key] = values
        study.tell(trial, values)
        spent += done.epochs
        if multi:
            trajectory.append([spent, table.test_accuracy(key), curve.macs])
        else:
            if done.best_val > best[0]:
                best = (done.best_val, table.test_accuracy(key))
            trajectory.append([spent, best[1]])
    return trajectory


def at(trajectory: list[list], epochs: float) -> float | None:
    """The incumbent's test accuracy once ``epochs`` were spent (None before the first)."""
    value = None
    for spent, test in trajectory:
        if spent > epochs:
            break
        value = test
    return value


def epochs_to_reach(trajectory: list[list], target: float) -> float:
    return next((spent for spent, test in trajectory if test is not None and test >= target - 1e-12), math.inf)


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """2-D hypervolume of (accuracy to maximise, MACs to minimise) points against ``ref``."""
    front = sorted((m, a) for a, m in points if a > ref[0] and m < ref[1])
    hv, best_acc = 0.0, ref[0]
    for i, (macs, acc) in enumerate(front):
        best_acc = max(best_acc, acc)
        next_macs = front[i + 1][0] if i + 1 < len(front) else ref[1]
        hv += (best_acc - ref[0]) * (next_macs - macs)
    return hv


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th, 50th, 75th) percentiles, each an observed value (so "never" stays infinite)."""
    import numpy as np

    if not values:
        return (math.nan,) * 3
    q = np.percentile(np.asarray(values, dtype=float), [25, 50, 75], method="nearest")
    return float(q[0]), float(q[1]), float(q[2])


def _share(x: float) -> str:
    return "-" if math.isinf(x) else f"{x:.0%}"


def _epochs(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:g}"


def compare(table: Table, strategies: dict, seeds: int, budget: int) -> dict:
    runs = {}
    for name, strategy in strategies.items():
        t0 = time.perf_counter()
        runs[name] = [search(table, strategy, s, budget=budget) for s in range(seeds)]
        print(f"{name}: {seeds} seeds in {time.perf_counter() - t0:.1f} s", flush=True)
    random_final = statistics.median(at(tr, budget) for tr in runs["random"])
    rows = []
    for name, trs in runs.items():
        finals = [at(tr, budget) for tr in trs]
        reach = [epochs_to_reach(tr, random_final) for tr in trs]
        med_reach = statistics.median(reach)
        rows.append({"strategy": name, "final": quartiles(finals), "reach": quartiles(reach),
                     "reach_share": med_reach / budget, "never": sum(math.isinf(r) for r in reach)})  # fmt: skip
    return {"runs": runs, "rows": rows, "random_final": random_final, "budget": budget, "seeds": seeds,
            "oracle": max(table.test_accuracy(k) for k in table.runs)}  # fmt: skip


def compare_multi(table: Table, seeds: int, budget: int) -> dict:
    macs = [c.macs for runs in table.runs.values() for c in runs.values()]
    ref = (0.1, max(macs) * 1.1)  # chance accuracy, above the largest model
    rows, runs = [], {}
    for name, strategy in MULTI_STRATEGIES.items():
        trs = [search(table, strategy, s, budget=budget, multi=True) for s in range(seeds)]
        runs[name] = trs
        hvs = [hypervolume([(a, m) for _, a, m in tr], ref) / (ref[1] * (1 - ref[0])) for tr in trs]
        rows.append({"strategy": name, "hypervolume": quartiles(hvs)})
    best = hypervolume([(table.test_accuracy(k), table.curve(k, 0).macs) for k in table.runs], ref)
    return {"rows": rows, "oracle": best / (ref[1] * (1 - ref[0])), "runs": runs}


def early_ranking(table: Table, epochs=(1, 2, 3, 5, 7)) -> dict[int, float]:
    """Spearman rank correlation, over the tabled runs, between the validation accuracy after
    ``k`` epochs and the held-out test accuracy after the last: how well a pruner's early
    view ranks what a finished run would deliver."""
    from scipy.stats import spearmanr

    curves = [c for runs in table.runs.values() for c in runs.values()]
    finals = [c.test_accuracy for c in curves]
    return {k: float(spearmanr([c.val_accuracy[k - 1] for c in curves], finals).statistic) for k in epochs}


def markdown(result: dict, multi: dict | None, ranking: dict[int, float] | None = None) -> str:
    b = result["budget"]
    lines = [
        f"Incumbent held-out test accuracy (mean of its tabled seeds) after {b} epochs, over "
        f"{result['seeds']} seeds (median [IQR]); epochs until the incumbent is at least random "
        f"search's median final ({result['random_final']:.4f}); best in the table: {result['oracle']:.4f}.",
        "",
        "| strategy | test acc at budget | epochs to random's final best | share of budget | never reached |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        f, e = r["final"], r["reach"]
        lines.append(f"| {r['strategy']} | {f[1]:.4f} [{f[0]:.4f}, {f[2]:.4f}] | {_epochs(e[1])} [{_epochs(e[0])}, {_epochs(e[2])}] "
                     f"| {_share(r['reach_share'])} | {r['never']}/{result['seeds']} |")  # fmt: skip
    if ranking:
        lines += ["", "Rank correlation (Spearman) of the validation accuracy after k epochs with the final held-out "
                  "test accuracy, over all tabled runs:", "",
                  "| k | " + " | ".join(str(k) for k in ranking) + " |", "|---|" + "---|" * len(ranking),
                  "| rho | " + " | ".join(f"{v:.2f}" for v in ranking.values()) + " |"]  # fmt: skip
    if multi:
        lines += ["", f"Multi-objective (val accuracy up, MACs down), normalised hypervolume of the completed "
                  f"configurations in (test accuracy, MACs) after {b} epochs; all tabled: {multi['oracle']:.4f}.", "",
                  "| strategy | hypervolume |", "|---|---|"]  # fmt: skip
        for r in multi["rows"]:
            h = r["hypervolume"]
            lines.append(f"| {r['strategy']} | {h[1]:.4f} [{h[0]:.4f}, {h[2]:.4f}] |")
    return "\n".join(lines) + "\n"


PLOTTED = ("random", "tpe-multivariate", "tpe+median (shipped before)", "tpe4+hyperband", "tpe4+median(warm-up 7)")


def plot(result: dict, path: Path) -> None:
    """Median and IQR over seeds of the incumbent's test accuracy, for a few strategies (all
    of them are in the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = result["budget"]
    xs = list(range(1, b + 1))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, trs in result["runs"].items():
        if name not in PLOTTED:
            continue
        meds, lo, hi = [], [], []
        for x in xs:
            vals = [v for v in (at(tr, x) for tr in trs) if v is not None]
            q = quartiles(vals) if len(vals) > len(trs) // 2 else (math.nan,) * 3
            lo.append(q[0]), meds.append(q[1]), hi.append(q[2])
        (line,) = ax.step(xs, meds, where="post", label=name, lw=2 if "shipped now" in name else 1.3)
        ax.fill_between(xs, lo, hi, step="post", alpha=0.10, color=line.get_color())
    ax.axhline(result["random_final"], color="grey", ls=":", lw=1, label="random's final (median)")
    ax.set_xlabel("epochs spent")
    ax.set_ylabel("incumbent held-out test accuracy")
    ax.set_title(f"Replayed search on the tabled space, {result['seeds']} seeds (median, IQR)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default=str(DEFAULT_TABLE))
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--epoch-budget", type=int, default=200)
    p.add_argument("--only", nargs="*", help="strategy names (default: all)")
    p.add_argument("--no-multi", action="store_true")
    p.add_argument("--out", type=Path, default=Path("strategies"))
    args = p.parse_args(argv)
    table = Table.load(args.table)
    strategies = {k: v for k, v in STRATEGIES.items() if not args.only or k in args.only or k == "random"}
    result = compare(table, strategies, args.seeds, args.epoch_budget)
    multi = None if args.no_multi else compare_multi(table, args.seeds, args.epoch_budget)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "strategies.json").write_text(json.dumps({"single": result, "multi": multi}, default=str))
    (args.out / "table_stats.json").write_text(
        json.dumps({"configurations": len(table.runs), "oracle": result["oracle"]})
    )
    ranking = early_ranking(table)
    md = markdown(result, multi, ranking)
    (args.out / "strategies.md").write_text(md)
    plot(result, args.out / "strategies.png")
    print(md)
    print(f"written: {args.out}/strategies.md, strategies.json, strategies.png")


if __name__ == "__main__":
    main()
