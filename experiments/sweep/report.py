"""The study summary: best trial(s), a table of all trials, Optuna's plots, the HTML report.

Logged to the parent MLflow run at the end of a sweep. ``python -m experiments.sweep.report``
rebuilds the HTML report of any study from its storage (e.g. while workers still run).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

from omegaconf import OmegaConf
from optuna.study import StudyDirection
from optuna.trial import TrialState

from experiments.sweep.selection import accuracy_index, accuracy_se, separation_warning, tied_with_best
from experiments.sweep.study import best_trials as st_best_trials

log = logging.getLogger(__name__)


def study_summary(study, objectives: list[str], compose=None) -> dict:
    """Counts, best trial(s) and one row per trial; accuracies come with their standard errors.

    With the study's ``num_val`` (validation images) known and an accuracy objective, each row
    and best entry gets ``se`` and ``tied_with_best`` (within noise of the best accuracy), and
    ``warnings`` says when the validation split cannot separate the top trials.
    ``compose(overrides)`` composes run configs: with it, each best entry's ``command``
    retrains the trial with the base config's full budget (:mod:`experiments.sweep.retrain`).
    """
    from experiments.sweep.baselines import best_baseline, differences, named, trial_label
    from experiments.sweep.retrain import retrain_command, retrain_overrides
    from experiments.sweep.study import ARCH_ATTR, OVERRIDES_ATTR, run_of

    trials = study.get_trials(deepcopy=False)
    num_val, se_of, noise, warn = _noise(study, objectives, trials)
    versus = {n: d.to_dict() for n, d in differences(trials, objectives[0], study.directions[0], num_val).items()}
    base = best_baseline(trials, study.directions[0])
    counts: dict[str, int] = {}
    rows = []
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "values": list(t.values) if t.values else None,
                "arch": named(t.user_attrs.get(ARCH_ATTR) or "-", trial_label(t))
                if trial_label(t)
                else t.user_attrs.get(ARCH_ATTR),
                "baseline": trial_label(t),
                **versus.get(t.number, _NO_VERSUS),
                "params": t.user_attrs.get("params"),
                "macs": t.user_attrs.get("macs"),
                "rejected": t.user_attrs.get("rejected"),
                "fail_reason": t.user_attrs.get("fail_reason"),
                "duplicate_of": t.user_attrs.get("duplicate_of"),
                "overrides": t.user_attrs.get(OVERRIDES_ATTR, []),
                "duration_s": t.duration.total_seconds() if t.duration else None,
                "run_id": run_of(t),
                **noise.get(t.number, _NO_NOISE),
            }
        )
    best = []
    if any(t.state == TrialState.COMPLETE for t in trials):
        chosen = st_best_trials(study)
        for t in chosen:
            overrides = t.user_attrs.get(OVERRIDES_ATTR, [])
            best.append(
                {
                    "number": t.number,
                    "values": list(t.values),
                    "params": dict(t.params),
                    "arch": t.user_attrs.get(ARCH_ATTR),
                    "baseline": trial_label(t),
                    **versus.get(t.number, _NO_VERSUS),
                    "overrides": overrides,
                    "retrain_overrides": retrain_overrides(overrides, compose, list(t.params)) if compose else None,
                    "command": retrain_command(overrides, compose, list(t.params)),
                    **noise.get(t.number, _NO_NOISE),
                }
            )
    return {
        "study_name": study.study_name,
        "objectives": objectives,
        "counts": counts,
        "num_val": num_val,
        "se_of": se_of,
        "warnings": warn,
        "best": best,
        "baseline": None
        if base is None
        else {"number": base.number, "label": trial_label(base), "values": list(base.values)},
        "trials": rows,
    }


_NO_NOISE = {"se": None, "tied_with_best": None}
_NO_VERSUS = {"vs_baseline": None, "vs_baseline_se": None}


def _noise(study, objectives: list[str], trials) -> tuple[int | None, str | None, dict[int, dict], list[str]]:
    """``num_val``, the accuracy objective, per-trial ``se``/``tied_with_best``, and the warnings.

    Nothing is computed without a positive ``num_val`` study attribute or an accuracy objective.
    A reused duplicate shows its own standard error and the tie of the trial it repeats; it is
    left out of the ranking, where it would tie with its original.
    """
    num_val = study.user_attrs.get("num_val")
    if isinstance(num_val, bool) or not isinstance(num_val, int) or num_val <= 0:
        return None, None, {}, []
    i = accuracy_index(objectives)
    if i is None or i >= len(study.directions):
        return num_val, None, {}, []
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values and 0.0 <= t.values[i] <= 1.0]
    sign = -1 if study.directions[i] == StudyDirection.MAXIMIZE else 1
    ranked = sorted(
        ((t.number, t.values[i]) for t in done if "duplicate_of" not in t.user_attrs), key=lambda r: sign * r[1]
    )
    tied = set(tied_with_best(ranked, num_val))
    noise = {
        t.number: {
            "se": accuracy_se(t.values[i], num_val),
            "tied_with_best": t.user_attrs.get("duplicate_of", t.number) in tied,
        }
        for t in done
    }
    warning = separation_warning(ranked, num_val)
    return num_val, objectives[i], noise, [warning] if warning else []


def _plots(study, objectives: list[str], out: Path) -> list[str]:
    """Optuna's matplotlib plots as PNG files; plots that need more trials are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    name = objectives[0]
    plots = {
        "optimization_history": lambda: vis.plot_optimization_history(study, target=target, target_name=name),
        "param_importances": lambda: vis.plot_param_importances(study, target=target, target_name=name),
        "parallel_coordinate": lambda: vis.plot_parallel_coordinate(study, target=target, target_name=name),
        "intermediate_values": lambda: vis.plot_intermediate_values(study),
    }
    if multi:
        plots["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=objectives)
    made = []
    for key, fn in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" notices on every plot
                ax = fn()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(9, 6)
            fig.tight_layout()
            fig.savefig(out / f"{key}.png", dpi=90)
            plt.close(fig)
            made.append(key)
        except Exception as err:  # noqa: BLE001 - e.g. importances need 2+ complete trials
            log.info("plot %s skipped: %s", key, err)
            plt.close("all")
    return made


CURVE_METRICS = ("val/accuracy", "val/loss", "train/loss")


def report_inputs(study, summary: dict, *, compose=None, runs=None):
    """Stage specs and learning curves of the top trials, for :func:`html_report.render`.

    Specs come from composing each trial's overrides (no model is built); curves from the
    trials' runs when ``runs`` is given (:class:`experiments.tracking.RunReader`, or the
    study's :class:`~experiments.tracking.StudyRuns`), else from Optuna's intermediate values.
    """
    from experiments.run import plan_run
    from experiments.sweep.html_report import ReportInputs, top_trials
    from experiments.sweep.retrain import retrain_command

    rows = {r["number"]: r for r in summary["trials"]}
    trials_by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    top = top_trials(study)
    inputs = ReportInputs(specs={}, curves={})
    for n in top:
        if compose is not None:
            try:
                searched = list(trials_by_number[n].params) if n in trials_by_number else []
                inputs.commands[n] = retrain_command(rows[n]["overrides"], compose, searched)
                inputs.specs[n] = plan_run(compose(rows[n]["overrides"]), build=False).spec
            except Exception as err:  # noqa: BLE001 - e.g. a plugin no longer importable
                log.info("report: no stage diagram for trial %d: %s", n, err)
        run_id = rows[n].get("run_id")
        if runs is not None and run_id:
            curves = {k: runs.metric_history(run_id, k) for k in CURVE_METRICS}
            inputs.curves[n] = {k: sorted(v) for k, v in curves.items() if v}
    if runs is not None:
        inputs.curve_source = "the trials' MLflow runs"
    else:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        monitor = study.user_attrs.get("monitor", "pruning metric")
        inputs.curves = {n: {monitor: sorted(trials[n].intermediate_values.items())} for n in top}
        inputs.curve_source = "Optuna's intermediate values (the pruning metric)"
    return inputs


def write_report(path: Path, study, summary: dict, *, compose=None, runs=None) -> Path:
    """Render the HTML report to ``path`` atomically (a reader never sees half a page)."""
    from experiments.sweep.html_report import render

    text = render(study, summary, report_inputs(study, summary, compose=compose, runs=runs))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def log_summary(runs, parent: str, study, summary: dict, *, compose, report_copy: Path | None = None) -> None:
    """Log the summary, trials table, best config(s), plots and HTML report to the parent run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        df = study.trials_dataframe()
        by_number = {r["number"]: r for r in summary["trials"]}
        for col in ("baseline", "vs_baseline", "vs_baseline_se"):  # against the best baseline at the sweep's end
            df[col] = [by_number.get(n, {}).get(col) for n in df["number"]]
        df.to_csv(out / "trials.csv", index=False)
        for _i, b in enumerate(summary["best"]):
            suffix = "" if len(summary["best"]) == 1 else f"_t{b['number']:02d}"
            try:
                cfg = compose(b["retrain_overrides"] or b["overrides"])
                text = OmegaConf.to_yaml({k: v for k, v in cfg.items() if k not in ("hydra", "trial")}, resolve=True)
            except Exception as err:  # noqa: BLE001
                text = f"# could not compose: {err}\n"
            (out / f"best_config{suffix}.yaml").write_text(f"# {b['command']}\n{text}")
        if len(study.directions) > 1:
            (out / "pareto_front.json").write_text(json.dumps(summary["best"], indent=2))
        plots = out / "plots"
        plots.mkdir()
        made = _plots(study, summary["objectives"], plots)
        report = write_report(out / "report.html", study, summary, compose=compose, runs=runs)
        if report_copy is not None:
            report_copy.parent.mkdir(parents=True, exist_ok=True)
            report_copy.write_bytes(report.read_bytes())
        runs.log_artifacts(parent, out)
    counts = summary["counts"]
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        runs.log_metric(parent, f"trials/{state.lower()}", counts.get(state, 0))
    if len(summary["best"]) == 1:
        b = summary["best"][0]
        for obj, v in zip(summary["objectives"], b["values"]):
            runs.log_metric(parent, f"best/{obj}", v)
        runs.set_tags(parent, {"best.trial": b["number"], "best.arch": b.get("arch") or ""})
        if b.get("vs_baseline") is not None:
            runs.log_metric(parent, f"best/vs_baseline/{summary['objectives'][0]}", b["vs_baseline"])
            if b.get("vs_baseline_se") is not None:
                runs.log_metric(parent, f"best/vs_baseline_se/{summary['objectives'][0]}", b["vs_baseline_se"])
    if base := summary.get("baseline"):
        for obj, v in zip(summary["objectives"], base["values"]):
            runs.log_metric(parent, f"baseline/{obj}", v)
        runs.set_tags(parent, {"baseline.trial": base["number"], "baseline.label": base["label"]})
    elif summary["best"]:
        runs.set_tags(parent, {"pareto.trials": ",".join(str(b["number"]) for b in summary["best"])})
    runs.set_tags(parent, {"plots": ",".join(made)})


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.sweep.report --storage URL --study NAME [-o report.html]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m experiments.sweep.report", description="Write a study's HTML report.")
    p.add_argument("--storage", required=True, help="the study's Optuna storage URL, e.g. sqlite:///optuna.db")
    p.add_argument("--study", required=True, help="the study name (hydra.sweeper.study_name)")
    p.add_argument("--tracking-uri", help="MLflow store or server of the trials' runs (learning curves)")
    p.add_argument("-o", "--output", default="report.html")
    p.add_argument("--config-dir", default=str(Path(__file__).resolve().parents[2] / "conf"))
    args = p.parse_args(argv)
    from experiments.sweep.retrain import config_composer
    from experiments.sweep.study import load_study_or_error

    study = load_study_or_error(args.study, args.storage)
    objectives = study.user_attrs.get("objectives") or [f"objective {i}" for i in range(len(study.directions))]
    compose = config_composer(args.config_dir, searchpath=study.user_attrs.get("searchpath") or ())
    summary = study_summary(study, list(objectives), compose)
    runs = None
    if args.tracking_uri:
        from experiments.tracking import RunReader

        runs = RunReader(args.tracking_uri)
    print(write_report(Path(args.output), study, summary, compose=compose, runs=runs))
    return 0


if __name__ == "__main__":
    from experiments.cli import user_errors

    raise SystemExit(user_errors(main)())


def write_optimization_results(study, sweep_dir: Path) -> dict | None:
    """``optimization_results.yaml`` in the sweep directory, as Hydra's Optuna sweeper writes
    it: the best params and value, or the Pareto solutions of a multi-objective study."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    front = st_best_trials(study)
    if not front:  # (only a baseline over the budget completed)
        return None
    if len(study.directions) == 1:
        results = {"name": "optuna", "best_params": _params(front[0]), "best_value": front[0].value}
    else:
        results = {"name": "optuna", "solutions": [{"params": _params(t), "values": list(t.values)} for t in front]}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
    return results


def _params(trial) -> dict:
    """The trial's params as override values (list choices are stored JSON-encoded)."""
    out = {}
    for key, value in trial.params.items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out
