"""The sweep loop: ask Optuna for trials, launch them as Hydra jobs, tell Optuna the results.

Each invocation works towards ``n_trials`` finished trials in total, so rerunning the same
command resumes the study. Several invocations (workers) may share one study on PostgreSQL.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from experiments.cli import RunFailure, UserError, user_errors
from experiments.locks import claim_sqlite_study, sqlite_setup_lock
from experiments.memory import MemoryBudgetError, rss_mb
from experiments.metrics import EPOCH_METRICS, direction
from experiments.overrides import format_override
from experiments.signals import interruption_reason
from experiments.sweep import study as st
from experiments.sweep.checks import check_added_keys, check_searched_keys, worker_seed
from experiments.sweep.internals import frozen, job_error, storage_of, trial_id
from experiments.sweep.progress import Progress
from experiments.sweep.space import Param, parse_param, parse_space, sample, search_space_hook
from hydra_plugins.resnet_blocks_sweeper._config import SweeperConf
from resnet_blocks import SpecError

log = logging.getLogger("experiments.sweep")

OVERRIDES_ATTR, ARCH_ATTR = st.OVERRIDES_ATTR, st.ARCH_ATTR


class SweepAborted(RunFailure):
    """Too many trials failed: the sweep stops with the reason."""


@dataclass
class Pending:
    """A trial asked from the study and about to be launched."""

    trial: optuna.Trial
    values: dict[str, Any]
    overrides: list[str]
    arch: str
    retry_of: int | None = None
    parent: str | None = None  # the study's MLflow parent run
    spec_key: str = ""  # the resolved architecture (repr of its spec)


@dataclass
class SweepRun:
    """One invocation of the sweep: what each step of the loop reads."""

    study: Any
    storage: Any
    params: list[Param]
    fixed: list[str]
    hook: Any  # the conditional search space (experiments.sweep.space.search_space_hook)
    monitor: str | None  # the metric jobs report for pruning (None for a plain task)
    objectives: list[str]
    runs: Any = None  # experiments.tracking.StudyRuns, when tracking
    parent: str | None = None  # the study's MLflow parent run
    progress: Progress | None = None
    started: float = 0.0


class SweeperImpl:
    def __init__(self, config: dict[str, Any]):
        base = OmegaConf.structured(SweeperConf)
        self.conf = OmegaConf.merge(base, {k: v for k, v in config.items() if k != "_target_"})
        self.launcher = None
        self.hydra_context = None
        self.config: DictConfig | None = None
        self.job_idx = 0
        self._live: set[int] = set()  # trials launched by this process right now
        self._progress: Progress | None = None
        self._heartbeats: st.Heartbeats | None = None
        # With our process launcher the jobs vet their own models: each builds it anyway, so
        # the sweeper's dry build (~0.1 s per new architecture) would be spent twice.
        self._jobs_vet = False
        self._rejected_specs: dict[str, tuple[str, float]] = {}  # by the jobs: spec -> (reason, excess)

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        # experiments.run's config (or an app on it, like benchmarks/replay.py): trials are
        # vetted, tracked in MLflow and reported; any other app gets the plain engine.
        self.resnet = "trial" in config and "model" in config
        from experiments.sweep.job import job_function

        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=job_function(task_function), config=config
        )

    # -- validation, before any trial ---------------------------------------------------
    def _split_arguments(self, arguments: list[str]) -> tuple[list[Param], list[str]]:
        """Command-line sweeps (``key=choice(...)``) join the space, replacing the sweep config's
        entry for the same key; a plain ``key=value`` fixes a key (and drops it from the space)."""
        params = {p.key: p for p in parse_space(OmegaConf.to_container(self.conf.params, resolve=True))}
        fixed: list[str] = []
        for override in OverridesParser.create().parse_overrides(arguments):
            key = override.get_key_element().lstrip("+~")
            if override.is_sweep_override():
                params[key] = parse_param(key, _rhs(override.input_line))
            else:
                params.pop(key, None)
                fixed.append(override.input_line)
        return list(params.values()), fixed

    def _validate(self, params: list[Param], fixed: list[str]):
        c = self.conf
        directions = list(c.direction) if OmegaConf.is_list(c.direction) else [c.direction]
        for i, d in enumerate(directions):
            if d not in ("maximize", "minimize"):
                raise SpecError(f"hydra.sweeper.direction[{i}]", d, "'maximize' or 'minimize'")
        base = self._compose(fixed)
        check_added_keys(base, fixed)
        check_searched_keys(self._compose, params, fixed)
        if self.resnet:
            objectives = list(base.objective)
        else:  # a plain task returns its values: they are named after their position
            objectives = ["objective"] if len(directions) == 1 else [f"objective_{i}" for i in range(len(directions))]
        if len(objectives) != len(directions):
            raise SpecError(
                "hydra.sweeper.direction", directions, f"{len(objectives)} direction(s), one per objective {objectives}"
            )
        for obj, d in zip(objectives, directions):
            if self.resnet and direction(obj) != d:
                log.warning("objective %s is usually %sd, but the sweep will %s it", obj, direction(obj), d)
        if not self.resnet:
            c.pruner.name = "none"  # a plain task has no trial to report to: nothing to prune
        if len(directions) > 1 and c.pruner.name != "none":
            raise SpecError(
                "hydra.sweeper.pruner.name",
                c.pruner.name,
                "'none' for multi-objective studies (Optuna cannot prune them)",
            )
        if c.n_trials < 1:
            raise SpecError("hydra.sweeper.n_trials", c.n_trials, "an integer >= 1 (the total to reach)")
        if c.n_jobs < 1:
            raise SpecError("hydra.sweeper.n_jobs", c.n_jobs, "an integer >= 1")
        if c.prefetch < 0:
            raise SpecError("hydra.sweeper.prefetch", c.prefetch, "an integer >= 0 (0: no trial set up ahead)")
        if not 0 < c.max_failure_rate <= 1:
            raise SpecError("hydra.sweeper.max_failure_rate", c.max_failure_rate, "a fraction in (0, 1]")
        if not c.storage and (self.resnet or c.n_jobs > 1):
            raise SpecError(
                "hydra.sweeper.storage",
                c.storage,
                "a database URL such as sqlite:///optuna.db (jobs reach their trial through it; "
                "only a plain task run by one worker can do without, in memory)",
            )
        if st.is_sqlite(c.storage) and c.n_jobs > 1 and not c.allow_sqlite_parallel:
            raise SpecError(
                "hydra.sweeper.storage",
                c.storage,
                "a PostgreSQL URL when several jobs run at once: SQLite locks under concurrent writers "
                "and can hand a queued trial out twice (set allow_sqlite_parallel=true to accept the risk)",
            )
        monitor = self._validate_run(base, objectives) if self.resnet else None
        st.make_sampler(c.sampler, _grid_space(params))
        st.make_pruner(c.pruner)
        return directions, objectives, monitor, base

    @staticmethod
    def _validate_run(base: DictConfig, objectives: list[str]) -> str:
        """experiments.run's settings, checked once for the whole sweep; returns the metric
        each trial reports for pruning."""
        from experiments.data import validate_data_config
        from experiments.train import validate_trainer_config

        validate_data_config(base.data)
        validate_trainer_config(base.trainer)
        for i, obj in enumerate(objectives):
            if obj not in (*EPOCH_METRICS, "macs", "params", "latency_ms"):
                raise SpecError(
                    f"objective[{i}]", obj, "one of " + ", ".join((*EPOCH_METRICS, "macs", "params", "latency_ms"))
                )
        return objectives[0] if objectives[0] in EPOCH_METRICS else base.trainer.monitor

    def _compose(self, overrides: list[str]) -> DictConfig:
        """The job config for ``overrides``, exactly as the launcher will compose it."""
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    # -- the loop -------------------------------------------------------------------------
    @user_errors  # bad settings: one clear line (exit 2) before any trial; an abort: exit 1
    def sweep(self, arguments: list[str]) -> Any:
        from experiments.config import model_spec  # noqa: F401 - registers resolvers
        from experiments.data import split_sizes
        from experiments.tracking import StudyRuns, check_tracking_uri

        c = self.conf
        params, fixed = self._split_arguments(arguments)
        if self.resnet:
            self._load_plugins(fixed)
        directions, objectives, monitor, base = self._validate(params, fixed)
        hook = search_space_hook(c.custom_search_space, base)
        if c.sampler.name == "grid" and c.n_trials > (size := st.grid_size(_grid_space(params))):
            log.info("grid of %d points: n_trials %d lowered to %d", size, c.n_trials, size)
            c.n_trials = size
        if c.dry_run:
            return self._dry_run(params, fixed, hook, c.dry_run)

        pipelined = hasattr(self.launcher, "submit") and self.resnet  # our launcher: trials stay in flight
        self._jobs_vet = pipelined
        if pipelined and hasattr(self.launcher, "set_prefetch"):
            self.launcher.set_prefetch(c.prefetch)
        if self.resnet and not c.setup_only and hasattr(self.launcher, "preload"):
            self.launcher.preload()  # the workers' imports overlap the checks and the study set-up
        tracking = base.tracking if self.resnet else OmegaConf.create({"enabled": False})
        if tracking.enabled:
            check_tracking_uri(tracking.tracking_uri)
        storage = self._storage()
        # Services reachable: start the workers.
        if self.resnet and not c.setup_only and hasattr(self.launcher, "warm_up"):
            data = {"data": OmegaConf.to_container(base.data, resolve=True), "batch_size": base.trainer.batch_size}
            self.launcher.warm_up(tracking.tracking_uri if tracking.enabled else None, c.storage, data)
        with sqlite_setup_lock(c.storage):  # two sweeps creating the same new study at once
            study = optuna.create_study(
                study_name=c.study_name,
                storage=storage,
                sampler=st.make_sampler(c.sampler, _grid_space(params)),
                pruner=st.make_pruner(c.pruner),
                directions=directions,
                load_if_exists=True,
            )
        if [d.name.lower() for d in study.directions] != directions:
            raise SpecError(
                "hydra.sweeper.direction", directions,
                f"{[d.name.lower() for d in study.directions]}, the directions study {c.study_name!r} was created with",
            )  # fmt: skip
        if c.storage and not st.is_sqlite(c.storage):  # workers may share the study: own seeds
            seed, _ = worker_seed(study, c.sampler.seed, st.study_lock(storage, c.study_name))
            if seed != c.sampler.seed:
                study.sampler = st.make_sampler(OmegaConf.merge(c.sampler, {"seed": seed}), _grid_space(params))
        study.set_user_attr("objectives", objectives)
        with st.quiet_experimental():
            study.set_metric_names(list(objectives))  # optuna-dashboard shows them instead of "Objective 0"
        study.set_user_attr("monitor", monitor)  # the per-epoch metric (reports plot it without MLflow)
        if self.resnet:  # validation images per trial: reports give each accuracy its standard error
            study.set_user_attr("num_val", split_sizes(base.data)[1])
        # Where the overlay was found: finalize and reports compose the trials' configs again.
        study.set_user_attr("searchpath", list(self.config.hydra.searchpath))
        runs = StudyRuns(tracking.tracking_uri, tracking.experiment_name) if tracking.enabled else None
        parent = runs.parent_run(c.study_name, study.user_attrs.get(st.PARENT_RUN_ATTR)) if runs else None
        if parent:
            study.set_user_attr(st.PARENT_RUN_ATTR, parent)
            runs.set_tags(parent, {"sweep.objectives": ",".join(objectives), "sweep.directions": ",".join(directions),
                                   "sweep.sampler": c.sampler.name, "sweep.pruner": c.pruner.name, "sweep.n_trials": c.n_trials})  # fmt: skip
        self.run = SweepRun(study, storage, params, fixed, hook, monitor, objectives, runs, parent)
        self._reconcile()

        if c.setup_only:
            print(f"study {c.study_name!r} ready in {c.storage} ({len(study.trials)} trials)"
                  + (f"; MLflow parent run {parent}" if parent else ""))  # fmt: skip
            return None
        self._warn_if_sqlite_shared(study)

        progress = self._progress = Progress(c.n_trials, objectives, directions)
        progress.start(c.study_name, len(st.counted(study.get_trials(deepcopy=False))), c.storage)
        self._heartbeats = st.Heartbeats(storage, c.heartbeat_interval)
        # Everything alive now (TensorFlow, Hydra, the study) lives as long as the sweep. Out of
        # the collector's way, the collection after each vetting build scans only that trial's
        # objects: 0.37 s a trial down to 0.01 s (benchmarks/sweep_overhead.py, quick sweep).
        gc.collect()
        gc.freeze()
        started = self.run.started = time.monotonic()
        self.run.progress = progress
        status, reason = "FINISHED", None
        loop = self._pipelined_loop if pipelined else self._batch_loop
        try:
            loop()
            _check_some_finished(study)
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (experiments.signals)
            status, reason = "KILLED", interruption_reason(err)
            raise
        except SweepAborted as err:
            status, reason = "FAILED", str(err)
            raise
        except BaseException as err:
            status, reason = "FAILED", f"{type(err).__name__}: {err}"
            raise
        finally:
            self._heartbeats.close()
            if runs and parent:
                # Step = trials in the study when this worker stopped: the UI charts wall time by trials.
                try:
                    done = len(study.get_trials(deepcopy=False))
                except Exception:  # noqa: BLE001 - storage gone; still record the wall time
                    done = 0
                runs.log_metric(parent, "sweep/wall_s", time.monotonic() - started, step=done)
            self._finish(status, reason)
        return None

    def _ask(self, limit: int) -> tuple[str | None, list]:
        """Up to ``limit`` new trials, or why the sweep stops ("" once n_trials are done)."""
        c = self.conf
        study, storage, started = self.run.study, self.run.storage, self.run.started
        asked = []
        with st.study_lock(storage, c.study_name):  # count + ask atomically across workers
            trials = study.get_trials(deepcopy=False)
            done = st.counted(trials)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if len(done) >= c.n_trials:
                return "", []
            if c.epoch_budget and epochs_used(trials) >= c.epoch_budget:
                return f"epoch budget of {c.epoch_budget} reached ({epochs_used(trials)} epochs trained)", []
            if c.timeout and time.monotonic() - started > c.timeout:
                return f"timeout of {c.timeout:g} s reached", []
            self._check_failure_rate(done)
            room = c.n_trials - len(done) - len(running)
            for _ in range(max(0, min(limit, room))):
                with warnings.catch_warnings():  # our Heartbeats thread beats for asked trials
                    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                    trial = study.ask()
                self._heartbeats.add(trial_id(trial))
                asked.append(trial)
        return None, asked

    def _batch_loop(self) -> None:
        """Any Hydra launcher: launch ``n_jobs`` trials, wait for all of them, repeat."""
        progress = self.run.progress
        while True:
            stop, asked = self._ask(self.conf.n_jobs)
            if stop is not None:
                if stop:
                    progress.note(stop)
                return
            if not asked:  # other workers are running the last trials: wait for them
                time.sleep(2)
                self._reconcile()
                continue
            batch = [p for t in asked if (p := self._prepare(t))]
            if batch:
                self._launch(batch)

    def _pipelined_loop(self) -> None:
        """Our launcher: keep ``n_jobs + prefetch`` trials in flight. Each finished trial is
        told at once and the next one asked, so no worker waits for a batch's slowest trial,
        and the next trials' set-up overlaps the training of the current ones."""
        c = self.conf
        study, progress = self.run.study, self.run.progress
        capacity = c.n_jobs + c.prefetch
        in_flight: dict[Future, Pending] = {}
        stop: str | None = None
        aborted: SweepAborted | None = None
        try:
            while True:
                recycling = self.launcher.recycle_due()
                if recycling and not in_flight:
                    self.launcher.recycle()  # no job runs now: replace the grown workers
                    recycling = False
                if stop is None and not recycling and len(in_flight) < capacity:
                    try:
                        # One at a time: each trial is submitted before the next is even sampled.
                        stop, asked = self._ask(1)
                    except SweepAborted as err:  # the trials in flight still finish and are told
                        aborted, stop, asked = err, str(err), []
                    if stop and not aborted:
                        progress.note(stop)
                    for trial in asked:
                        p = self._prepare(trial)
                        if p is not None:
                            progress.running(p.trial.number, p.arch, p.values)
                            in_flight[self.launcher.submit(p.overrides, self.job_idx)] = p
                            self.job_idx += 1
                    self._live = {p.trial.number for p in in_flight.values()}
                    if asked and len(in_flight) < capacity:
                        continue  # some were rejected or reused: ask for more before waiting
                    if stop is None and not asked and not in_flight:
                        time.sleep(2)  # other workers are running the last trials: wait for them
                        self._reconcile()
                        continue
                if not in_flight:
                    if aborted is not None:
                        raise aborted
                    if stop is not None:
                        self.launcher.close(wait=False)  # the workers exit while the report is made
                        return
                    continue
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._record(in_flight.pop(future), future.result())
                self._live = {p.trial.number for p in in_flight.values()}
        except BaseException as err:
            self.launcher.close(kill=True)  # idle workers too: exiting would wait for their imports
            if in_flight:  # interrupted, or a bug: the trials in flight end FAIL
                reason = interruption_reason(err) if isinstance(err, KeyboardInterrupt) else f"sweep stopped: {err}"
                for p in in_flight.values():
                    p.trial.set_user_attr(st.FAIL_REASON_ATTR, reason[:2000])
                    study.tell(p.trial, state=TrialState.FAIL)
                    self._heartbeats.remove(trial_id(p.trial))
                self._live = set()
                self._reconcile()  # their MLflow runs end KILLED
            raise
        finally:
            self._live = set()

    def _warn_if_sqlite_shared(self, study) -> None:
        """SQLite cannot be shared safely by several workers: say so if another one is live."""
        if not st.is_sqlite(self.conf.storage) or self.conf.allow_sqlite_parallel:
            return
        if not claim_sqlite_study(self.conf.storage, self.conf.study_name):
            log.warning(
                "another sweep is running study %r on this SQLite file: SQLite is unsafe with several workers "
                "(database locks, queued trials handed out twice); stop one of them, or use PostgreSQL.",
                self.conf.study_name,
            )
            return
        live = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if live:
            log.warning(
                "study %r on SQLite has %d RUNNING trial(s): if another worker is running it, stop one of "
                "them. SQLite is unsafe with several workers (database locks, queued trials handed out "
                "twice); use PostgreSQL. A worker that was killed is detected after the grace period.",
                self.conf.study_name, len(live),
            )  # fmt: skip

    def _load_plugins(self, fixed: list[str]) -> None:
        """Import model.plugins so plugin blocks and search-space hooks are registered."""
        from resnet_blocks import load_plugins

        load_plugins(self._compose(fixed).model.plugins, field_prefix="model.")

    def _storage(self):
        c = self.conf
        if not c.storage:  # a plain task, one worker: the study lives in this process
            c.heartbeat_interval = None
            return optuna.storages.InMemoryStorage()
        try:
            with sqlite_setup_lock(c.storage):  # a new SQLite file: its tables are created once
                storage = st.make_storage(
                    c.storage,
                    heartbeat_interval=c.heartbeat_interval,
                    grace_period=c.grace_period,
                    max_retry=c.max_retry,
                )
        except Exception as err:  # noqa: BLE001 - unreachable server, bad URL, missing driver
            raise UserError(f"hydra.sweeper.storage: cannot open Optuna storage {c.storage!r}: {err}") from None
        return storage

    def _reconcile(self) -> None:
        """Fail trials whose worker died; mark their MLflow runs KILLED; retry them."""
        c = self.conf
        study, runs, parent = self.run.study, self.run.runs, self.run.parent
        if c.heartbeat_interval:
            with st.quiet_experimental():
                optuna.storages.fail_stale_trials(study)
        elif st.is_sqlite(c.storage) and not c.allow_sqlite_parallel:
            # One worker only: any RUNNING trial is left over from a process that died.
            with st.quiet_experimental():
                retry = RetryHeartbeatStaleTrialCallback(max_retry=c.max_retry)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number in self._live:
                    continue
                storage_of(study).set_trial_state_values(trial_id(t), TrialState.FAIL)
                storage_of(study).set_trial_user_attr(
                    trial_id(t), st.FAIL_REASON_ATTR, "worker died (found RUNNING on resume)"
                )
                retry(study, frozen(study, t))
        if runs and parent:
            trials = study.get_trials(deepcopy=False)
            live = {t.number for t in trials if t.state == TrialState.RUNNING}
            runs.kill_stale_runs(parent, live, {t.number: t.state.name for t in trials if t.state.is_finished()})

    def _check_failure_rate(self, done) -> None:
        c = self.conf
        failed = [t for t in done if t.state == TrialState.FAIL]
        if len(done) >= c.min_trials_for_failure_rate and failed and len(failed) / len(done) > c.max_failure_rate:
            last = failed[-1].user_attrs.get(st.FAIL_REASON_ATTR, "unknown")
            raise SweepAborted(
                f"sweep aborted: {len(failed)} of {len(done)} finished trials failed "
                f"({len(failed) / len(done):.0%} > hydra.sweeper.max_failure_rate={c.max_failure_rate:g}); "
                f"last failure: {last}"
            )

    def _prepare(self, trial) -> Pending | None:
        """Sample ``trial`` and vet its model; a rejected architecture is recorded, returns None."""
        r = self.run
        study, params, fixed, hook, monitor, parent = r.study, r.params, r.fixed, r.hook, r.monitor, r.parent
        from experiments.run import arch_label, plan_run

        c = self.conf
        retry_of = st.retried_from(frozen(study, trial))
        values = sample(trial, params, hook)
        overrides = [*fixed, *(format_override(k, v) for k, v in values.items())]
        trial.set_user_attr(OVERRIDES_ATTR, overrides)
        if c.reuse_duplicates and self._reuse_duplicate(trial, values, overrides):
            return None
        if not self.resnet:  # a plain task: its job gets the sampled values, nothing else
            return Pending(trial, values, overrides, "")
        job_overrides = [
            *overrides,
            f"trial.number={trial.number}",
            f"trial.study_name={format_override('x', c.study_name)[2:]}",
            f"trial.storage={format_override('x', c.storage)[2:]}",
            f"trial.monitor={monitor}",
            *( [f"trial.parent_run_id={parent}"] if parent else [] ),
            *( [f"trial.retry_of={retry_of}"] if retry_of is not None else [] ),
        ]  # fmt: skip
        try:
            cfg = self._compose(job_overrides)
            arch = arch_label(cfg.model)
            trial.set_user_attr(ARCH_ATTR, arch)
            plan = plan_run(cfg, build=not self._jobs_vet)
        except MemoryBudgetError as err:  # a constraint: the sampler learns to avoid it
            self._reject(trial, values, f"over the memory limit: {err}", arch, constraint=err.excess)
            return None
        except SpecError as err:
            self._reject(trial, values, f"invalid architecture: {err}", None, constraint=1.0)
            return None
        except Exception as err:  # noqa: BLE001 - e.g. a user block that raises while building
            self._fail_unlaunched(trial, values, f"{type(err).__name__}: {err}")
            return None
        spec_key = repr(plan.spec)
        if plan.cost is not None:
            over = st.over_budget(self.conf.constraints, plan.cost)
        else:  # the job will check; unless a job has rejected the same architecture already
            over = self._rejected_specs.get(spec_key)
        if over:
            reason, excess = over
            self._reject(trial, values, reason, arch, constraint=excess)
            return None
        if hasattr(self.launcher, "precompose"):  # our process launcher: the job need not compose again
            self.launcher.precompose(job_overrides, cfg)
        if plan.cost is not None:  # (otherwise the job records them once it has checked its model)
            trial.set_constraint(st.CONSTRAINT_KEY, 0.0)  # (Optuna sets a constraint once)
            trial.set_user_attr("params", plan.cost.trainable_params)
            trial.set_user_attr("macs", plan.cost.macs)
        return Pending(trial, values, job_overrides, arch, retry_of, parent, spec_key)

    def _reuse_duplicate(self, trial, values, overrides) -> bool:
        """Samplers propose an already-trained configuration again (TPE does, in categorical
        spaces): give the trial the earlier trial's values instead of spending epochs on it."""
        study = self.run.study
        same = next(
            (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if t.user_attrs.get(OVERRIDES_ATTR) == overrides and t.number != trial.number),
            None,
        )  # fmt: skip
        if same is None:
            return False
        for key in (ARCH_ATTR, "params", "macs"):
            if key in same.user_attrs:
                trial.set_user_attr(key, same.user_attrs[key])
        trial.set_user_attr(st.DUPLICATE_ATTR, same.number)
        trial.set_constraint(st.CONSTRAINT_KEY, 0.0)
        arch = same.user_attrs.get(ARCH_ATTR, "")
        tags = {"sweep.state": "COMPLETE", "sweep.duplicate_of": same.number}
        self._record_unlaunched(trial, values, arch, tags, "FINISHED")
        study.tell(trial, list(same.values))
        if self._heartbeats is not None:
            self._heartbeats.remove(trial_id(trial))
        if self._progress is not None:
            self._progress.reused(trial.number, same.number, arch)
        return True

    def _reject(self, trial, values, reason, arch, *, constraint: float) -> None:
        """Record a trial rejected before training: PRUNED in Optuna, a FINISHED child run."""
        trial.set_user_attr(st.REJECTED_ATTR, reason)
        trial.set_constraint(st.CONSTRAINT_KEY, float(max(constraint, 1e-6)))
        tags = {"sweep.state": "PRUNED", "sweep.rejected": reason}
        self._record_unlaunched(trial, values, arch or "invalid", tags, "FINISHED")
        self.run.study.tell(trial, state=TrialState.PRUNED)
        if self._heartbeats is not None:
            self._heartbeats.remove(trial_id(trial))
        if self._progress is not None:
            self._progress.rejected(trial.number, arch, reason)

    def _record_unlaunched(self, trial, values, arch, tags, status) -> None:
        """A child run for a trial that never reached training (must precede ``tell``)."""
        runs, parent = self.run.runs, self.run.parent
        if not (runs and parent):
            return
        base = {"sweep.study": self.conf.study_name, "sweep.trial": trial.number, "sweep.role": "trial"}
        run_id = runs.record_trial_without_training(
            parent, f"t{trial.number:02d} {arch}", dict(values), {**base, **tags}, status=status
        )
        trial.set_user_attr(st.MLFLOW_RUN_ATTR, run_id)

    def _fail_unlaunched(self, trial, values, reason) -> None:
        """A trial whose model could not even be built: FAIL in Optuna, a FAILED child run."""
        trial.set_user_attr(st.FAIL_REASON_ATTR, reason[:2000])
        tags = {"sweep.state": "FAIL", "failure_reason": reason[:5000]}
        self._record_unlaunched(trial, values, trial.user_attrs.get(ARCH_ATTR, "failed"), tags, "FAILED")
        study = self.run.study
        study.tell(trial, state=TrialState.FAIL)
        if self._heartbeats is not None:
            self._heartbeats.remove(trial_id(trial))
        if self._progress is not None:
            self._progress.finished(frozen(study, trial), study)

    def _launch(self, batch: list[Pending]) -> None:
        study, progress = self.run.study, self.run.progress
        for p in batch:
            progress.running(p.trial.number, p.arch, p.values)
        self._live = {p.trial.number for p in batch}
        try:
            returns = self.launcher.launch([p.overrides for p in batch], initial_job_idx=self.job_idx)
        except KeyboardInterrupt as err:
            for p in batch:
                p.trial.set_user_attr(st.FAIL_REASON_ATTR, interruption_reason(err))
                study.tell(p.trial, state=TrialState.FAIL)
            raise
        finally:
            self._live = set()
        self.job_idx += len(batch)
        for p, ret in zip(batch, returns):
            self._record(p, ret)

    def _record(self, p: Pending, ret) -> None:
        """Tell the study how a launched trial ended; tag its MLflow run; print it."""
        study, runs, progress = self.run.study, self.run.runs, self.run.progress
        if ret.status != JobStatus.COMPLETED and isinstance(job_error(ret), st.TrialNotTrained):
            self._record_not_trained(p, job_error(ret))
            return
        state, values, reason = _outcome(ret)
        if reason:
            p.trial.set_user_attr(st.FAIL_REASON_ATTR if state == TrialState.FAIL else "pruned_reason", reason)
        p.trial.set_user_attr("rss_mb", rss_mb())
        if state == TrialState.COMPLETE:
            study.tell(p.trial, values)
        else:
            study.tell(p.trial, state=state)
        self._heartbeats.remove(trial_id(p.trial))
        told = frozen(study, p.trial)
        run_id = told.user_attrs.get(st.MLFLOW_RUN_ATTR)
        if runs and run_id:
            runs.set_tags(
                run_id,
                {
                    "sweep.state": state.name,
                    **({"sweep.fail_reason": reason} if state == TrialState.FAIL and reason else {}),
                },
            )
        progress.finished(told, study)

    def _record_not_trained(self, p: Pending, err: st.TrialNotTrained) -> None:
        """A job found its model invalid, over budget or unbuildable before recording anything:
        recorded as if the sweeper had checked it (see ``_prepare``)."""
        if err.excess is None:
            self._fail_unlaunched(p.trial, p.values, err.reason)
            return
        self._rejected_specs[p.spec_key] = (err.reason, err.excess)  # a repeat is rejected here
        self._reject(p.trial, p.values, err.reason, p.arch, constraint=err.excess)

    def _finish(self, status, reason) -> None:
        r = self.run
        study, runs, parent, objectives, progress = r.study, r.runs, r.parent, r.objectives, r.progress
        from experiments.sweep.report import log_summary, study_summary, write_optimization_results, write_report
        from experiments.tracking import ui_link

        results = write_optimization_results(study, Path(self.config.hydra.sweep.dir))
        if not self.resnet:
            progress.plain_summary(study, objectives, results)
            return
        from experiments.sweep.retrain import config_composer

        # Run configs, not sweep jobs (the overlay may live on hydra.searchpath).
        compose = config_composer(
            config_name=self.config.hydra.job.config_name, searchpath=self.config.hydra.searchpath
        )
        summary = study_summary(study, objectives, compose)
        progress.summary(summary)
        report = Path(self.config.hydra.sweep.dir) / "report.html"
        if runs and parent:
            try:
                log_summary(runs, parent, study, summary, compose=compose, report_copy=report)
            finally:
                runs.end(parent, status, reason)
            if link := ui_link(runs.tracking_uri, runs.experiment_id, parent):
                progress.note(f"MLflow: {link}")
        else:
            write_report(report, study, summary, compose=compose)
        progress.report(report)

    def _dry_run(self, params, fixed, hook, n: int) -> None:
        """Sample ``n`` architectures from the space and print them; no training, no storage."""
        from experiments.run import arch_label, plan_run
        from experiments.sweep.progress import print_plan

        if not self.resnet:
            study = optuna.create_study(sampler=st.make_sampler(self.conf.sampler, _grid_space(params)))
            for _ in range(n):
                trial = study.ask()
                print(
                    f"{trial.number}: "
                    + " ".join(format_override(k, v) for k, v in sample(trial, params, hook).items())
                )
                study.tell(trial, state=TrialState.PRUNED)
            return

        study = optuna.create_study(sampler=st.make_sampler(self.conf.sampler, _grid_space(params)),
                                    directions=["maximize"] * len(self._compose(fixed).objective))  # fmt: skip
        rows = []
        for _ in range(n):
            trial = study.ask()
            values = sample(trial, params, hook)
            overrides = [*fixed, *(format_override(k, v) for k, v in values.items())]
            try:
                cfg = self._compose(overrides)
                arch = arch_label(cfg.model)
                plan = plan_run(cfg)
                verdict = st.over_budget(self.conf.constraints, plan.cost)
                rows.append(
                    (
                        trial.number,
                        arch,
                        plan.spec.feature_sizes(),
                        plan.cost,
                        verdict[0] if verdict else "ok",
                        overrides,
                    )
                )
            except SpecError as err:
                rows.append((trial.number, "-", None, None, f"invalid: {err}", overrides))
            study.tell(trial, state=TrialState.PRUNED)
        print_plan(rows)


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


def _rhs(input_line: str) -> str:
    return input_line.split("=", 1)[1]


def _grid_space(params: list[Param]) -> dict[str, list[Any]]:
    """GridSampler's search space from categorical and integer params."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = {}
    for p in params:
        if isinstance(p.distribution, CategoricalDistribution):
            space[p.key] = list(p.distribution.choices)
        elif isinstance(p.distribution, IntDistribution):
            space[p.key] = list(range(p.distribution.low, p.distribution.high + 1, p.distribution.step))
        elif isinstance(p.distribution, FloatDistribution) and p.distribution.step is not None:
            d = p.distribution
            space[p.key] = [round(d.low + i * d.step, 12) for i in range(round((d.high - d.low) / d.step) + 1)]
    return space


def _outcome(ret) -> tuple[TrialState, Any, str | None]:
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
