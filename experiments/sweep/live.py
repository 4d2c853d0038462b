"""In a terminal, a live board under the sweep's trial lines: a progress bar for the study
(trials done of the total, elapsed, ETA from the trials' pace) and one line per trial in
flight (id, architecture, epoch k/n, its last reported value), redrawn twice a second.

Finished trials still print their line above it, so the scrollback keeps the history. The
workers' own console logging is off while the board shows (each job still logs to its file
in the sweep directory): lines from other processes would tear it. Elsewhere (a pipe, a CI
log) the sweep prints lines only (``hydra.sweeper.live``: null, the default, decides by the
terminal).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass

from optuna.trial import TrialState
from rich.console import Group
from rich.live import Live
from rich.markup import escape as esc
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.table import Table


@dataclass
class Flight:
    """A trial in flight, as the board shows it."""

    number: int
    arch: str


class LiveBoard:
    def __init__(self, console, n_trials: int, done: int, epochs: int | None, monitor: str | None):
        self.console, self.epochs, self.monitor = console, epochs, monitor
        self.bar = Bar(
            TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
        )  # fmt: skip
        self.task = self.bar.add_task("trials", total=n_trials, completed=done)
        self.flights: list[Flight] = []
        self.values: dict[int, dict[int, float]] = {}  # trial -> its reported values by epoch
        self.live = Live(self._render(), console=console, refresh_per_second=2, transient=True, redirect_stderr=False)
        self._streams: list[tuple[logging.StreamHandler, object]] = []

    def __enter__(self) -> LiveBoard:
        self.live.start()
        # This process's console log lines go above the board (through Live's stdout), not through it.
        for h in logging.getLogger().handlers:
            if type(h) is logging.StreamHandler and h.stream is sys.__stdout__:
                self._streams.append((h, h.stream))
                h.setStream(sys.stdout)
        return self

    def __exit__(self, *exc) -> None:
        for h, stream in self._streams:
            h.setStream(stream)
        self.live.stop()

    def set_done(self, done: int) -> None:
        self.bar.update(self.task, completed=done)
        self.live.update(self._render())

    def update(self, flights: list[Flight], study) -> None:
        """Redraw with ``flights`` and what their trials have reported to ``study`` so far."""
        self.flights = flights
        numbers = {f.number for f in flights}
        if numbers and self.monitor:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            self.values = {t.number: dict(t.intermediate_values) for t in running if t.number in numbers}
        self.live.update(self._render())

    def _render(self):
        table = Table.grid(padding=(0, 2))
        for f in self.flights:
            reported = self.values.get(f.number) or {}
            if reported:
                epoch = max(reported)
                of = f"/{self.epochs}" if self.epochs else ""
                state = f"epoch {epoch}{of}  {self.monitor}={reported[epoch]:.4f}"
            else:
                state = "[dim]setting up / first epoch[/]"
            table.add_row(f"[bold]t{f.number:02d}[/]", esc(f.arch), state)
        return Group(self.bar.get_renderable(), table)


def board_or_lines(progress, executor, setting: bool | None, epochs: int | None, monitor: str | None):
    """The live board's context while the loop runs (jobs log to their files only), or a
    context that does nothing: lines only. ``setting``: hydra.sweeper.live (None: by terminal)."""
    live = executor.live and (setting if setting is not None else sys.stdout.isatty())
    executor.quiet_jobs = live
    return progress.live_board(epochs, monitor) if live else contextlib.nullcontext()


def run_without_console(task, cfg):
    """A job's task with its console log handlers silenced (it still logs to its file): its
    lines would tear the sweeper's live board. (Hydra configures a job's logging as it starts.)"""
    for h in logging.getLogger().handlers:
        if type(h) is logging.StreamHandler:
            h.setLevel(logging.CRITICAL + 1)
    return task(cfg)
