"""SIGTERM and SIGHUP end a command like Ctrl-C.

SLURM, ``docker stop`` and Kubernetes stop a job with SIGTERM, a closed terminal sends SIGHUP;
Python's default for both is to die at once, leaving MLflow runs RUNNING and Optuna trials
unfinished. Inside :func:`terminate_as_interrupt` the first of them raises
:class:`Terminated` (a ``KeyboardInterrupt``) in the main thread, so every path that already
ends a run cleanly on Ctrl-C (the run KILLED with a reason, pending metrics flushed, a sweep's
trials told and their runs KILLED) does so for them too; a second signal exits at once.
Signal handlers are process-wide: they are set here only, by the commands' entry points.

Ctrl-C (SIGINT) is handled here too, for one reason: Python drops an exception raised while a
garbage-collector callback runs ("Exception ignored in ..."), and TensorFlow 2.21 imports JAX
where it is installed, whose ``_xla_gc_callback`` runs at every collection. An interrupt that
lands there is lost and the run trains on (measured: two Ctrl-C in a row, both lost, the run
FINISHED). Each interrupt is therefore also kept as pending, and training raises it again at
its next batch boundary (:func:`raise_pending`) unless it was delivered.
``tests/faults/test_signals.py`` fails once nothing drops it any more.

A sweep's worker processes (:func:`stop_at_batch_end`) leave ending the trials to the sweeper,
which on a stop first sends each of them SIGTERM: a worker that is training stops at its next
batch boundary (where training writes a stop checkpoint, so the retry loses no batch), one in
a job that is not training stops at once, an idle one waits to be shut down. Ctrl-C, which
reaches the workers too, stops them the same way.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_PENDING: list[KeyboardInterrupt] = []  # interrupts raised by our handlers and not yet delivered
_WORKER = {"in_job": False, "training": False, "stopped": 0}  # a sweep worker's state (see stop_at_batch_end)


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
        raise _pend(Terminated(signum))

    def on_ctrl_c(signum, frame):
        raise _pend(KeyboardInterrupt())

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _PENDING.clear()


def _pend(err: KeyboardInterrupt) -> KeyboardInterrupt:
    _PENDING[:] = [err]
    return err


def raise_pending() -> None:
    """Raise the interrupt a signal raised, if it was dropped (called at batch boundaries)."""
    if _PENDING:
        raise _PENDING.pop()


def delivered() -> None:
    """The pending interrupt reached a handler (a run ended KILLED): nothing to raise again."""
    _PENDING.clear()


def _stop(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def stop_at_batch_end() -> None:
    """For a sweep's worker processes: SIGTERM/SIGHUP/SIGINT stop a training job at its next
    batch boundary (the sweeper, told by the same signal or sending it, ends the trials in
    Optuna and MLflow and then the workers), any other job at once, and every job after it at
    its start. The first signal names the stop: Ctrl-C reaches the terminal's whole process
    group, then the sweeper's own SIGTERM follows, and the trial was interrupted by Ctrl-C."""

    def handler(signum, frame):
        if _WORKER["stopped"]:
            return  # stopping already, for the first signal's reason
        _WORKER["stopped"] = signum
        if not _WORKER["in_job"]:
            return  # idle: the sweeper shuts the worker down
        if _WORKER["training"]:
            _pend(_stop(signum))  # raised by training at its next batch boundary
            return
        raise _pend(_stop(signum))

    for s in (*SIGNALS, signal.SIGINT):
        signal.signal(s, handler)


@contextmanager
def worker_job() -> Iterator[None]:
    """A sweep worker runs a job within the block (one that starts after a stop stops at once)."""
    if _WORKER["stopped"]:
        raise _stop(_WORKER["stopped"])
    _WORKER["in_job"] = True
    try:
        yield
    finally:
        _WORKER["in_job"] = False


@contextmanager
def training() -> Iterator[None]:
    """Training runs within the block: a stop waits for the next batch boundary (in a worker)."""
    _WORKER["training"] = True
    try:
        yield
    finally:
        _WORKER["training"] = False
