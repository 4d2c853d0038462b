"""How the sweep engine runs its jobs: one protocol, two executors.

The engine submits a :class:`Job` (its overrides, and for a trial function its ticket), gets
a future of Hydra's ``JobReturn``, and asks the executor which futures are done. Any Hydra
launcher runs jobs in batches through ``launch``; our process pool keeps them in flight, sets
the next ones up while others train, and replaces grown workers between jobs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from experiments.sweep.live import run_without_console
from experiments.sweep.ticket import TrialTicket, hydra_job


@dataclass
class Job:
    """One trial's job, as the engine hands it over."""

    overrides: list[str]
    ticket: TrialTicket | None = None  # None: a plain task, which gets its config only
    composed: Any = None  # the job's config, when the sweeper composed it already (to vet it)


class Executor(Protocol):
    capacity: int  # jobs in flight at most
    live: bool  # the loop runs while jobs do (a live board can follow them)

    def preload(self) -> None:
        """Start what takes long and needs nothing (imports), while the sweeper checks its settings."""

    def start(self, warm_up: dict[str, Any] | None) -> None:
        """Services are reachable: get ready for the first job (``warm_up``: what every job will
        open and load, passed to the workers; None: nothing to warm up)."""

    def submit(self, job: Job) -> Future:
        """Start (or queue) ``job``; the future gives its ``JobReturn``."""

    def collect(self, futures: Collection[Future], timeout: float | None = None) -> set[Future]:
        """Wait until at least one of ``futures`` is done (or ``timeout``); return the done ones."""

    def between_jobs(self, idle: bool) -> bool:
        """Maintenance between jobs; False: submit nothing until no job runs (``idle``)."""

    def close(self, *, kill: bool = False) -> None:
        """Stop; ``kill``: end running jobs too (the sweep was stopped)."""


def task_for_launcher(task_function: Callable, trial_fn: Callable | None) -> Callable:
    """What a Hydra launcher runs: a trial function that reads its ticket from the job's Hydra
    config, or the app's own task."""
    from experiments.devices import placed

    return placed(hydra_job(trial_fn) if trial_fn is not None else task_function)


@dataclass
class LauncherExecutor:
    """Any Hydra launcher: jobs are queued, then launched as one batch and waited for."""

    launcher: Any
    capacity: int
    job_idx: int = 0
    _queue: list[tuple[Job, Future]] = field(default_factory=list)

    def preload(self) -> None:
        return None

    def start(self, warm_up: dict[str, Any] | None) -> None:
        return None

    def submit(self, job: Job) -> Future:
        future: Future = Future()
        self._queue.append((job, future))
        return future

    live = False  # a batch blocks the loop: the sweep prints lines, no live board

    def collect(self, futures: Collection[Future], timeout: float | None = None) -> set[Future]:
        batch, self._queue = self._queue, []
        if batch:
            overrides = [[*j.overrides, *([j.ticket.hydra_override()] if j.ticket else [])] for j, _ in batch]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(batch)
            for (_, future), ret in zip(batch, returns):
                future.set_result(ret)
        return {f for f in futures if f.done()}

    def between_jobs(self, idle: bool) -> bool:
        return True

    def close(self, *, kill: bool = False) -> None:
        self._queue.clear()


class PoolExecutor:
    """Our process launcher: ``n_jobs`` train, ``prefetch`` more are set up meanwhile, and each
    job gets its ticket and the worker's services as arguments."""

    def __init__(self, pool, trial_fn: Callable | None, n_jobs: int, prefetch: int):
        from experiments.sweep.launcher import WORKER_SERVICES

        self.pool, self.trial_fn, self.services = pool, trial_fn, WORKER_SERVICES
        # A plain task has no training slot to wait for: it runs as soon as it has a worker.
        self.prefetch = prefetch if trial_fn is not None else 0
        self.capacity = n_jobs + self.prefetch
        self.pool.set_prefetch(self.prefetch)
        self.job_idx = 0
        self.live = True  # jobs in flight while the loop runs: a live board can follow them
        self.quiet_jobs = False  # set while a live board shows: jobs log to their files only

    def preload(self) -> None:
        self.pool.preload()  # the fork server's imports overlap the sweeper's checks

    def start(self, warm_up: dict[str, Any] | None) -> None:
        if warm_up is not None:  # the workers start up while the sweeper sets the study up
            self.pool.warm_up(**warm_up)

    def submit(self, job: Job) -> Future:
        task = None
        if job.ticket is not None:
            task = functools.partial(self.trial_fn, ticket=job.ticket, services=self.services)
        if self.quiet_jobs:
            task = functools.partial(run_without_console, task or self.pool.task_function)
        future = self.pool.submit(job.overrides, self.job_idx, task_function=task, composed=job.composed)
        self.job_idx += 1
        return future

    def collect(self, futures: Collection[Future], timeout: float | None = None) -> set[Future]:
        done, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return set(done)

    def between_jobs(self, idle: bool) -> bool:
        if not self.pool.recycle_due():
            return True
        if idle:
            self.pool.recycle()  # no job runs now: replace the grown workers
            return True
        return False

    def close(self, *, kill: bool = False) -> None:
        # Stopped: idle workers too (exiting would wait for their imports). Done: the workers
        # exit while the report is made.
        if kill:
            self.pool.close(kill=True)
        else:
            self.pool.close(wait=False)


def make_executor(launcher, trial_fn: Callable | None, n_jobs: int, prefetch: int) -> Executor:
    """The launcher's own executor when it offers one (``sweep_executor``: our process
    launcher), else a batch executor on Hydra's ``launch``. (Not an isinstance check: Hydra's
    plugin scan may load the launcher's module twice, making two classes of one name.)"""
    own = getattr(launcher, "sweep_executor", None)
    if own is not None:
        return own(trial_fn, n_jobs, prefetch)
    return LauncherExecutor(launcher, capacity=n_jobs)
