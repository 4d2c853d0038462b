"""The trial side of a sweep, running inside each Hydra job.

The job gets its trial's :class:`~experiments.sweep.ticket.TrialTicket` as an argument, loads
the study from its storage, reports each epoch's monitored metric to its trial (so the pruner
can stop it) and logs to an MLflow child run of the study's parent run. Its result goes back
to the sweeper, which tells the study. (The sweeper keeps the trial's heartbeat.)
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time

import keras
import optuna
from omegaconf import DictConfig, OmegaConf, read_write

from experiments.background import OrderedWriter
from experiments.memory import MemoryBudgetError, check_training_memory, rss_mb
from experiments.metrics import keras_name
from experiments.run import RunHooks, RunPlan, arch_label, build_for_training, dry_build, run_task
from experiments.sweep import gc_policy
from experiments.sweep.baselines import named
from experiments.sweep.internals import local_trial, study_id, trial_id
from experiments.sweep.study import (
    CONSTRAINT_KEY,
    LOCAL_DIR_ATTR,
    RESUMED_ATTR,
    RUN_ATTR,
    TRACKING_LOST_ATTR,
    TrialNotTrained,
    make_pruner,
    over_budget,
    shared_storage,
)
from experiments.sweep.ticket import JobServices, TrialTicket
from experiments.train import BuiltModel
from resnet_blocks import SpecError, model_cost

log = logging.getLogger(__name__)


class MissingMetricError(KeyError):
    """The monitored metric is not in the training logs (a typo would silently disable pruning)."""

    def __str__(self) -> str:
        return str(self.args[0])


class OptunaPruning(keras.callbacks.Callback):
    """Report ``monitor`` each epoch; raise ``optuna.TrialPruned`` when the pruner says so.

    The reports are written to the study from a background thread (see
    :mod:`experiments.background`); all are written before training ends, pruned or not."""

    def __init__(
        self,
        trial: optuna.Trial,
        monitor: str,
        *,
        report: bool = True,
        writer: OrderedWriter | None = None,
        trained_before=tuple,
        prune: bool = True,
    ):
        super().__init__()
        self.prune = prune  # False for a baseline: the reference every trial is measured against trains in full
        self.trial, self.monitor, self.key, self.report = trial, monitor, keras_name(monitor), report
        self._trained_before = trained_before  # () -> the trials that trained before this one
        self._waited = False  # for the trials that trained before this one to be told
        self._writer = writer  # None: Optuna's own report, written at once
        self._pruned: optuna.TrialPruned | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.key not in logs:
            raise MissingMetricError(
                f"pruning metric {self.monitor!r} ({self.key!r}) is not logged; available: " + ", ".join(sorted(logs))
            )
        value = float(logs[self.key])
        if not math.isfinite(value):
            return  # the run's own guard reports divergence
        if self.report:  # multi-objective trials cannot take intermediate values
            self._report(value, step=epoch + 1)
            if not self._waited:
                wait_until_told(self.trial.study, self._trained_before())
                self._waited = True
            if self.prune and self.trial.should_prune():
                # Training stops once this epoch's callbacks have run (the last of them gives
                # the training slot back, so the next trial need not wait for this exception
                # to unwind fit), and the trial ends pruned as fit ends.
                self.model.stop_training = True
                self._pruned = optuna.TrialPruned(f"pruned at epoch {epoch + 1} ({self.monitor}={value:.4f})")

    def on_train_end(self, logs=None):
        self.flush()  # (the study takes a pruned trial's last reported value as its value)
        if self._pruned is not None:
            raise self._pruned

    def _report(self, value: float, step: int) -> None:
        """``trial.report(value, step)``, its write to the study done in the background.

        Optuna's ``report`` writes the value, then adds it to the trial's local copy, which is
        what ``should_prune`` reads; here the local copy comes first and the write follows."""
        local = local_trial(self.trial)
        if self._writer is None or local is None or step in local.intermediate_values:
            self.trial.report(value, step)  # (a repeated step: Optuna warns and ignores it)
            return
        local.intermediate_values[step] = value
        self._writer.submit(self.trial.storage.set_trial_intermediate_value, trial_id(self.trial), step, value)

    def flush(self) -> None:
        """Wait until every report is in the study; raise a write's error."""
        if self._writer is not None:
            self._writer.flush()


class EpochLine(keras.callbacks.Callback):
    """One line per epoch, named by the trial (Keras's own lines are off in sweeps: from
    several workers they interleave and carry no trial id)."""

    def __init__(self, number: int, epochs: int, monitor: str):
        super().__init__()
        self.number, self.epochs, self.monitor = number, epochs, monitor

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = {"train/loss": logs.get("loss"), self.monitor: logs.get(keras_name(self.monitor))}
        values = " ".join(f"{k}={float(v):.4f}" for k, v in shown.items() if v is not None)
        log.info(
            "t%02d epoch %d/%d: %s (%.1f s)", self.number, epoch + 1, self.epochs, values, time.monotonic() - self._t0
        )


def wait_until_told(study: optuna.Study, numbers: tuple[int, ...], timeout: float = 120.0) -> None:
    """Wait until the study knows how trials ``numbers`` ended: they trained before this
    trial, and the sweeper tells each one a few milliseconds after its job has returned."""
    deadline, pause = time.monotonic() + timeout, 0.002
    while numbers:
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        numbers = tuple(n for n in numbers if n in states and not states[n].is_finished())
        if numbers and time.monotonic() > deadline:
            log.warning("pruning without trial(s) %s: the sweeper did not tell them within %g s", numbers, timeout)
            return
        if numbers:
            time.sleep(pause)
            pause = min(2 * pause, 0.1)  # a shared database is not polled hundreds of times a second


def _vet(cfg: DictConfig, trial: optuna.Trial, writer: OrderedWriter, constraints, plan: RunPlan) -> BuiltModel:
    """Build the trial's model and check it as the sweeper's dry build would have, before the
    job records anything (see ``experiments.sweep.resnet_layer``); a model that must not be
    trained raises :class:`TrialNotTrained`, which the sweeper records."""
    try:
        # Memory first, from a build that declares weights without allocating them.
        check_training_memory(dry_build(plan.spec), cfg.trainer)
        built = build_for_training(cfg, plan.spec)
    except MemoryBudgetError as err:
        raise TrialNotTrained(f"over the memory limit: {err}", err.excess) from None
    except SpecError as err:
        raise TrialNotTrained(f"invalid architecture: {err}", 1.0) from None
    except Exception as err:  # noqa: BLE001 - e.g. a user block that raises while building
        raise TrialNotTrained(f"{type(err).__name__}: {err}") from None
    cost = model_cost(built.model)
    over = over_budget(constraints, cost) if constraints is not None else None
    if over:
        raise TrialNotTrained(*over)
    writer.submit(_record_check, trial, cost)
    return built


def _record_check(trial: optuna.Trial, cost) -> None:
    """The model passed: its cost and a feasible constraint go to the trial, unless the sweeper
    checked it and recorded them already (Optuna sets a constraint only once)."""
    if "params" in trial.user_attrs:
        return
    trial.set_constraint(CONSTRAINT_KEY, 0.0)
    trial.set_user_attr("params", cost.trainable_params)
    trial.set_user_attr("macs", cost.macs)


def _free_trial_memory() -> None:
    """Several trials share a process: free each model's graph and memory."""
    keras.backend.clear_session(free_memory=True)  # also runs the garbage collector
    # What survived that collection (TensorFlow's caches, the imported modules) is
    # long-lived: freezing it keeps the next trial's collection to that trial's own
    # objects (0.3-0.5 s, growing with every trial, down to ~0.05 s). The launcher's
    # growth limit still bounds the worker's memory.
    gc_policy.freeze()


def open_trial(ticket: TrialTicket) -> optuna.Trial:
    """The Optuna trial ``ticket`` names (the one the sweeper asked for), with the sweep's
    pruner: a job reports to it and asks it whether to stop."""
    storage = shared_storage(ticket.storage)
    study = optuna.load_study(
        study_name=ticket.study_name, storage=storage, pruner=make_pruner(OmegaConf.create(ticket.pruner))
    )
    number = storage.get_trial_id_from_study_id_trial_number(study_id(study), ticket.number)
    return optuna.Trial(study, number)


def run_trial(cfg: DictConfig, ticket: TrialTicket, services: JobServices | None = None):
    """Train the trial ``ticket`` names with the run config ``cfg``; return its values."""
    t, services = ticket, services or JobServices()
    # Trials are selected on validation only: the test split is for finalized runs.
    with read_write(cfg):
        cfg.trainer.evaluate_test = False
        cfg.trainer.verbose = 0  # (EpochLine prints each epoch with the trial's number)
        # Its own checkpoints, shared with its retries only (hydra.sweeper.checkpoints).
        cfg.trainer.checkpoint_dir = ticket.checkpoint_dir
        cfg.trainer.keep_checkpoints = ticket.keep_checkpoints
    trial = open_trial(ticket)
    study = trial.study
    multi = len(study.directions) > 1
    writer = OrderedWriter("optuna-writes")  # this trial's reports and attributes
    callbacks = (
        OptunaPruning(
            trial,
            t.monitor,
            report=not multi,
            writer=writer,
            trained_before=services.trained_before,
            prune=t.baseline is None,
        ),
        EpochLine(t.number, cfg.trainer.epochs, t.monitor),
    )
    name = f"t{t.number:02d} {named(arch_label(cfg.model), t.baseline)}"
    tags = {"sweep.study": t.study_name, "sweep.trial": str(t.number), "sweep.role": "trial"}
    if t.baseline is not None:
        tags["sweep.baseline"] = t.baseline
    if t.retry_of is not None:
        tags["sweep.retry_of"] = str(t.retry_of)

    def remember_run(tracker):
        if tracker.run_id:
            trial.set_user_attr(RUN_ATTR, tracker.run_id)

    try:
        hooks = RunHooks(
            callbacks=callbacks,
            parent_run_id=t.parent_run_id,
            run_name=name,
            tags=tags,
            on_tracker=remember_run,
            ended_ok=(optuna.TrialPruned,),
            slot=services.training_slot(t.number),
            vet=functools.partial(_vet, cfg, trial, writer, OmegaConf.create(t.constraints or {})),
            store_checked=True,  # (by the sweeper, once for the whole sweep)
            # A lost store costs no result: the trial is told its values, its record stays local.
            on_store_lost=functools.partial(_store_lost, trial),
            on_result=functools.partial(_resumed, trial),
        )
        return run_task(cfg, hooks)
    finally:
        try:
            writer.close()  # (training flushed it already, unless it failed: then this is secondary)
        except Exception as err:  # noqa: BLE001
            log.warning("trial %d: a write to the study failed: %s", t.number, err)
        if not services.defer_cleanup(_free_trial_memory):  # in the process launcher: after the job, from a thread
            _free_trial_memory()
        try:
            trial.set_user_attr("job_rss_mb", rss_mb())
            trial.set_user_attr("job_pid", os.getpid())  # which worker process ran it
        except Exception:  # noqa: BLE001 - the trial may already be finished (stale, retried)
            pass


def _resumed(trial, result) -> None:
    """A retry that resumed from the first attempt's checkpoint: the study says how far."""
    if result.epochs_resumed:
        trial.set_user_attr(RESUMED_ATTR, result.epochs_resumed)


def _store_lost(trial, err) -> None:
    """The trial's run finished recorded locally: the study says where, for the sweeper."""
    trial.set_user_attr(TRACKING_LOST_ATTR, str(err)[:2000])
    trial.set_user_attr(LOCAL_DIR_ATTR, str(getattr(err, "local_dir", "")))
