"""SIGTERM and SIGHUP end a command like Ctrl-C.

SLURM, ``docker stop`` and Kubernetes stop a job with SIGTERM, a closed terminal sends SIGHUP;
Python's default for both is to die at once, leaving MLflow runs RUNNING and Optuna trials
unfinished. Inside :func:`terminate_as_interrupt` the first of them raises
:class:`Terminated` (a ``KeyboardInterrupt``) in the main thread, so every path that already
ends a run cleanly on Ctrl-C (the run KILLED with a reason, pending metrics flushed, a sweep's
trials told and their runs KILLED) does so for them too; a second signal exits at once.
Signal handlers are process-wide: they are set here only, by the commands' entry points.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal killed


def interruption_reason(err: BaseException) -> str:
    """The ``failure_reason`` of a run that ``err`` interrupted."""
    return str(err) if isinstance(err, Terminated) else "interrupted (KeyboardInterrupt)"


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise :class:`Terminated` in the main thread (once;
    a second signal ends the process at once). Outside the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, frame):
        if received:
            os._exit(128 + signum)  # the second one: no more clean-up
        received.append(signum)
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def ignore_termination() -> None:
    """For a sweep's worker processes: the sweeper, told by the same signal, ends their
    trials in Optuna and MLflow and then stops them."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
