"""``python -m experiments.sweep.finalize --study NAME --storage URL [--top-k 3] [--seeds 3] [overrides]``

A sweep ranks architectures from short trials, one seed each, on a validation split that is
often too small to separate them. Finalizing retrains the study's top-k distinct trials with
the base config's full training budget (the sweep overlay dropped, its model and data
settings kept: :mod:`experiments.sweep.retrain`), each with several seeds; every run is
evaluated once on the test split and logs its model, as a child of the study's parent run.
Architectures are ranked by mean validation accuracy of the final models (the test split
never chooses); the table of mean ± std validation and test accuracy is printed and logged.
The study's baselines (what the run config trains without the sweep) are retrained with the
same seeds and budget, and finalize ends with a verdict (:mod:`experiments.sweep.verdict`):
winner − baseline on validation and test, with cost ratios. The winner's best-seed model is
the study's result (registered with ``--register``) if it beats the baseline on validation;
otherwise the search did not pay at this budget, and the baseline's model ships instead.

Run again, finalize resumes: the runs of its last round whose configuration is planned again
(the same trial, seed and resolved config: tag ``finalize.config``) are reused, the rest are
trained. A study finalized before with other settings is refused in one line unless
``--again``, which starts a new round beside the old one (tag ``finalize.round``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from experiments.cli import UserError, quiet_tensorflow, user_errors
from experiments.sweep.verdict import Verdict, paired_interval, ratio

log = logging.getLogger("experiments.sweep.finalize")
RANK_METRIC = "val/accuracy"  # of the final model: the one that is shipped


@dataclass
class Candidate:
    """One of the study's top trials, and its finalized runs."""

    trial: int
    arch: str
    sweep_value: float | None
    overrides: list[str]
    baseline: str | None = None  # the baseline's label, for a study's baseline
    runs: list[dict] = field(default_factory=list)  # {seed, run_id, val, test, model_uri}
    cost: dict = field(default_factory=dict)  # macs, params, latency_ms (of its first seed's model)
    over_budget: bool = False  # a baseline trained beyond the study's constraints: never shipped

    @property
    def name(self) -> str:
        from experiments.sweep.baselines import named

        number = f"t{self.trial:02d} " if self.trial >= 0 else ""  # (-1: a default the study did not hold)
        return f"{number}{named(self.arch, self.baseline)}"

    def values(self, key: str) -> dict[int, float | None]:
        return {r["seed"]: r.get(key) for r in self.runs}

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
    from experiments.sweep.baselines import trial_label

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and trial_label(t) is None  # (the baselines are retrained as baselines)
    ]
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
    entries = [(t, None, list(t.params)) for t in trials] + study_baselines(study, trials[0])
    candidates, configs, seen = [], {}, {}
    for t, label, searched in entries:
        overrides = [*retrain_overrides(t.user_attrs.get(OVERRIDES_ATTR, []), compose, searched), *args.overrides]
        key = tuple(sorted(overrides))
        if key in seen:  # a baseline that a searched trial repeats: it is the baseline
            seen[key].baseline = seen[key].baseline or label
            continue
        base = compose(overrides)
        plan_run(base, build=False)  # a bad override fails here, before any training
        value = float(t.values[0]) if t.values else None
        c = seen[key] = Candidate(t.number, arch_label(base.model), value, overrides, baseline=label)
        c.over_budget = any(v > 0 for v in (getattr(t, "constraints", None) or {}).values())
        for i in range(args.seeds):
            seed = int(base.trainer.seed) + i
            configs[(t.number, seed)] = compose([*overrides, f"trainer.seed={seed}"])
        candidates.append(c)
    return candidates, configs


def study_baselines(study, best) -> list[tuple]:
    """The study's baseline trials as (trial, label, searched keys); a study without any (swept
    before baselines existed) gets its ``default`` from its best trial: that trial's overrides
    without its searched keys are what the run config trains without the sweep."""
    from experiments.sweep.baselines import DEFAULT, trial_label
    from experiments.sweep.study import OVERRIDES_ATTR

    out, labels = [], set()
    for t in study.get_trials(deepcopy=False):
        label = trial_label(t)
        if label is None or label in labels or OVERRIDES_ATTR not in t.user_attrs:
            continue
        labels.add(label)
        out.append((t, label, list(t.params)))
    if out:
        return out
    searched = set(best.params)
    fixed = [o for o in best.user_attrs.get(OVERRIDES_ATTR, []) if o.lstrip("+~").split("=", 1)[0] not in searched]
    derived = SimpleNamespace(number=-1, values=None, params={}, user_attrs={OVERRIDES_ATTR: fixed})
    return [(derived, DEFAULT, [])]


def finalize(args) -> tuple[list[Candidate], dict, Verdict | None]:
    """Train, evaluate and rank; return the ranked candidates and the winner's record."""
    from experiments.run import RunHooks, run_task
    from experiments.signals import interruption_reason
    from experiments.sweep.study import load_study_or_error, parent_run_of
    from experiments.tracking import StudyRuns, check_tracking_uri

    study = load_study_or_error(args.study, args.storage)
    candidates, configs = plan(study, args)
    first = next(iter(configs.values()))
    tracking = first.tracking
    if not tracking.enabled:
        raise UserError("tracking.enabled: received false; allowed: true (finalize logs runs and models to MLflow)")
    check_tracking_uri(tracking.tracking_uri)
    runs = StudyRuns(tracking.tracking_uri, tracking.experiment_name, retry_s=tracking.retry_s)
    known = runs.existing_parent(args.study, parent_run_of(study))
    digests = {key: config_digest(cfg) for key, cfg in configs.items()}
    round_no, reused = resume_round(runs.finalize_runs(known) if known else [], digests, args)
    import keras  # (TensorFlow: after every refusal)

    from experiments.train import measure_latency_ms

    parent = runs.parent_run(args.study, known)
    total = len(configs)
    status, reason = "FINISHED", None
    if reused:
        log.info("finalize resumes round %d: %d of %d runs done before, reused", round_no, len(reused), total)
    try:
        for done, ((trial, seed), cfg) in enumerate(configs.items(), 1):
            c = next(c for c in candidates if c.trial == trial)
            if (trial, seed) in reused:
                c.runs.append(reused[(trial, seed)]["record"])
                c.cost = c.cost or reused[(trial, seed)]["cost"]
                continue
            log.info("finalize %d/%d: %s, seed %d, %d epochs", done, total, c.name, seed, cfg.trainer.epochs)
            seen: dict = {}
            tags = {"sweep.study": args.study, "sweep.role": "finalize", "finalize.trial": str(trial),
                    "finalize.seed": str(seed), "finalize.config": digests[(trial, seed)],
                    "finalize.round": str(round_no), "finalize.args": finalize_args(args)[:5000],
                    **({"finalize.baseline": c.baseline} if c.baseline else {})}  # fmt: skip
            run_task(cfg, RunHooks(
                parent_run_id=parent,
                run_name=f"final {c.name} seed {seed}",
                tags=tags,
                on_tracker=lambda tr, seen=seen: seen.update(run_id=tr.run_id, tracker=tr),
                on_result=lambda result, seen=seen: seen.setdefault("result", result),
            ))  # fmt: skip
            result = seen["result"]
            c.runs.append(
                {
                    "seed": seed,
                    "run_id": seen["run_id"],
                    "val": result.at_epoch.get(RANK_METRIC),  # the kept model's: best/val/accuracy
                    "test": result.test.get("test/accuracy"),
                    "model_uri": seen["tracker"].model_uri,  # as logged (None: tracking.log_model off)
                }
            )
            if not c.cost:  # the architecture's, the same for every seed
                c.cost = {"macs": result.cost.macs, "params": result.cost.trainable_params,
                          "latency_ms": measure_latency_ms(result.model, tuple(result.model.input_shape[1:]))}  # fmt: skip
                runs.log_metric(seen["run_id"], "finalize/latency_ms", c.cost["latency_ms"])
            record = c.runs[-1]  # what a resumed finalize reads back: this run is complete
            for key, value in (("finalize/val_accuracy", record["val"]), ("finalize/test_accuracy", record["test"])):
                if value is not None:
                    runs.log_metric(seen["run_id"], key, value)
            if record["model_uri"]:
                runs.set_tags(seen["run_id"], {"finalize.model_uri": record["model_uri"]})
            keras.backend.clear_session(free_memory=True)
        searched = sorted((c for c in candidates if c.baseline is None), key=lambda c: -c.mean_std("val")[0])
        baselines = sorted((c for c in candidates if c.baseline is not None), key=lambda c: -c.mean_std("val")[0])
        ranked = sorted(candidates, key=lambda c: -c.mean_std("val")[0])
        verdict = judge(searched[0], baselines[0], configs) if searched and baselines else None
        shipped = searched[0] if searched and (verdict is None or verdict.ships_winner) else baselines[0]
        winner = _winner(shipped)
        _log_results(runs, parent, ranked, winner, verdict, args)
        return ranked, winner, verdict
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (experiments.signals)
        status, reason = "KILLED", f"finalize: {interruption_reason(err)}"
        raise
    except BaseException as err:
        status, reason = "FAILED", f"finalize: {type(err).__name__}: {err}"
        raise
    finally:
        runs.end(parent, status, reason)


def config_digest(cfg) -> str:
    """The identity of one finalize run: its resolved config (the trial's settings, the seed,
    the budget, the data and every override)."""
    from omegaconf import OmegaConf

    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:16]


def finalize_args(args) -> str:
    """The command line's settings, as shown when a second finalize is refused."""
    return " ".join([f"--top-k {args.top_k}", f"--seeds {args.seeds}", *args.overrides])


def resume_round(previous: list[dict], digests: dict[tuple[int, int], str], args) -> tuple[int, dict]:
    """The round this finalize records, and the runs of it done before: ``{(trial, seed):
    {record, cost}}``. The last round is resumed when every run it has is planned again;
    otherwise the study was finalized with other settings: refused unless ``args.again``."""
    if not previous:
        return 1, {}
    last = max(int(r["tags"].get("finalize.round", 0)) for r in previous)
    mine = [r for r in previous if int(r["tags"].get("finalize.round", 0)) == last]
    planned = {(trial, seed, digest) for (trial, seed), digest in digests.items()}

    def key(r) -> tuple:
        t = r["tags"]
        return int(t.get("finalize.trial", -99)), int(t.get("finalize.seed", -1)), t.get("finalize.config")

    if args.again:
        return last + 1, {}
    if not all(key(r) in planned for r in mine):
        shown = mine[-1]["tags"].get("finalize.args") or "settings not recorded"
        raise UserError(
            f"--again: study {args.study!r} was finalized before with other settings (round {last}: {len(mine)} "
            f"runs, {shown}); the same settings resume that round; add --again to finalize anew beside it"
        )
    reused = {}
    for r in mine:  # (oldest first: a later complete run of the same key wins)
        m = r["metrics"]
        if r["status"] != "FINISHED" or "finalize/val_accuracy" not in m:
            continue  # killed or failed: trained again
        trial, seed, _ = key(r)
        record = {"seed": seed, "run_id": r["run_id"], "val": m["finalize/val_accuracy"],
                  "test": m.get("finalize/test_accuracy"),
                  "model_uri": r["tags"].get("finalize.model_uri")}  # fmt: skip
        cost = {}
        if "finalize/latency_ms" in m:
            cost = {"macs": m.get("model/macs"), "params": m.get("model/trainable_params"),
                    "latency_ms": m["finalize/latency_ms"]}  # fmt: skip
        reused[(trial, seed)] = {"record": record, "cost": cost}
    return last, reused


def _winner(best: Candidate) -> dict:
    run = max(best.runs, key=lambda r: r["val"] if r["val"] is not None else -1.0)
    return {"trial": best.trial, "arch": best.arch, "name": best.name, "baseline": best.baseline, **run}


def judge(winner: Candidate, baseline: Candidate, configs: dict | None = None) -> Verdict:
    """Winner − baseline, paired by seed, on validation and test, with the cost ratios and
    (``configs``: each run's config) the settings in which the two differ."""
    seeds = sorted(set(winner.values("val")) & set(baseline.values("val")))
    wv, bv, wt, bt = winner.values("val"), baseline.values("val"), winner.values("test"), baseline.values("test")
    return Verdict(
        winner=winner.name,
        baseline=baseline.name,
        val=paired_interval([wv[s] for s in seeds], [bv[s] for s in seeds]),
        test=paired_interval([wt[s] for s in seeds], [bt[s] for s in seeds]),
        macs_ratio=ratio(winner.cost.get("macs"), baseline.cost.get("macs")),
        params_ratio=ratio(winner.cost.get("params"), baseline.cost.get("params")),
        latency_ratio=ratio(winner.cost.get("latency_ms"), baseline.cost.get("latency_ms")),
        baseline_over_budget=baseline.over_budget,
        differs=setting_differences(*(_first_config(configs, c) for c in (winner, baseline))) if configs else (),
    )


def _first_config(configs: dict, c: Candidate):
    return next(cfg for (trial, _seed), cfg in configs.items() if trial == c.trial)


def setting_differences(a, b, groups=("model", "trainer")) -> tuple[str, ...]:
    """The model and trainer settings in which run config ``a`` differs from ``b``
    (``model.shortcut: projection vs zero_pad``), the seed aside: what the search changed."""
    from omegaconf import OmegaConf

    out = []
    for group in groups:
        x, y = (OmegaConf.to_container(cfg[group], resolve=True) for cfg in (a, b))
        for key in x:
            if key != "seed" and x[key] != y.get(key):
                out.append(f"{group}.{key}: {_short(x[key])} vs {_short(y.get(key))}")
    return tuple(out)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def table_rows(ranked: list[Candidate]) -> list[dict]:
    rows = []
    for rank, c in enumerate(ranked, 1):
        val, val_sd = c.mean_std("val")
        test, test_sd = c.mean_std("test")
        rows.append(
            {"rank": rank, "trial": c.trial, "baseline": c.baseline or "", "arch": c.arch, "seeds": len(c.runs),
             "sweep_value": c.sweep_value, "val_mean": val, "val_std": val_sd, "test_mean": test, "test_std": test_sd,
             "macs": c.cost.get("macs"), "params": c.cost.get("params"), "latency_ms": c.cost.get("latency_ms"),
             "overrides": " ".join(c.overrides)}
        )  # fmt: skip
    return rows


def _log_results(runs, parent: str, ranked: list[Candidate], winner: dict, verdict: Verdict | None, args) -> None:
    import csv

    from experiments.tracking import register_run_model

    rows = table_rows(ranked)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "finalize.csv"
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (Path(tmp) / "finalize.txt").write_text(format_table(ranked, winner) + "\n")
        if verdict is not None:
            (Path(tmp) / "verdict.txt").write_text(verdict.table() + "\n\n" + verdict.line() + "\n")
            (Path(tmp) / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2) + "\n")
        runs.log_artifacts(parent, tmp, "finalize")
    shipped = next(r for r in rows if r["trial"] == winner["trial"])
    runs.log_metric(parent, "finalize/val_accuracy_mean", shipped["val_mean"])
    runs.log_metric(parent, "finalize/test_accuracy_mean", shipped["test_mean"])
    tags = {"finalize.winner_trial": winner["trial"], "finalize.winner_arch": winner["arch"],
            "finalize.winner_run": winner["run_id"]}  # fmt: skip
    if verdict is not None:
        d = verdict.to_dict()
        for key in ("val_diff_mean", "val_diff_ci95", "test_diff_mean", "test_diff_ci95", "macs_ratio",
                    "params_ratio", "latency_ratio"):  # fmt: skip
            if d[key] is not None and d[key] == d[key]:
                runs.log_metric(parent, f"verdict/{key}", d[key])
        tags.update({"finalize.search_paid": str(verdict.paid).lower(), "finalize.verdict": verdict.line()[:5000]})
    if winner.get("model_uri"):
        tags["finalize.model_uri"] = winner["model_uri"]
        before = runs.tags_of(parent)  # a resumed finalize that registered this winner already
        if (
            args.register
            and before.get("finalize.winner_run") == winner["run_id"]
            and before.get("finalize.registered")
        ):
            winner["registered"] = before["finalize.registered"]
        elif args.register:
            winner["registered"] = register_run_model(runs.experiment_id, winner["run_id"], args.register)
            tags["finalize.registered"] = winner["registered"]
    runs.set_tags(parent, tags)
    runs.set_tags(winner["run_id"], {"finalize.winner": "true"})


def format_table(ranked: list[Candidate], winner: dict) -> str:
    """The ranking as plain text within 80 columns (``B``: a baseline)."""
    lines = [f"{'#':>2} {'trial':>6}  {'architecture':<27} {'seeds':>5}  {'val acc (mean±sd)':>17}  {'test acc':>15}"]
    for r in table_rows(ranked):
        trial = ("B " if r["baseline"] else "") + ("t{:02d}".format(r["trial"]) if r["trial"] >= 0 else "-")
        lines.append(
            f"{r['rank']:>2} {trial:>6}  {r['arch'][:27]:<27} {r['seeds']:>5}  "
            f"{r['val_mean']:>8.4f}±{r['val_std']:<8.4f} {r['test_mean']:>7.4f}±{r['test_std']:<7.4f}"
        )
    if any(r["baseline"] for r in table_rows(ranked)):
        lines.append("B: a baseline (what the run config trains without the sweep), same seeds and budget")
    lines.append(f"shipped: {winner['name']} (seed {winner['seed']}, run {winner['run_id']})")
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
    p.add_argument(
        "--again",
        action="store_true",
        help="finalize anew beside an earlier finalize with other settings (by default: resume it)",
    )
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
    ranked, winner, verdict = finalize(args)
    print(format_table(ranked, winner))
    print(verdict.line() if verdict is not None else "verdict: none (no baseline and no searched trial to compare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
