"""The study summary: best trial(s), a table of all trials, Optuna's plots -> parent run."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

from omegaconf import OmegaConf
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def study_summary(study, objectives: list[str]) -> dict:
    from experiments.sweep.sweeper import ARCH_ATTR, OVERRIDES_ATTR, retrain_command

    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    rows = []
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "values": list(t.values) if t.values else None,
                "arch": t.user_attrs.get(ARCH_ATTR),
                "params": t.user_attrs.get("params"),
                "macs": t.user_attrs.get("macs"),
                "rejected": t.user_attrs.get("rejected"),
                "fail_reason": t.user_attrs.get("fail_reason"),
                "overrides": t.user_attrs.get(OVERRIDES_ATTR, []),
                "duration_s": t.duration.total_seconds() if t.duration else None,
                "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            }
        )
    best = []
    if any(t.state == TrialState.COMPLETE for t in trials):
        chosen = [study.best_trial] if len(study.directions) == 1 else study.best_trials
        for t in chosen:
            overrides = t.user_attrs.get(OVERRIDES_ATTR, [])
            best.append(
                {
                    "number": t.number,
                    "values": list(t.values),
                    "params": dict(t.params),
                    "arch": t.user_attrs.get(ARCH_ATTR),
                    "overrides": overrides,
                    "command": retrain_command(overrides),
                }
            )
    return {"study_name": study.study_name, "objectives": objectives, "counts": counts, "best": best, "trials": rows}


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


def log_summary(runs, parent: str, study, summary: dict, *, compose) -> None:
    """Log the summary, trials table, best config(s) and plots to the parent run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        df = study.trials_dataframe()
        df.to_csv(out / "trials.csv", index=False)
        for _i, b in enumerate(summary["best"]):
            suffix = "" if len(summary["best"]) == 1 else f"_t{b['number']:02d}"
            try:
                cfg = compose(b["overrides"])
                text = OmegaConf.to_yaml({k: v for k, v in cfg.items() if k not in ("hydra", "trial")}, resolve=True)
            except Exception as err:  # noqa: BLE001
                text = f"# could not compose: {err}\n"
            (out / f"best_config{suffix}.yaml").write_text(f"# {b['command']}\n{text}")
        if len(study.directions) > 1:
            (out / "pareto_front.json").write_text(json.dumps(summary["best"], indent=2))
        plots = out / "plots"
        plots.mkdir()
        made = _plots(study, summary["objectives"], plots)
        runs.log_artifacts(parent, out)
    counts = summary["counts"]
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        runs.log_metric(parent, f"trials/{state.lower()}", counts.get(state, 0))
    if len(summary["best"]) == 1:
        b = summary["best"][0]
        for obj, v in zip(summary["objectives"], b["values"]):
            runs.log_metric(parent, f"best/{obj}", v)
        runs.set_tags(parent, {"best.trial": b["number"], "best.arch": b.get("arch") or ""})
    elif summary["best"]:
        runs.set_tags(parent, {"pareto.trials": ",".join(str(b["number"]) for b in summary["best"])})
    runs.set_tags(parent, {"plots": ",".join(made)})
