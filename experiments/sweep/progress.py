"""What a person watching a sweep sees: one line per trial event, a plan table, a summary."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich import box
from rich.console import Console
from rich.markup import escape as esc  # user text (overrides, reasons) is not markup
from rich.table import Table

from experiments.metrics import EPOCH_METRICS
from experiments.sweep.selection import fmt_se

_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


class Progress:
    """Trials done out of the total, the best so far and the current trial."""

    def __init__(self, n_trials: int, objectives: list[str], directions: list[str], *, counts_rejected: bool = True):
        self.n_trials, self.objectives, self.directions = n_trials, objectives, directions
        self.counts_rejected = (
            counts_rejected  # whether a rejected trial counts as done (experiments.sweep.study.counted)
        )
        self.console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        self.done = 0
        self._started, self._done_at_start = time.monotonic(), 0
        self.board = None  # experiments.sweep.live.LiveBoard, while one shows

    @contextlib.contextmanager
    def live_board(self, epochs: int | None, monitor: str | None):
        """Show the live board (see :mod:`experiments.sweep.live`) for the block's duration."""
        from experiments.sweep.live import LiveBoard

        with LiveBoard(self.console, self.n_trials, self.done, epochs, monitor) as board:
            self.board = board
            try:
                yield board
            finally:
                self.board = None

    def flying(self, flights, study) -> None:
        """The trials in flight changed (or time passed): redraw the board, if one shows."""
        if self.board is not None:
            self.board.update(flights, study)

    def _count_done(self) -> None:
        self.done += 1
        if self.board is not None:
            self.board.set_done(self.done)

    def start(self, study_name: str, done: int, storage: str) -> None:
        self.done = done
        self._started, self._done_at_start = time.monotonic(), done
        resumed = f", resuming with {done} done" if done else ""
        self.console.rule(f"[bold]sweep {study_name}[/]: {self.n_trials} trials{resumed} ({storage})")

    def count(self) -> str:
        """``[■■■■□□□□□□ 5/12, 1:23, ETA 1:56]``: trials done, elapsed time, and the time left
        at this invocation's pace so far."""
        width = 10
        filled = min(width, round(width * self.done / max(1, self.n_trials)))
        elapsed = time.monotonic() - self._started
        here = self.done - self._done_at_start
        eta = (
            f", ETA {_clock(elapsed / here * (self.n_trials - self.done))}"
            if here and self.done < self.n_trials
            else ""
        )
        return f"[{'■' * filled}{'□' * (width - filled)} {self.done}/{self.n_trials}, {_clock(elapsed)}{eta}]"

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{esc(text)}[/]")

    def running(self, number: int, arch: str, values: dict[str, Any]) -> None:
        params = esc(" ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in values.items()))
        self.console.rule(
            f"[bold]t{number:02d}[/] [{self.done}/{self.n_trials} done] running {esc(arch)}  [dim]{params}[/]",
            align="left",
        )

    def rejected(self, number: int, arch: str | None, reason: str, repeats: int | None = None) -> None:
        if self.counts_rejected:
            self._count_done()
        again = f", as t{repeats:02d} was" if repeats is not None else ""
        self.console.print(
            f"[yellow]t{number:02d} rejected before training{again}[/] ({esc(arch or 'invalid')}): {esc(reason)}"
            f"  {esc(self.count())}"
        )

    def reused(self, number: int, same: int, arch: str, pruned: bool = False) -> None:
        self._count_done()
        what = "pruned as it was, not retrained" if pruned else "its values reused, not retrained"
        self.console.print(f"[cyan]t{number:02d} repeats t{same:02d}[/] ({esc(arch)}): {what}  {esc(self.count())}")

    def finished(self, trial: FrozenTrial, study) -> None:
        self._count_done()
        state = trial.state.name
        text = f"[{_STYLE.get(state, 'white')}]t{trial.number:02d} {state}[/]"
        if trial.state == TrialState.COMPLETE:
            text += " " + " ".join(f"{_named(o)}={v:.4g}" for o, v in zip(self.objectives, trial.values))
        elif trial.state == TrialState.PRUNED:
            text += f" ({esc(trial.user_attrs.get('pruned_reason', 'pruned'))})"
        else:
            text += f" ({esc(trial.user_attrs.get('fail_reason', ''))})"
        text += f"  {esc(self.count())}"
        best = _best_text(study, self.objectives)
        if best:
            text += f"  best: {esc(best)}"
        self.console.print(text)

    def summary(self, summary: dict) -> None:
        """The trials table (accuracies with their standard errors, ties marked), best trial(s), warnings."""
        # One line per trial at 80 columns: no vertical rules, short states, compact counts.
        versus = summary.get("baseline") is not None
        table = Table(
            title=f"study {summary['study_name']}: " + ", ".join(f"{v} {k}" for k, v in summary["counts"].items()),
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
            padding=0 if versus else (0, 1),  # (one more column: only the box's space between columns)
        )
        se_col = _se_column(summary, self.objectives)
        se_name = None if se_col is None else self.objectives[se_col]
        for col in ("trial", "state", *self.objectives, *(["vs base"] if versus else []), "architecture", "params",
                    "MACs"):  # fmt: skip
            right = col in ("trial", "params", "MACs", "vs base")
            table.add_column(col, justify="right" if right else "left", no_wrap=col in (se_name, "architecture"))
        best_numbers = {b["number"] for b in summary["best"]}
        for row in summary["trials"]:
            values = row["values"] or [None] * len(self.objectives)
            mark = "*" if row["number"] in best_numbers else "≈" if row.get("tied_with_best") else ""
            label = row.get("baseline")  # (a baseline: its state says so, its label is in the caption)
            table.add_row(
                f"{mark}t{row['number']:02d}",
                "rejected"
                if row.get("rejected")
                else "baseline"
                if label and row["state"] == "COMPLETE"
                else row["state"],
                # (beside "vs base", 80 columns hold no per-row standard error: the caption gives them)
                *(_value(v, row.get("se") if i == se_col and not versus else None) for i, v in enumerate(values)),
                *([_versus(row)] if versus else []),
                esc((row.get("arch") or "-").split(" ", 1)[-1] if label else row.get("arch") or "-"),
                _count(row.get("params")),
                _count(row.get("macs")),
            )
        if se_col is not None and versus:
            table.caption = (
                f"{se_name}: standard error {_se_range(summary['trials'], 'se')} on n_val={summary['num_val']:,} "
                "images; * best, ≈ within noise of the best"
            )
        elif se_col is not None:
            table.caption = (
                f"± standard error on n_val={summary['num_val']:,} images; * best, ≈ within noise of the best"
            )
        else:
            table.caption = ""
        labels = [f"t{r['number']:02d} {r['baseline']}" for r in summary["trials"] if r.get("baseline")]
        if labels:
            table.caption = (table.caption + "\n" if table.caption else "") + f"baselines: {', '.join(labels)}"
        if versus:
            base = summary["baseline"]
            table.caption += f"\nvs base: {self.objectives[0]} minus the best baseline's (t{base['number']:02d})"
            if se := _se_range(summary["trials"], "vs_baseline_se"):  # (each trial's: trials.csv, the report)
                table.caption += f", its standard error {se}"
        self.console.print(table)
        for b in summary["best"]:
            self.console.print(
                f"[bold]best t{b['number']:02d}[/] "
                + " ".join(
                    f"{_named(o)}={_value(v, b.get('se') if i == se_col else None)}"
                    for i, (o, v) in enumerate(zip(self.objectives, b["values"]))
                )
            )
            if b.get("vs_baseline") is not None:
                self.console.print(f"  {esc(_verdict_line(b, summary, self.objectives[0]))}")
            self.console.print(f"  retrain: {esc(b['command'])}")
        for text in summary.get("warnings") or []:
            self.console.print(f"[yellow]warning:[/] {esc(text)}")

    def plain_summary(self, study, objectives: list[str], results: dict | None) -> None:
        """A plain task's sweep: how its trials ended and the best params."""
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        self.console.print(f"study {esc(study.study_name)}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        if results and "best_params" in results:
            params = " ".join(f"{k}={_fmt(v)}" for k, v in results["best_params"].items())
            self.console.print(f"best {objectives[0]}={_fmt(results['best_value'])}: {esc(params)}")
        elif results:
            self.console.print(f"Pareto front: {len(results['solutions'])} solution(s) in optimization_results.yaml")

    def report(self, path) -> None:
        self.console.print(f"report: {esc(str(Path(path).resolve()))}")


def _named(objective: str) -> str:
    """An epoch metric objective is its run's best epoch (the model kept): ``best/val/accuracy``."""
    return f"best/{objective}" if objective in EPOCH_METRICS else objective


def _se_range(rows: list[dict], key: str) -> str:
    """The standard errors of ``key`` over the trials, as ``0.011-0.012`` ("" if none)."""
    ses = [r[key] for r in rows if r.get(key) is not None and r.get("values")]
    if not ses:
        return ""
    low, high = f"{min(ses):.3f}", f"{max(ses):.3f}"
    return low if low == high else f"{low}-{high}"


def _versus(row: dict) -> str:
    d = row.get("vs_baseline")
    if d is None:
        return "-"
    return f"{d:+.3f}"  # (its standard error: the caption's range; each trial's in trials.csv and the report)


def _verdict_line(best: dict, summary: dict, objective: str) -> str:
    """What the sweep found against its baseline, in one line (finalize retrains both to decide)."""
    base, d, se = summary["baseline"], best["vs_baseline"], best.get("vs_baseline_se")
    if best["number"] == base["number"]:
        return f"the best trial is the baseline ({base['label']}): no searched trial beat it"
    text = f"vs baseline t{base['number']:02d} ({base['label']}): {objective} {d:+.4f}"
    if se is not None:
        text += f" ± {se:.4f}" + (" (within noise: finalize with seeds to tell)" if abs(d) < 1.96 * se else "")
    return text


def _clock(seconds: float) -> str:
    """1:23, or 1:02:03 past an hour."""
    m, sec = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _count(n: int | None) -> str:
    """12,345,678 -> 12.3M (a table column, not a record: the exact counts are in trials.csv)."""
    if not n:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _se_column(summary: dict, objectives: list[str]) -> int | None:
    """The index of the objective whose standard errors the summary holds, or None."""
    se_of = summary.get("se_of")
    return objectives.index(se_of) if se_of in objectives and summary.get("num_val") else None


def _value(v: float | None, se: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if se is None else fmt_se(v, se)


def _best_text(study, objectives: list[str]) -> str:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return ""
    from experiments.sweep.study import best_trials

    chosen = best_trials(study)
    if not chosen:
        return "none within the constraints yet"
    if len(study.directions) == 1:
        b = chosen[0]
        return f"{objectives[0]}={b.value:.4g} (t{b.number:02d})"
    return f"{len(chosen)} on the Pareto front"


def print_plan(rows) -> None:
    """The dry-run table: each sampled architecture with resolutions, params and MACs."""
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    table = Table(title=f"dry run: {len(rows)} sampled architectures (nothing trained)")
    for col in ("#", "architecture", "resolutions", "params", "MACs", "verdict"):
        table.add_column(col)
    for number, arch, sizes, cost, verdict, _overrides in rows:
        res = " -> ".join(f"{h}x{w}" for h, w in sizes) if sizes else "-"
        table.add_row(
            str(number),
            esc(arch),
            res,
            f"{cost.trainable_params:,}" if cost else "-",
            f"{cost.macs:,}" if cost else "-",
            esc(verdict),
        )
    console.print(table)
    for number, *_, overrides in rows:
        console.print(f"[dim]{number}: {esc(' '.join(overrides))}[/]")
