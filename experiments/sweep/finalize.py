"""``python -m experiments.sweep.finalize --study NAME --storage URL [--top-k 3] [--seeds 3] [overrides]``

A sweep ranks architectures from short trials, one seed each, on a validation split that is
often too small to separate them. Finalizing retrains the study's top-k distinct trials with
the base config's full training budget (the sweep overlay dropped, its model and data
settings kept: :mod:`experiments.sweep.retrain`), each with several seeds; every run is
evaluated once on the test split and logs its model, as a child of the study's parent run.
Architectures are ranked by mean validation accuracy of the final models (the test split
never chooses); the table of mean ± std validation and test accuracy is printed and logged,
and the winner's best-seed model is the study's result (registered with ``--register``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from experiments.cli import UserError, quiet_tensorflow, user_errors

log = logging.getLogger("experiments.sweep.finalize")
RANK_METRIC = "val/accuracy"  # of the final model: the one that is shipped


@dataclass
class Candidate:
    """One of the study's top trials, and its finalized runs."""

    trial: int
    arch: str
    sweep_value: float
    overrides: list[str]
    runs: list[dict] = field(default_factory=list)  # {seed, run_id, val, test, model_uri}

    def mean_std(self, key: str) -> tuple[float, float]:
        values = [r[key] for r in self.runs if r.get(key) is not None]
        if not values:
            return float("nan"), float("nan")
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def top_trials(study, k: int) -> list:
    """The ``k`` best COMPLETE trials with distinct configurations (a repeated configuration
    counts once), by the study's first accuracy objective (else its first objective)."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from experiments.sweep.study import OVERRIDES_ATTR

    objectives = study.user_attrs.get("objectives") or []
    index = next((i for i, o in enumerate(objectives) if str(o).endswith("accuracy")), 0)
    maximize = study.directions[index] == StudyDirection.MAXIMIZE
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    done.sort(key=lambda t: (-t.values[index] if maximize else t.values[index], t.number))
    chosen, seen = [], set()
    for t in done:
        key = tuple(sorted(t.user_attrs.get(OVERRIDES_ATTR, [])))
        if key in seen:
            continue
        seen.add(key)
        chosen.append(t)
        if len(chosen) == k:
            break
    return chosen


def plan(study, args) -> tuple[list[Candidate], dict]:
    """Every run's config, composed and validated before anything trains."""
    from experiments.overrides import CONF_DIR
    from experiments.run import arch_label, plan_run
    from experiments.sweep.retrain import config_composer, retrain_overrides
    from experiments.sweep.study import OVERRIDES_ATTR

    compose = config_composer(str(CONF_DIR), searchpath=study.user_attrs.get("searchpath") or ())
    trials = top_trials(study, args.top_k)
    if not trials:
        raise UserError(f"--study: study {study.study_name!r} has no complete trial to finalize")
    candidates, configs = [], {}
    for t in trials:
        overrides = [*retrain_overrides(t.user_attrs.get(OVERRIDES_ATTR, []), compose, list(t.params)), *args.overrides]
        base = compose(overrides)
        plan_run(base, build=False)  # a bad override fails here, before any training
        c = Candidate(t.number, arch_label(base.model), float(t.values[0]), overrides)
        for i in range(args.seeds):
            seed = int(base.trainer.seed) + i
            configs[(t.number, seed)] = compose([*overrides, f"trainer.seed={seed}"])
        candidates.append(c)
    return candidates, configs


def finalize(args) -> tuple[list[Candidate], dict]:
    """Train, evaluate and rank; return the ranked candidates and the winner's record."""
    import keras

    from experiments.run import RunHooks, run_task
    from experiments.signals import interruption_reason
    from experiments.sweep.study import PARENT_RUN_ATTR, load_study_or_error
    from experiments.tracking import StudyRuns, check_tracking_uri

    study = load_study_or_error(args.study, args.storage)
    candidates, configs = plan(study, args)
    first = next(iter(configs.values()))
    tracking = first.tracking
    if not tracking.enabled:
        raise UserError("tracking.enabled: received false; allowed: true (finalize logs runs and models to MLflow)")
    check_tracking_uri(tracking.tracking_uri)
    runs = StudyRuns(tracking.tracking_uri, tracking.experiment_name)
    parent = runs.parent_run(args.study, study.user_attrs.get(PARENT_RUN_ATTR))
    total = len(configs)
    status, reason = "FINISHED", None
    try:
        for done, ((trial, seed), cfg) in enumerate(configs.items(), 1):
            c = next(c for c in candidates if c.trial == trial)
            log.info(
                "finalize %d/%d: t%02d %s, seed %d, %d epochs", done, total, trial, c.arch, seed, cfg.trainer.epochs
            )
            seen: dict = {}
            run_task(cfg, RunHooks(
                parent_run_id=parent,
                run_name=f"final t{trial:02d} {c.arch} seed {seed}",
                tags={"sweep.study": args.study, "sweep.role": "finalize", "finalize.trial": str(trial),
                      "finalize.seed": str(seed)},
                on_tracker=lambda tr, seen=seen: seen.setdefault("run_id", tr.run_id),
            ))  # fmt: skip
            metrics = runs.client.get_run(seen["run_id"]).data.metrics
            c.runs.append(
                {
                    "seed": seed,
                    "run_id": seen["run_id"],
                    "val": metrics.get(RANK_METRIC),
                    "test": metrics.get("test/accuracy"),
                    "model_uri": f"runs:/{seen['run_id']}/model" if cfg.tracking.log_model else None,
                }
            )
            keras.backend.clear_session(free_memory=True)
        ranked = sorted(candidates, key=lambda c: -c.mean_std("val")[0])
        winner = _winner(ranked[0])
        _log_results(runs, parent, ranked, winner, args)
        return ranked, winner
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (experiments.signals)
        status, reason = "KILLED", f"finalize: {interruption_reason(err)}"
        raise
    except BaseException as err:
        status, reason = "FAILED", f"finalize: {type(err).__name__}: {err}"
        raise
    finally:
        runs.end(parent, status, reason)


def _winner(best: Candidate) -> dict:
    run = max(best.runs, key=lambda r: r["val"] if r["val"] is not None else -1.0)
    return {"trial": best.trial, "arch": best.arch, **run}


def table_rows(ranked: list[Candidate]) -> list[dict]:
    rows = []
    for rank, c in enumerate(ranked, 1):
        val, val_sd = c.mean_std("val")
        test, test_sd = c.mean_std("test")
        rows.append(
            {"rank": rank, "trial": c.trial, "arch": c.arch, "seeds": len(c.runs), "sweep_value": c.sweep_value,
             "val_mean": val, "val_std": val_sd, "test_mean": test, "test_std": test_sd,
             "overrides": " ".join(c.overrides)}
        )  # fmt: skip
    return rows


def _log_results(runs, parent: str, ranked: list[Candidate], winner: dict, args) -> None:
    import csv

    import mlflow

    rows = table_rows(ranked)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "finalize.csv"
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (Path(tmp) / "finalize.txt").write_text(format_table(ranked, winner) + "\n")
        runs.log_artifacts(parent, tmp, "finalize")
    runs.log_metric(parent, "finalize/val_accuracy_mean", rows[0]["val_mean"])
    runs.log_metric(parent, "finalize/test_accuracy_mean", rows[0]["test_mean"])
    tags = {"finalize.winner_trial": winner["trial"], "finalize.winner_arch": winner["arch"],
            "finalize.winner_run": winner["run_id"]}  # fmt: skip
    if winner.get("model_uri"):
        tags["finalize.model_uri"] = winner["model_uri"]
        if args.register:
            (logged,) = mlflow.search_logged_models(
                experiment_ids=[runs.experiment_id],
                filter_string=f"source_run_id = '{winner['run_id']}'",
                output_format="list",
            )
            version = mlflow.register_model(f"models:/{logged.model_id}", args.register)
            winner["registered"] = f"models:/{args.register}/{version.version}"
            tags["finalize.registered"] = winner["registered"]
    runs.set_tags(parent, tags)
    runs.set_tags(winner["run_id"], {"finalize.winner": "true"})


def format_table(ranked: list[Candidate], winner: dict) -> str:
    """The ranking as plain text within 80 columns."""
    lines = [f"{'#':>2} {'trial':>5}  {'architecture':<28} {'seeds':>5}  {'val acc (mean±sd)':>17}  {'test acc':>15}"]
    for r in table_rows(ranked):
        trial = "t{:02d}".format(r["trial"])
        lines.append(
            f"{r['rank']:>2} {trial:>5}  {r['arch'][:28]:<28} {r['seeds']:>5}  "
            f"{r['val_mean']:>8.4f}±{r['val_std']:<8.4f} {r['test_mean']:>7.4f}±{r['test_std']:<7.4f}"
        )
    lines.append(f"winner: t{winner['trial']:02d} {winner['arch']} (seed {winner['seed']}, run {winner['run_id']})")
    if winner.get("model_uri"):
        lines.append(f"model: {winner.get('registered') or winner['model_uri']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(
        prog="python -m experiments.sweep.finalize",
        description="Retrain a study's top trials with the full budget and several seeds; rank them; ship the winner.",
        epilog="Overrides (Hydra's, e.g. trainer.epochs=30 data.test_split=0.1) apply to every run after the trial's own.",
    )
    p.add_argument("--study", required=True, help="the study name (hydra.sweeper.study_name)")
    p.add_argument("--storage", default="sqlite:///optuna.db", help="the study's Optuna storage URL")
    p.add_argument("--top-k", type=int, default=3, help="distinct top trials to retrain (default 3)")
    p.add_argument("--seeds", type=int, default=3, help="runs per trial, seeds trainer.seed, +1, ... (default 3)")
    p.add_argument("--register", metavar="NAME", help="register the winner's model under this name")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = p.parse_args(argv)
    if args.top_k < 1:
        raise UserError(f"--top-k: received {args.top_k}; allowed: an integer >= 1")
    if args.seeds < 1:
        raise UserError(f"--seeds: received {args.seeds}; allowed: an integer >= 1")
    return args


@user_errors
def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    args = parse_args(argv)
    ranked, winner = finalize(args)
    print(format_table(ranked, winner))
    return 0


if __name__ == "__main__":
    sys.exit(main())
