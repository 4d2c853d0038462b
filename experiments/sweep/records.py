"""How each trial's end is recorded: told to the study, tagged on its MLflow run, printed.

:class:`Recorder` is the one place a trial of this invocation is told (trained, pruned,
failed, rejected before training, or reusing an identical trial's values). The study's book
of trials (a :class:`Book`: :class:`TrackedBook`, or :class:`NoBook` without tracking) is a
component it calls, as Optuna calls its callbacks: Optuna and MLflow always end a trial in
agreement.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import optuna
from hydra.core.utils import JobStatus
from optuna.trial import TrialState

from experiments.memory import rss_mb
from experiments.sweep import study as st
from experiments.sweep.baselines import VS_BASELINE_ATTR, attribute_before_tell
from experiments.sweep.executor import Job
from experiments.sweep.internals import frozen, job_error, trial_id

log = logging.getLogger("experiments.sweep")


@dataclass
class Pending:
    """A trial asked from the study and about to be launched."""

    trial: optuna.Trial
    values: dict[str, Any]
    arch: str
    job: Job
    spec_key: str = ""  # the resolved architecture (repr of its spec)


@runtime_checkable
class Book(Protocol):
    """The study's book of trials, kept in step with the study: the recorder calls it as each
    trial ends, the engine as it reconciles the study, the sweeper as the sweep ends."""

    parent: str | None  # the study's parent run (None: no runs are kept)
    lost: BaseException | None  # the store's failure, once it stopped answering (no new trials)

    @property
    def where(self) -> str | None:
        """The tracking store the book is kept in (None: none)."""

    def unlaunched(self, trial, values, arch: str, tags: dict, status: str) -> None:
        """A trial that never reached training (before it is told)."""

    def ended(self, told, state: TrialState, reason: str | None) -> None:
        """A launched trial was told ``state``."""

    def reconcile(self, study) -> None:
        """Bring the book in step with the study (trials whose worker died, or that finished
        while the store was lost)."""

    def close(self, study, status: str, reason: str | None, wall_s: float) -> None:
        """This worker's part of the sweep ended after ``wall_s`` seconds."""

    def publish(self, study, summary: dict, compose, report: Path, ending: tuple[str, str | None]) -> str | None:
        """Write the study's report to ``report`` (and keep it with the book), ending the
        study's record with ``ending`` (status, reason); where to review it (None: that file)."""


class NoBook:
    """No tracking: nothing to keep in step with the study."""

    parent: str | None = None
    lost: BaseException | None = None
    where: str | None = None

    def unlaunched(self, trial, values, arch: str, tags: dict, status: str) -> None:
        return None

    def ended(self, told, state: TrialState, reason: str | None) -> None:
        return None

    def reconcile(self, study) -> None:
        return None

    def close(self, study, status: str, reason: str | None, wall_s: float) -> None:
        return None

    def publish(self, study, summary: dict, compose, report: Path, ending: tuple[str, str | None]) -> str | None:
        """The study's report, written to ``report``; where to review it (None: that file)."""
        from experiments.sweep.report import write_report

        write_report(report, study, summary, compose=compose)
        return None


@dataclass
class TrackedBook:
    """The study's MLflow runs: a child run per trial under one parent run per study.

    When the tracking store stops answering (after the bounded retries of
    ``tracking.retry_s``) the book is ``lost``: it makes no more calls, the sweep stops
    launching trials, and the next invocation (the same command, once the store is back)
    brings MLflow up to date from the study and the trials' local records (:meth:`reconcile`)."""

    runs: Any  # experiments.tracking.StudyRuns
    parent: str
    study_name: str
    lost: BaseException | None = None

    @property
    def where(self) -> str:
        return self.runs.tracking_uri

    def _guard(self, fn, *args, **kwargs):
        """``fn(*args)`` unless the store was lost; a store failure marks it lost."""
        from experiments.tracking import unless_store_fails

        if self.lost is not None:
            return None
        return unless_store_fails(fn, *args, on_failure=self._store_lost, **kwargs)

    def _store_lost(self, err: BaseException) -> None:
        from experiments.tracking import first_line

        self.lost = err
        log.warning("tracking.tracking_uri: the MLflow tracking store %r stopped answering (%s); "
                    "no new trials are started", self.where, first_line(err))  # fmt: skip

    def unlaunched(self, trial, values, arch: str, tags: dict, status: str) -> None:
        """A child run for a trial that never reached training (must precede ``tell``)."""
        base = {"sweep.study": self.study_name, "sweep.trial": trial.number, "sweep.role": "trial"}
        run_id = self._guard(self.runs.record_trial_without_training, self.parent, f"t{trial.number:02d} {arch}",
                             dict(values), {**base, **tags}, status=status)  # fmt: skip
        if run_id:
            trial.set_user_attr(st.RUN_ATTR, run_id)

    def ended(self, told, state: TrialState, reason: str | None) -> None:
        """A launched trial was told: its run (opened by the job) gets the study's verdict."""
        if st.TRACKING_LOST_ATTR in told.user_attrs and self.lost is None:
            self.lost = RuntimeError(told.user_attrs[st.TRACKING_LOST_ATTR])  # its job saw it first
        run_id = st.run_of(told)
        if run_id:
            fail = {"sweep.fail_reason": reason} if state == TrialState.FAIL and reason else {}
            versus = (
                {"sweep.vs_baseline": told.user_attrs[VS_BASELINE_ATTR]} if VS_BASELINE_ATTR in told.user_attrs else {}
            )
            self._guard(self.runs.set_tags, run_id, {"sweep.state": state.name, **fail, **versus})

    def reconcile(self, study) -> None:
        """Runs of trials whose worker died end KILLED; finished trials' runs get their state,
        and a failed trial's run its reason (the study's and the run's agree). Trials that
        finished while the store was lost get their runs ended, or made, from their local
        records."""
        trials = study.get_trials(deepcopy=False)
        live = {t.number for t in trials if t.state == TrialState.RUNNING}
        finished = {t.number: t.state.name for t in trials if t.state.is_finished()}
        reasons = {t.number: t.user_attrs[st.FAIL_REASON_ATTR] for t in trials
                   if t.state == TrialState.FAIL and st.FAIL_REASON_ATTR in t.user_attrs}  # fmt: skip
        lost = [t for t in trials if st.TRACKING_LOST_ATTR in t.user_attrs and t.state.is_finished()]
        if lost:
            self._guard(self._catch_up, lost)
        self._guard(self.runs.kill_stale_runs, self.parent, live, finished, reasons)

    def _catch_up(self, trials) -> None:
        recorded = self.runs.trial_runs_by_number(self.parent)
        for t in trials:
            run = recorded.get(t.number)
            if run is not None and run["status"] != "RUNNING":
                continue  # caught up before
            self.runs.catch_up_trial(
                self.parent, run["run_id"] if run else None, f"t{t.number:02d} {t.user_attrs.get(st.ARCH_ATTR, '')}",
                {"sweep.study": self.study_name, "sweep.trial": t.number, "sweep.role": "trial",
                 "sweep.state": t.state.name, "tracking.recovered_from": t.user_attrs.get(st.LOCAL_DIR_ATTR, "")},
                t.user_attrs.get(st.LOCAL_DIR_ATTR), "FAILED" if t.state == TrialState.FAIL else "FINISHED",
            )  # fmt: skip

    def close(self, study, status: str, reason: str | None, wall_s: float) -> None:
        # Step = trials in the study when this worker stopped: the UI charts wall time by trials.
        try:
            done = len(study.get_trials(deepcopy=False))
        except Exception:  # noqa: BLE001 - storage gone; still record the wall time
            done = 0
        self._guard(self.runs.log_metric, self.parent, "sweep/wall_s", wall_s, step=done)

    def publish(self, study, summary: dict, compose, report: Path, ending: tuple[str, str | None]) -> str | None:
        """The summary, report and plots on the parent run (the report also written to
        ``report``), which then ends with ``ending`` (status, reason); its page in the UI.
        With the store lost, the report is written locally only and the parent run is left
        to the next invocation."""
        from experiments.sweep.report import log_summary, write_report
        from experiments.tracking import ui_link

        if self.lost is None:
            try:
                self._guard(log_summary, self.runs, self.parent, study, summary, compose=compose, report_copy=report)
            finally:
                self._guard(self.runs.end, self.parent, *ending)
        if self.lost is not None:
            write_report(report, study, summary, compose=compose)
            return None
        return ui_link(self.where, self.runs.experiment_id, self.parent)


@dataclass
class Recorder:
    """Tells the study how each trial ended, keeps MLflow in step, prints it."""

    study: Any
    book: Book
    progress: Any  # experiments.sweep.progress.Progress
    heartbeats: Any = None  # experiments.sweep.study.Heartbeats, once trials are asked

    def _tell(self, trial, values=None, state=None) -> None:
        if values is not None:
            self.study.tell(trial, values)
        else:
            self.study.tell(trial, state=state)
        if self.heartbeats is not None:
            self.heartbeats.remove(trial_id(trial))

    def reject(
        self, trial, values, reason: str, arch: str | None, *, constraint: float, repeats: int | None = None
    ) -> None:
        """A trial rejected before training: PRUNED in Optuna, a FINISHED child run.
        ``repeats``: the earlier trial whose rejection this one repeats."""
        trial.set_user_attr(st.REJECTED_ATTR, reason)
        trial.set_constraint(st.CONSTRAINT_KEY, float(max(constraint, 1e-6)))
        tags = {"sweep.state": "PRUNED", "sweep.rejected": reason}
        if repeats is not None:
            trial.set_user_attr(st.DUPLICATE_ATTR, repeats)
            tags["sweep.duplicate_of"] = repeats
        self.book.unlaunched(trial, values, arch or "invalid", tags, "FINISHED")
        self._tell(trial, state=TrialState.PRUNED)
        self.progress.rejected(trial.number, arch, reason, repeats)

    def reuse_rejection(self, trial, values, key: str, arch: str | None, *, measured_limit: bool) -> bool:
        """An architecture rejected before (the same ``vet_key``: spec, constraints, memory
        settings), by the sweeper or by a job's build, is rejected again at once with the same
        reason and constraint value. Not a memory rejection when the limit is measured
        (``measured_limit``: ``trainer.max_memory_gb`` null), which another moment may pass."""
        same = next(
            (t for t in self.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
             if t.user_attrs.get(st.VET_KEY_ATTR) == key and st.REJECTED_ATTR in t.user_attrs
             and t.number != trial.number
             and not (measured_limit and t.user_attrs[st.REJECTED_ATTR].startswith(st.MEMORY_REJECTION))),
            None,
        )  # fmt: skip
        if same is None:
            return False
        self.reject(
            trial, values, same.user_attrs[st.REJECTED_ATTR], arch,
            constraint=same.constraints.get(st.CONSTRAINT_KEY, 1.0), repeats=same.number,
        )  # fmt: skip
        return True

    def fail_unlaunched(self, trial, values, reason: str) -> None:
        """A trial whose model could not even be built: FAIL in Optuna, a FAILED child run."""
        trial.set_user_attr(st.FAIL_REASON_ATTR, reason[:2000])
        tags = {"sweep.state": "FAIL", "failure_reason": reason[:5000]}
        self.book.unlaunched(trial, values, trial.user_attrs.get(st.ARCH_ATTR, "failed"), tags, "FAILED")
        self._tell(trial, state=TrialState.FAIL)
        self.progress.finished(frozen(self.study, trial), self.study)

    def reuse_duplicate(self, trial, values, overrides, key: str | None = None) -> bool:
        """Samplers propose an already-trained configuration again (TPE does, in categorical
        spaces): give the trial the earlier trial's values instead of spending epochs on it.
        The same overrides, or (``key``) the same resolved configuration from other overrides.
        A configuration pruned before is pruned again at once, with the epochs it reported (the
        same seed would train the same curve, which the pruner stopped already)."""
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        same = next(
            (t for t in sorted(done, key=lambda t: t.state != TrialState.COMPLETE)  # (a complete one first)
             if t.number != trial.number and st.REJECTED_ATTR not in t.user_attrs
             and (t.user_attrs.get(st.OVERRIDES_ATTR) == overrides
                  or (key is not None and t.user_attrs.get(st.CONFIG_KEY_ATTR) == key))),
            None,
        )  # fmt: skip
        if same is None:
            return False
        if same.state == TrialState.PRUNED:
            return self._reuse_pruned(trial, values, same)
        for key in (st.ARCH_ATTR, "params", "macs"):
            if key in same.user_attrs:
                trial.set_user_attr(key, same.user_attrs[key])
        trial.set_user_attr(st.DUPLICATE_ATTR, same.number)
        for key, value in (same.constraints or {}).items():  # none where the study has none (a plain
            trial.set_constraint(key, value)  # app): CmaEsSampler warns at each trial that has any
        arch = same.user_attrs.get(st.ARCH_ATTR, "")
        self.book.unlaunched(
            trial, values, arch, {"sweep.state": "COMPLETE", "sweep.duplicate_of": same.number}, "FINISHED"
        )
        attribute_before_tell(self.study, trial, list(same.values))
        self._tell(trial, list(same.values))
        self.progress.reused(trial.number, same.number, arch)
        return True

    def _reuse_pruned(self, trial, values, same) -> bool:
        for key in (st.ARCH_ATTR, "params", "macs"):
            if key in same.user_attrs:
                trial.set_user_attr(key, same.user_attrs[key])
        trial.set_user_attr(st.DUPLICATE_ATTR, same.number)
        for key, value in (same.constraints or {}).items():
            trial.set_constraint(key, value)
        for step, value in sorted(same.intermediate_values.items()):  # (what the pruner and sampler saw)
            trial.report(value, step)
        arch = same.user_attrs.get(st.ARCH_ATTR, "")
        self.book.unlaunched(trial, values, arch, {"sweep.state": "PRUNED", "sweep.duplicate_of": same.number},
                             "FINISHED")  # fmt: skip
        self._tell(trial, state=TrialState.PRUNED)
        self.progress.reused(trial.number, same.number, arch, pruned=True)
        return True

    def launched(self, p: Pending, ret) -> None:
        """A launched trial's job returned: tell the study, tag its run, print it."""
        err = job_error(ret) if ret.status != JobStatus.COMPLETED else None
        if isinstance(err, st.TrialNotTrained):  # the job vetted its model: as if the sweeper had
            if err.excess is None:
                self.fail_unlaunched(p.trial, p.values, err.reason)
            else:  # (a repeat is rejected from the study: the trial carries its vet_key)
                self.reject(p.trial, p.values, err.reason, p.arch, constraint=err.excess)
            return
        state, values, reason = outcome(ret)
        if reason:
            p.trial.set_user_attr(st.FAIL_REASON_ATTR if state == TrialState.FAIL else "pruned_reason", reason)
        p.trial.set_user_attr("rss_mb", rss_mb())
        if state == TrialState.COMPLETE:
            attribute_before_tell(self.study, p.trial, values)
        self._tell(p.trial, values if state == TrialState.COMPLETE else None, state)
        told = frozen(self.study, p.trial)
        self.book.ended(told, state, reason)
        self.progress.finished(told, self.study)

    def stopped(self, pending: list[Pending], reason: str) -> None:
        """The sweep stopped with these trials in flight: they end FAIL."""
        for p in pending:
            p.trial.set_user_attr(st.FAIL_REASON_ATTR, reason[:2000])
            self._tell(p.trial, state=TrialState.FAIL)


def outcome(ret) -> tuple[TrialState, Any, str | None]:
    """Map a Hydra JobReturn to an Optuna state, values and a reason."""
    if ret.status == JobStatus.COMPLETED:
        value = ret.return_value
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            return TrialState.FAIL, None, f"job returned a non-numeric objective: {value!r}"
        if not all(math.isfinite(v) for v in values):
            return TrialState.FAIL, None, f"non-finite objective value(s): {values}"
        return TrialState.COMPLETE, values, None
    err = job_error(ret)
    if isinstance(err, optuna.TrialPruned):
        return TrialState.PRUNED, None, str(err) or "pruned"
    return TrialState.FAIL, None, f"{type(err).__name__}: {err}"[:2000]
