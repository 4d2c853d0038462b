"""One self-contained HTML page per study: what a reviewer looks at after a sweep.

Sections: the best architectures (with a stage diagram each), the Pareto front (the study's
objectives, or the first objective against MACs for a single-objective study), the parameter
importances, the learning curves of the top trials and the table of every trial. Charts are
PNG images embedded in the page, so the file opens anywhere: from the parent MLflow run's
artifacts, the sweep directory, or ``python -m experiments.sweep.report``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from optuna.study import StudyDirection
from optuna.trial import TrialState

from experiments.sweep.selection import fmt_se, is_accuracy
from experiments.sweep.study import best_trials

TOP_TRIALS = 5
MIN_IMPORTANCE_TRIALS = 4  # importance estimates from fewer trials rank parameters by chance


@dataclass
class ReportInputs:
    """What the page needs besides the study: per-trial specs and learning curves."""

    specs: Mapping[int, object] = field(default_factory=dict)  # trial number -> ResNetSpec
    curves: Mapping[int, Mapping[str, Sequence[tuple[int, float]]]] = field(default_factory=dict)
    curve_source: str = "Optuna intermediate values"
    commands: dict[int, str] = field(default_factory=dict)  # trial number -> its retrain command


# -- pieces -------------------------------------------------------------------------------
def _esc(value) -> str:
    return html.escape(str(value))


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return _esc(value)


def _values(summary: dict, row: dict) -> list[str]:
    """A row's objective values as text; the accuracy objective as ``p ± se`` when known."""
    objectives = summary["objectives"]
    se_of = summary.get("se_of")
    out = []
    for o, v in zip(objectives, row["values"] or [None] * len(objectives)):
        se = row.get("se") if o == se_of else None
        out.append(_fmt(v) if v is None or se is None else _esc(fmt_se(v, se)))
    return out


TIE = "<span class='tie' title='within noise of the best accuracy'>≈</span>"


def _tie(row: dict) -> str:
    return f" {TIE}" if row.get("tied_with_best") else ""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _figure(w: float = 7.5, h: float = 4.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def stage_diagram(spec) -> str:
    """An inline SVG: input, stem, one column of block boxes per stage (height ~ width), head."""
    stages = list(spec.stages)
    sizes = spec.feature_sizes()[1:]  # [0] is after the stem
    widths = [spec.stage_width(s) for s in stages]
    top = max(widths + [spec.stem.width])
    scale = lambda w: 18 + 62 * math.log2(1 + w) / math.log2(1 + top)  # noqa: E731
    box_w, gap, x, parts = 9, 3, 8, []
    mid = 60

    def label(cx: float, lines: Sequence[str]) -> None:
        for i, text in enumerate(lines):
            parts.append(f'<text x="{cx:.0f}" y="{112 + 12 * i}" text-anchor="middle">{_esc(text)}</text>')

    # Each column is at least as wide as its two-line label, so labels never overlap.
    h, w, c = spec.input_shape
    parts.append(f'<rect x="{x + 13}" y="{mid - 15}" width="34" height="30" class="io"/>')
    label(x + 30, ["input", f"{h}x{w}x{c}"])
    x += 70
    sh = scale(spec.stem.width)
    parts.append(f'<rect x="{x + 24}" y="{mid - sh / 2:.0f}" width="22" height="{sh:.0f}" class="stem"/>')
    label(x + 35, ["stem", f"{spec.stem.kind}, {spec.stem.width} ch"])
    x += 80
    for i, (stage, width, (fh, fw)) in enumerate(zip(stages, widths, sizes)):
        bh = scale(width)
        blocks = stage.depth * (box_w + gap) - gap
        span = max(blocks, 130)
        bx = x + (span - blocks) / 2
        for _ in range(stage.depth):
            parts.append(f'<rect x="{bx:.0f}" y="{mid - bh / 2:.0f}" width="{box_w}" height="{bh:.0f}" class="block"/>')
            bx += box_w + gap
        label(x + span / 2, [f"stage {i + 1}: {stage.depth}x {stage.block}", f"{width} ch, /{stage.stride}, {fh}x{fw}"])
        x += span + 12
    parts.append(f'<rect x="{x + 13}" y="{mid - 15}" width="34" height="30" class="io"/>')
    label(x + 30, ["head", f"{spec.num_classes} classes"])
    x += 30
    width_px = x + 60
    return (
        f'<svg class="arch" width="{width_px}" height="140" viewBox="0 0 {width_px} 140" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def pareto_front(points: Sequence[tuple[int, float, float]], maximize: tuple[bool, bool]) -> list[int]:
    """Trial numbers not dominated by another point (each point: number, objective a, objective b)."""
    sign = [1 if m else -1 for m in maximize]
    front = []
    for n, a, b in points:
        dominated = any(
            sign[0] * a2 >= sign[0] * a and sign[1] * b2 >= sign[1] * b and (a2, b2) != (a, b) for _, a2, b2 in points
        )
        if not dominated:
            front.append(n)
    return front


def _trained(study) -> list:
    """Complete trials that trained (a reused duplicate repeats another trial's values)."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and t.values and "duplicate_of" not in t.user_attrs
    ]


def _pareto_section(study, summary) -> str:
    objectives = summary["objectives"]
    done = _trained(study)
    maximize = [d == StudyDirection.MAXIMIZE for d in study.directions]
    if len(objectives) > 1:
        names = objectives[:2]
        pts = [(t.number, t.values[0], t.values[1]) for t in done]
        note = f"the study's first two objectives ({_esc(names[0])}, {_esc(names[1])})"
        flags = (maximize[0], maximize[1])
    else:
        names = [objectives[0], "MACs"]
        pts = [(t.number, t.values[0], float(t.user_attrs["macs"])) for t in done if t.user_attrs.get("macs")]
        note = f"{_esc(names[0])} against the model's MACs (a single-objective study: the cost trade-off)"
        flags = (maximize[0], False)
    if len(pts) < 2:
        return "<p>Needs two or more complete trials.</p>"
    front = pareto_front(pts, flags)
    fig, ax = _figure()
    on = [p for p in pts if p[0] in front]
    off = [p for p in pts if p[0] not in front]
    ax.scatter([p[2] for p in off], [p[1] for p in off], c="#9aa5b1", label="other trials")
    on.sort(key=lambda p: p[2])
    ax.plot([p[2] for p in on], [p[1] for p in on], "o-", c="#d9480f", label="Pareto front")
    for n, a, b in on:
        ax.annotate(f"t{n:02d}", (b, a), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if names[1] == "MACs" or names[1] in ("macs", "params"):
        ax.set_xscale("log")
    ax.set_xlabel(names[1])
    ax.set_ylabel(names[0])
    ax.legend()
    rows = "".join(
        f"<tr><td>t{n:02d}</td><td>{_fmt(a)}</td><td>{_fmt(b)}</td></tr>" for n, a, b in sorted(on, key=lambda p: p[0])
    )
    return (
        f"<p>Pareto front of {note}: {len(front)} of {len(pts)} complete trials.</p>{_png(fig)}"
        f"<table><tr><th>trial</th><th>{_esc(names[0])}</th><th>{_esc(names[1])}</th></tr>{rows}</table>"
    )


def _importance_section(study, summary) -> str:
    import optuna

    done = _trained(study)
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return f"<p>Needs {MIN_IMPORTANCE_TRIALS} or more complete trials (has {len(done)}).</p>"
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, target=target)
    except Exception as err:  # noqa: BLE001 - e.g. fewer than two complete trials, or one value
        return f"<p>Not available: {_esc(err)}</p>"
    if not imp:
        return "<p>No searched parameters varied across complete trials.</p>"
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{v:.3f}</td></tr>" for k, v in imp.items())
    table = f"<table><tr><th>parameter</th><th>importance</th></tr>{rows}</table>"
    if len(imp) > 1 and max(imp.values()) - min(imp.values()) < 1e-9:
        same = len({t.values[0] for t in done}) == 1
        why = (
            f"every complete trial has the same {_esc(summary['objectives'][0])}" if same else "no parameter stands out"
        )
        return f"<p>The importances tie (all equal): {why}, so they rank nothing.</p>{table}"
    fig, ax = _figure(7.5, 0.5 + 0.45 * len(imp))
    keys = list(imp)[::-1]
    ax.barh(keys, [imp[k] for k in keys], color="#1c7ed6")
    ax.set_xlabel(f"importance for {summary['objectives'][0]} (PED-ANOVA, Optuna 5's default)")
    return f"{_png(fig)}{table}"


def _curves_section(top: Sequence[int], inputs: ReportInputs, arch: Mapping[int, str]) -> str:
    from matplotlib.ticker import MaxNLocator

    with_data = [n for n in top if inputs.curves.get(n)]
    if not with_data:
        return "<p>No per-epoch values were recorded.</p>"
    metrics = list(dict.fromkeys(k for n in with_data for k in inputs.curves[n]))
    out = [f"<p>Per epoch, from {_esc(inputs.curve_source)}.</p>"]
    for metric in metrics:
        fig, ax = _figure(7.5, 3.6)
        for n in with_data:
            pts = inputs.curves[n].get(metric)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=f"t{n:02d} {arch.get(n) or ''}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        out.append(f"<h3>{_esc(metric)}</h3>{_png(fig)}")
    return "".join(out)


def top_trials(study, n: int = TOP_TRIALS) -> list[int]:
    """The best complete trials: by the first objective, or the Pareto set first when multi-objective."""
    done = _trained(study)
    sign = -1 if study.directions[0] == StudyDirection.MAXIMIZE else 1
    ranked = sorted(done, key=lambda t: sign * t.values[0])
    if len(study.directions) > 1:
        pareto = {t.number for t in best_trials(study) if "duplicate_of" not in t.user_attrs}
        ranked = [t for t in ranked if t.number in pareto] + [t for t in ranked if t.number not in pareto]
    return [t.number for t in ranked[:n]]


# -- the page -------------------------------------------------------------------------------
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#212529;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #dee2e6}
h3{font-size:15px} table{border-collapse:collapse;margin:8px 0} td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top} th{background:#f1f3f5} code{font-size:12px;word-break:break-all}
.card{border:1px solid #dee2e6;border-radius:6px;padding:10px 14px;margin:12px 0} .muted{color:#868e96}
svg.arch text{font-size:10px;fill:#343a40} svg.arch .block{fill:#4dabf7;stroke:#1864ab}
svg.arch .stem{fill:#ffd43b;stroke:#e67700} svg.arch .io{fill:#e9ecef;stroke:#868e96} img{max-width:100%}
.COMPLETE{color:#2b8a3e} .PRUNED{color:#e67700} .FAIL{color:#c92a2a}
.warn{background:#fff3bf;border:1px solid #fcc419;border-radius:6px;padding:8px 12px} .tie{color:#e67700}
"""


def _noise_note(summary: dict) -> str:
    """What the ± and ≈ marks mean, or why they are missing."""
    se_of = summary.get("se_of")
    if se_of:
        return (
            f"<p class='muted'>{_esc(se_of)} is shown ± its standard error on n_val={summary['num_val']:,} "
            f"validation images; {TIE} marks a trial within noise of the best (a two-sided 95% test).</p>"
        )
    if not summary.get("num_val") and any(is_accuracy(o) for o in summary["objectives"]):
        return "<p class='muted'>No standard errors: the study does not record its validation size (num_val).</p>"
    return ""


def _versus(r: dict, *, bare: bool = False) -> str:
    """A trial's difference to the best baseline (``+0.012 ± 0.008``), or nothing."""
    d, se = r.get("vs_baseline"), r.get("vs_baseline_se")
    if d is None:
        return "" if not bare else "-"
    text = f"{d:+.4f}" + (f" ± {se:.4f}" if se is not None else "")
    return text if bare else f" ({text} vs the best baseline)"


def _baseline_note(summary: dict) -> str:
    base = summary.get("baseline")
    if not base:
        return "<p class='muted'>No baseline trial completed: trials are ranked against each other only.</p>"
    values = ", ".join(f"{_esc(o)} = {v:.4g}" for o, v in zip(summary["objectives"], base["values"]))
    return (
        f"<p><b>Baseline</b> t{base['number']:02d} ({_esc(base['label'])}: what the run config trains without "
        f"the sweep): {values}. Each trial is shown against it; <code>finalize</code> retrains both with "
        "several seeds and gives the verdict.</p>"
    )


def render(study, summary: dict, inputs: ReportInputs | None = None) -> str:
    """The report page as one HTML string."""
    from experiments.sweep.retrain import retrain_command

    inputs = inputs or ReportInputs()
    objectives = summary["objectives"]
    rows = {r["number"]: r for r in summary["trials"]}
    arch = {n: r.get("arch") for n, r in rows.items()}
    top = top_trials(study)
    counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(summary["counts"].items()))
    directions = ", ".join(
        f"{o} ({'max' if d == StudyDirection.MAXIMIZE else 'min'})" for o, d in zip(objectives, study.directions)
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(summary['study_name'])}: sweep report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Study <code>{_esc(summary['study_name'])}</code></h1>",
        f"<p class='muted'>{len(rows)} trials ({counts}); objectives: {_esc(directions)}; "
        f"report written {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.</p>",
        *(f"<p class='warn'><b>Warning:</b> {_esc(w)}</p>" for w in summary.get("warnings") or []),
        _noise_note(summary),
        _baseline_note(summary),
        "<h2>Best architectures</h2>",
    ]
    if not top:
        parts.append("<p>No trial completed.</p>")
    for rank, n in enumerate(top, 1):
        r = rows[n]
        values = ", ".join(f"{_esc(o)} = {v}" for o, v in zip(objectives, _values(summary, r)))
        spec = inputs.specs.get(n)
        diagram = stage_diagram(spec) if spec is not None else "<p class='muted'>(no spec)</p>"
        parts.append(
            f"<div class='card'><h3>#{rank}: t{n:02d} {_esc(r.get('arch') or '')}{_tie(r)}</h3>"
            f"<p>{values}{_versus(r)}; params {_fmt(r.get('params'))}; MACs {_fmt(r.get('macs'))}; "
            f"{_fmt(r.get('duration_s'))} s</p>{diagram}"
            f"<p>retrain: <code>{_esc(inputs.commands.get(n) or retrain_command(r.get('overrides') or []))}</code></p></div>"
        )
    parts += ["<h2>Pareto front</h2>", _pareto_section(study, summary)]
    parts += ["<h2>Parameter importances</h2>", _importance_section(study, summary)]
    parts += ["<h2>Learning curves of the top trials</h2>", _curves_section(top, inputs, arch)]
    head = "".join(f"<th>{_esc(o)}</th>" for o in objectives)
    if summary.get("baseline"):
        head += f"<th>{_esc(objectives[0])} vs baseline</th>"
    body = []
    for n, r in sorted(rows.items()):
        vals = "".join(f"<td>{v}</td>" for v in _values(summary, r))
        if summary.get("baseline"):
            vals += f"<td>{_versus(r, bare=True)}</td>"
        dup = r.get("duplicate_of")
        note = (
            r.get("rejected")
            or r.get("fail_reason")
            or (f"same as t{dup:02d}: values reused" if dup is not None else "")
        )
        body.append(
            f"<tr><td>t{n:02d}{_tie(r)}</td><td class='{r['state']}'>{r['state']}</td>{vals}<td>{_esc(r.get('arch') or '')}</td>"
            f"<td>{_fmt(r.get('params'))}</td><td>{_fmt(r.get('macs'))}</td><td>{_fmt(r.get('duration_s'))}</td>"
            f"<td>{_esc(note)}</td></tr>"
        )
    parts.append(
        "<h2>All trials</h2><table><tr><th>trial</th><th>state</th>"
        f"{head}<th>architecture</th><th>params</th><th>MACs</th><th>s</th><th>note</th></tr>{''.join(body)}</table>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
