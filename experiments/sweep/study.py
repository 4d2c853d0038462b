"""Samplers, pruners, storages and studies: the Optuna objects a sweep is made of."""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import math
import re
import threading
import warnings
import zlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from resnet_blocks import SpecError

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "gp", "qmc", "grid", "nsga2", "cmaes")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
CONSTRAINT_KEY = "budget"  # Optuna 5 trial.set_constraint: <= 0 feasible, > 0 relative excess
REJECTED_ATTR = "rejected"
MEMORY_REJECTION = "over the memory limit"  # how a rejection for trainer.max_memory_gb begins
FAIL_REASON_ATTR = "fail_reason"
RESUMED_ATTR = "epochs_resumed"  # epochs a retry restored from its first attempt's checkpoint
# The study's parent run and each trial's run in the tracking store (studies swept before
# these names read theirs from the old MLflow-named attributes).
PARENT_RUN_ATTR = "parent_run_id"
RUN_ATTR = "run_id"
TRACKING_LOST_ATTR = "tracking_lost"  # the MLflow store failed during the trial (its StoreLost)
LOCAL_DIR_ATTR = "local_dir"  # where such a trial's record is kept (config, metrics.jsonl, model)
_OLD_NAMES = {PARENT_RUN_ATTR: "mlflow_parent_run_id", RUN_ATTR: "mlflow_run_id"}


def parent_run_of(study) -> str | None:
    """The id of the study's parent run in the tracking store, if it has one."""
    attrs = study.user_attrs
    return attrs.get(PARENT_RUN_ATTR) or attrs.get(_OLD_NAMES[PARENT_RUN_ATTR])


def run_of(trial) -> str | None:
    """The id of the trial's run in the tracking store, if it has one."""
    attrs = trial.user_attrs
    return attrs.get(RUN_ATTR) or attrs.get(_OLD_NAMES[RUN_ATTR])


OVERRIDES_ATTR = "overrides"  # the trial's sampled values as run overrides
ARCH_ATTR = "arch"  # its architecture label
DUPLICATE_ATTR = "duplicate_of"  # a repeated configuration: the trial whose values (or rejection) it reuses
CONFIG_KEY_ATTR = "config_key"  # what a trial trains (its spec, trainer, data, objectives): equal keys, equal values
VET_KEY_ATTR = "vet_key"  # what its vetting depends on (spec, constraints, memory settings): equal keys, equal verdicts
REJECTIONS_PER_TRIAL = 10  # a sweep stops once rejected trials outnumber n_trials this many times

optuna.logging.set_verbosity(optuna.logging.WARNING)


_SAMPLER_TYPES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "cmaes": optuna.samplers.CmaEsSampler,  # (needs the cmaes package)
}
_PRUNER_TYPES = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


class TrialNotTrained(Exception):
    """A job's model did not pass the checks the sweeper left to it; the sweeper records the
    trial as it records those it checks itself. ``excess`` is the constraint violation of a
    rejected trial (over budget, or 1.0 for an invalid architecture: PRUNED); None when
    building the model raised (FAIL)."""

    def __init__(self, reason: str, excess: float | None = None):
        super().__init__(reason, excess)  # (args: how the exception crosses processes)
        self.reason, self.excess = reason, excess

    def __str__(self) -> str:
        return self.reason


_RELATIVE = re.compile(r"^\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?baseline\s*$")


def resolve_constraints(constraints, baseline_cost: Callable[[], Any] | None) -> dict[str, str]:
    """Check ``hydra.sweeper.constraints`` and set each limit given relative to the baseline
    (``baseline``, ``0.6*baseline``) to its number, from ``baseline_cost()`` (the run config's
    own model's cost; None for an app without one). Returns how each relative one was read."""
    read = {}
    for key, attr in (("max_params", "trainable_params"), ("max_macs", "macs")):
        value, field = constraints[key], f"hydra.sweeper.constraints.{key}"
        allowed = "a positive integer, baseline (the run config's own model's) or a share of it, e.g. 0.6*baseline"
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            continue
        match = _RELATIVE.match(value) if isinstance(value, str) else None
        if match is None or float(match.group(1) or 1) <= 0:
            raise SpecError(field, value, allowed)
        if baseline_cost is None:
            raise SpecError(field, value, "a positive integer (this app trains no ResNet of its own to compare with)")
        cost = baseline_cost()
        if cost is None:
            raise SpecError(field, value, "a positive integer (the run config's model has no cost from its spec)")
        limit = int(float(match.group(1) or 1) * getattr(cost, attr))
        constraints[key] = limit
        read[key] = f"{value} = {limit:,}"
    return read


def best_trials(study) -> list:
    """The study's best COMPLETE trial within its constraints (one objective) or its Pareto
    front (several); empty while no such trial exists: a baseline over the budget is trained
    as the reference, but infeasible, and Optuna's ``best_trial`` raises for it alone."""
    try:
        return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)
    except ValueError:
        return []


def over_budget(constraints, cost) -> tuple[str, float] | None:
    """Why ``cost`` breaks ``hydra.sweeper.constraints``, with the relative excess; None if
    it does not."""
    reasons, excess = [], 0.0
    if constraints.max_params is not None and cost.trainable_params > constraints.max_params:
        reasons.append(f"{cost.trainable_params:,} params > max_params {constraints.max_params:,}")
        excess = max(excess, cost.trainable_params / constraints.max_params - 1)
    if constraints.max_macs is not None and cost.macs > constraints.max_macs:
        reasons.append(f"{cost.macs:,} MACs > max_macs {constraints.max_macs:,}")
        excess = max(excess, cost.macs / constraints.max_macs - 1)
    return ("over budget: " + "; ".join(reasons), excess) if reasons else None


def _construct(kind: str, conf, factory, **fixed):
    """``factory(**fixed, **conf.options)``; unknown options are a SpecError naming them."""
    options = dict(conf.options or {})
    try:
        return factory(**fixed, **options)
    except TypeError as err:
        raise SpecError(
            f"hydra.sweeper.{kind}.options", options, f"keyword arguments of the {conf.name} {kind} ({err})"
        ) from None


@contextmanager
def quiet_experimental():
    """Silence Optuna's "experimental" notices for the helpers we rely on (heartbeat retries,
    stale-trial checks: experimental since Optuna 2.8-2.9, stable in practice)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# Names of Hydra's Optuna sweeper (hydra/sweeper/sampler=...) for our samplers, and samplers
# Optuna no longer has.
SAMPLER_ALIASES = {"nsgaii": "nsga2"}
REMOVED_SAMPLERS = {
    # (worded as Hydra's Optuna sweeper words it, whose tests look for "sampler was removed")
    "motpe": "the motpe sampler was removed in Optuna 4.0 (MOTPESampler): TPESampler optimises several "
    "objectives, use tpe",
}


def make_sampler(conf, search_space: dict[str, list[Any]] | None = None):
    """The configured sampler (``grid`` takes its grid from the search space)."""
    if conf.name in REMOVED_SAMPLERS:
        raise SpecError(
            "hydra.sweeper.sampler.name", conf.name, f"one of {', '.join(SAMPLERS)} ({REMOVED_SAMPLERS[conf.name]})"
        )
    if conf.name in SAMPLER_ALIASES:
        conf = _renamed(conf)
    if conf.name == "grid":
        if not search_space:
            raise SpecError(
                "hydra.sweeper.sampler.name", conf.name, "a search space of choice(...)/range(...) params for grid"
            )
        return _construct("sampler", conf, lambda **kw: _AskTellGridSampler(search_space, **kw), seed=conf.seed)
    if conf.name not in _SAMPLER_TYPES:
        raise SpecError("hydra.sweeper.sampler.name", conf.name, "one of " + ", ".join(SAMPLERS))
    if conf.name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        # (Optuna imports it only when the first trial is sampled: refuse before any trial)
        raise SpecError(
            "hydra.sweeper.sampler.name", conf.name,
            "a sampler whose package is installed: CmaEsSampler needs the cmaes package (pip install cmaes)",
        )  # fmt: skip
    return _construct("sampler", conf, _SAMPLER_TYPES[conf.name], seed=conf.seed)


def _renamed(conf):
    from omegaconf import OmegaConf

    return OmegaConf.merge(conf, {"name": SAMPLER_ALIASES[conf.name]})


def grid_size(search_space: dict[str, list[Any]]) -> int:
    """Points in a grid sampler's grid."""
    return math.prod(len(v) for v in search_space.values())


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler for an ask/tell loop.

    Its ``after_trial`` only calls ``study.stop()`` once the grid is exhausted, which raises
    outside ``study.optimize`` (and would leave the told trial RUNNING). The sweep stops at
    ``n_trials`` instead; past the grid's size the sampler revisits points.
    """

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_pruner(conf):
    """The configured pruner."""
    if conf.name not in _PRUNER_TYPES:
        raise SpecError("hydra.sweeper.pruner.name", conf.name, "one of " + ", ".join(PRUNERS))
    if conf.name == "none":
        return optuna.pruners.NopPruner()
    return _construct("pruner", conf, _PRUNER_TYPES[conf.name])


@functools.lru_cache(maxsize=4)
def shared_storage(url: str):
    """One storage (engine, connection pool) per URL for the life of a worker process: a
    worker serves many trials, and opening a storage checks its schema each time."""
    return make_storage(url)


def is_sqlite(url: str | None) -> bool:
    return bool(url) and url.startswith("sqlite")


class RetryStaleTrial:
    """Optuna's retry of a trial whose worker died (the same parameters, a new trial), without
    the reason the failed one carries: the retry has not failed."""

    def __init__(self, max_retry: int):
        with quiet_experimental():
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study, trial: FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != FAIL_REASON_ATTR}
        self.retry(study, trial)


def make_storage(
    url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int = 3
):
    """An RDB storage; with heartbeats, dead workers' trials are failed and retried."""
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs.update(
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period or 3 * heartbeat_interval,
            heartbeat_stale_trial_callback=RetryStaleTrial(
                max_retry
            ),  # Optuna 5's name (failed_trial_callback is deprecated)
        )
    if is_sqlite(url):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with quiet_experimental():
        return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


def load_study_or_error(name: str, storage: str):
    """The study ``name`` in ``storage`` (a URL); a UserError naming ``--storage`` or ``--study``
    (with the studies there) for the command-line tools that take them."""
    from experiments.cli import UserError

    try:
        store = make_storage(storage)
    except Exception as err:  # noqa: BLE001 - a bad URL or an unreachable server
        raise UserError(f"--storage: cannot open {storage!r}: {str(err).splitlines()[0]}") from None
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store)]
        raise UserError(f"--study: no study {name!r} in {storage}; studies there: {names}") from None


def retried_from(trial: FrozenTrial) -> int | None:
    """The number of the failed trial that ``trial`` retries, if any."""
    with quiet_experimental():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def counted(trials: Sequence[FrozenTrial], *, rejected: bool = False) -> list[FrozenTrial]:
    """Trials that count towards ``n_trials``: finished ones, except FAILs that were retried
    and trials rejected before training (vetted from the spec, they take no
    trained trial's place; ``rejected=True`` counts them, as a grid's n_trials is its grid)."""
    retried = {retried_from(t) for t in trials} | {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    retried.discard(None)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [
        t
        for t in trials
        if t.state in finished
        and not (t.state == TrialState.FAIL and t.number in retried)
        and (rejected or REJECTED_ATTR not in t.user_attrs)
    ]


def counts_rejected(conf) -> bool:
    """Whether rejected trials count towards ``n_trials`` (a grid's points are each tried once)."""
    return conf.sampler.name == "grid"


def too_many_rejected(trials: Sequence[FrozenTrial], n_trials: int) -> str | None:
    """Why the sweep stops asking, once rejected trials outnumber ``n_trials``
    :data:`REJECTIONS_PER_TRIAL` times (the constraints leave almost nothing of the space)."""
    rejected = sum(REJECTED_ATTR in t.user_attrs for t in trials)
    if rejected < REJECTIONS_PER_TRIAL * n_trials:
        return None
    return (
        f"stopped: {rejected} trials were rejected before training ({REJECTIONS_PER_TRIAL} per trial of "
        f"n_trials={n_trials}); the constraints or the memory limit leave little of the search space"
    )


@contextmanager
def study_lock(storage, study_name: str):
    """Serialise "count the trials, then ask for one" across workers sharing a PostgreSQL study,
    so together they stop at exactly ``n_trials``. (SQLite has one worker: nothing to lock.)"""
    engine = getattr(storage, "engine", None) or getattr(getattr(storage, "_backend", None), "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    key = zlib.crc32(f"resnet_blocks:{study_name}".encode()) & 0x7FFFFFFF
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


class Heartbeats:
    """Heartbeats for the trials this worker runs, from ``ask`` until ``tell``.

    Beating from the sweeper (not the job) covers the whole life of a trial, including its
    model check and launch; a worker killed with -9 stops beating, and after the grace period
    its trials are failed and retried by whichever worker looks next.
    """

    def __init__(self, storage, interval: int | None):
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        if not self.interval:
            return
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self.trial_ids.add(trial_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="optuna-heartbeats", daemon=True)
            self._thread.start()

    def remove(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # noqa: BLE001 - a finished trial, or a transient DB error
                    log.debug("heartbeat for trial %s failed: %s", trial_id, err)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
