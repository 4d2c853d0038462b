"""The sweep loop: ask the study for a trial, hand its job to the executor, tell the result.

Each trial flows one way: the engine asks for it, the layer (ResNet or plain task) turns it
into a :class:`~experiments.sweep.executor.Job` or records why not, the executor runs the job,
and its result comes back once, to :class:`~experiments.sweep.records.Recorder`. Up to the
executor's capacity are in flight: each finished trial is told at once and the next asked,
so no worker waits for another's slowest trial.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from experiments.cli import RunFailure
from experiments.overrides import format_override
from experiments.signals import interruption_reason
from experiments.sweep import study as st
from experiments.sweep.baselines import BASELINE_OVERRIDES_ATTR, trial_label
from experiments.sweep.internals import frozen, stale_trial_ids, storage_of, trial_id
from experiments.sweep.live import Flight
from experiments.sweep.records import Book, Recorder
from experiments.sweep.space import Param, sample
from experiments.sweep.trial_checkpoints import interrupted_to_retry


class SweepAborted(RunFailure):
    """Too many trials failed: the sweep stops with the reason."""


@dataclass
class SweepRun:
    """One invocation of the sweep: its study and what each trial is sampled from."""

    study: Any
    storage: Any
    params: list[Param]
    fixed: list[str]
    hook: Any  # the conditional search space (experiments.sweep.space.search_space_hook)
    monitor: str | None  # the metric jobs report for pruning (None for a plain task)
    objectives: list[str]


class Engine:
    """Runs trials until ``n_trials`` are done in total (with other workers), or a stop."""

    def __init__(self, conf, run: SweepRun, executor, layer, recorder: Recorder):
        self.conf, self.run, self.executor, self.layer, self.recorder = conf, run, executor, layer, recorder
        self.live: set[int] = set()  # trials this process has in flight
        self.started = time.monotonic()

    def loop(self) -> None:
        study, progress, executor = self.run.study, self.recorder.progress, self.executor
        in_flight: dict[Future, Any] = {}
        stop: str | None = None
        aborted: SweepAborted | None = None
        try:
            while True:
                ready = executor.between_jobs(idle=not in_flight)
                if stop is None and ready and len(in_flight) < executor.capacity:
                    try:  # one at a time: each trial is submitted before the next is even sampled
                        stop, asked = self._ask()
                    except SweepAborted as err:  # the trials in flight still finish and are told
                        aborted, stop, asked = err, str(err), []
                    if stop and not aborted:
                        progress.note(stop)
                    for trial in asked:
                        if (p := self._prepare(trial)) is not None:
                            progress.running(trial.number, p.arch, p.values)
                            in_flight[executor.submit(p.job)] = p
                    self._in_flight(in_flight)
                    if asked and len(in_flight) < executor.capacity:
                        continue  # some were rejected or reused: ask for more before waiting
                    if stop is None and not asked and not in_flight:
                        time.sleep(2)  # other workers are running the last trials: wait for them
                        self.reconcile()
                        continue
                if not in_flight:
                    if aborted is not None:
                        raise aborted
                    if stop is not None:
                        executor.close()
                        break
                    continue
                # (With a live board, wake twice a second to redraw the trials' epochs.)
                for future in executor.collect(in_flight, timeout=0.5 if progress.board else None):
                    self.recorder.launched(in_flight.pop(future), future.result())
                self._in_flight(in_flight)
        except BaseException as err:
            executor.close(kill=True)
            if in_flight:  # interrupted, or a bug: the trials in flight end FAIL
                reason = interruption_reason(err) if isinstance(err, KeyboardInterrupt) else f"sweep stopped: {err}"
                self.recorder.stopped(list(in_flight.values()), reason)
                self.live = set()
                self.reconcile(retry_interrupted=False)  # their MLflow runs end KILLED; retried on resume
            raise
        finally:
            self.live = set()
        _check_some_finished(study)
        if self.recorder.book.lost is not None:
            raise SweepAborted(tracking_lost_line(self.recorder.book, study, self.conf.storage))

    def _in_flight(self, in_flight: dict) -> None:
        self.live = {p.trial.number for p in in_flight.values()}
        flights = [Flight(p.trial.number, p.arch) for p in in_flight.values()]
        self.recorder.progress.flying(flights, self.run.study)

    def _ask(self) -> tuple[str | None, list]:
        """A new trial, or why the sweep stops ("" once n_trials are done)."""
        c, study = self.conf, self.run.study
        with st.study_lock(self.run.storage, c.study_name):  # count + ask atomically across workers
            trials = study.get_trials(deepcopy=False)
            done = st.counted(trials, rejected=st.counts_rejected(c))  # (rejections take no trial's place)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if len(done) >= c.n_trials:
                return "", []
            if self.recorder.book.lost is not None:
                return "the MLflow tracking store stopped answering: no new trials", []
            if stop := st.too_many_rejected(trials, c.n_trials):
                return stop, []
            if c.epoch_budget and epochs_used(trials) >= c.epoch_budget:
                return f"epoch budget of {c.epoch_budget} reached ({epochs_used(trials)} epochs trained)", []
            if c.timeout and time.monotonic() - self.started > c.timeout:
                return f"timeout of {c.timeout:g} s reached", []
            self._check_failure_rate(done)
            if c.n_trials - len(done) - len(running) <= 0:
                return None, []
            with warnings.catch_warnings():  # our Heartbeats thread beats for asked trials
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                trial = study.ask()
            self.recorder.heartbeats.add(trial_id(trial))
        return None, [trial]

    def _prepare(self, trial):
        """Sample ``trial``; reuse an identical finished trial, or let the layer make its job."""
        r = self.run
        retry_of = st.retried_from(frozen(r.study, trial))
        # A baseline's searched values were enqueued with it; a conditional hook is not asked
        # (the baseline's own config says what the hook would choose).
        baseline = trial.user_attrs.get(BASELINE_OVERRIDES_ATTR) if trial_label(trial) is not None else None
        values = sample(trial, r.params, r.hook if baseline is None else None)
        overrides = [*r.fixed, *(baseline or ()), *(format_override(k, v) for k, v in values.items())]
        trial.set_user_attr(st.OVERRIDES_ATTR, overrides)
        if self.conf.reuse_duplicates and self.recorder.reuse_duplicate(trial, values, overrides):
            return None
        return self.layer.prepare(trial, values, overrides, retry_of)

    def reconcile(self, retry_interrupted: bool = True) -> None:
        """Fail trials whose worker died; mark their MLflow runs KILLED; retry them.

        Trials a signal stopped are retried too, except by the sweep that is stopping: it
        leaves its study with no trial waiting, and the sweep that resumes it retries them.
        """
        c, study = self.conf, self.run.study
        if c.heartbeat_interval:
            grace = c.grace_period or 3 * c.heartbeat_interval
            for tid in stale_trial_ids(study):  # why, recorded while they still run
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    storage_of(study).set_trial_user_attr(
                        tid, st.FAIL_REASON_ATTR, f"worker died (no heartbeat for {grace} s)"
                    )
            with st.quiet_experimental():
                optuna.storages.fail_stale_trials(study)
        elif st.is_sqlite(c.storage) and not c.allow_sqlite_parallel:
            # One worker only: any RUNNING trial is left over from a process that died.
            retry = st.RetryStaleTrial(c.max_retry)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number in self.live:
                    continue
                storage_of(study).set_trial_user_attr(  # (before FAIL: a finished trial takes no attrs)
                    trial_id(t), st.FAIL_REASON_ATTR, "worker died (found RUNNING on resume)"
                )
                storage_of(study).set_trial_state_values(trial_id(t), TrialState.FAIL)
                retry(study, frozen(study, t))
        stopped = study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if retry_interrupted else []
        for t in interrupted_to_retry(stopped):
            st.RetryStaleTrial(c.max_retry)(study, t)  # stopped by a signal: tried again, from its checkpoint
        self.recorder.book.reconcile(study)

    def reached_total(self) -> bool:
        """``n_trials`` trials are done, none is running or waiting to be retried."""
        trials = self.run.study.get_trials(deepcopy=False)
        if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
            return False
        return len(st.counted(trials, rejected=st.counts_rejected(self.conf))) >= self.conf.n_trials

    def _check_failure_rate(self, done) -> None:
        c = self.conf
        failed = [t for t in done if t.state == TrialState.FAIL]
        # max_failure_rate 0 (as in Hydra's Optuna sweeper example): the first failure stops it.
        enough = len(done) >= c.min_trials_for_failure_rate or c.max_failure_rate == 0
        if enough and failed and len(failed) / len(done) > c.max_failure_rate:
            last = failed[-1].user_attrs.get(st.FAIL_REASON_ATTR, "unknown")
            raise SweepAborted(
                f"sweep aborted: {len(failed)} of {len(done)} finished trials failed "
                f"({len(failed) / len(done):.0%} > hydra.sweeper.max_failure_rate={c.max_failure_rate:g}); "
                f"last failure: {last}"
            )


def tracking_lost_line(book: Book, study, storage_url: str | None) -> str:
    """The one line a sweep ends with when its tracking store was lost: what is kept where,
    and how MLflow catches up."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    local = sorted({str(Path(d).parent) for t in trials if (d := t.user_attrs.get(st.LOCAL_DIR_ATTR))})
    text = str(book.lost).strip()
    if " failed " in text and "; the run finished" in text:  # a trial's StoreLost: its cause only
        text = text.split(" failed ", 1)[1].split("; the run finished", 1)[0]
    return (
        f"tracking.tracking_uri: the MLflow tracking store {book.where!r} stopped answering "
        f"({text.splitlines()[0][:160] if text else type(book.lost).__name__}); the sweep stopped with "
        f"{len(done)} complete trial(s) in study {study.study_name!r}"
        + (f" ({storage_url})" if storage_url else "")
        + (f", the records of those it could not log in {', '.join(local)}" if local else "")
        + "; once the store answers, the same command brings MLflow up to date and goes on"
    )


def _check_some_finished(study) -> None:
    """A sweep whose trials all failed did not do its job: it ends FAILED, exit code 1."""
    done = st.counted(study.get_trials(deepcopy=False))
    failed = [t for t in done if t.state == TrialState.FAIL]
    if done and len(failed) == len(done):
        last = failed[-1].user_attrs.get(st.FAIL_REASON_ATTR, "unknown")
        raise SweepAborted(f"sweep failed: all {len(done)} finished trials failed; last failure: {last}")


def epochs_used(trials) -> int:
    """Epochs trained across ``trials`` (each epoch reports one intermediate value)."""
    return sum(len(t.intermediate_values) for t in trials)
