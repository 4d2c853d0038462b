"""The Optuna sweeper behind ``hydra/sweeper=resnet_blocks``: Hydra's side of a sweep.

It parses the search space, refuses what cannot run before any trial, opens the study (and
the MLflow parent run), then hands over to :class:`~experiments.sweep.engine.Engine` with an
executor for the launcher and the layer for the task. Each invocation works towards
``n_trials`` finished trials in total, so rerunning the same command resumes the study.
Several invocations (workers) may share one study on PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from experiments.cli import UserError, user_errors
from experiments.config_check import check_added_keys
from experiments.locks import sqlite_setup_lock
from experiments.metrics import EPOCH_METRICS, direction
from experiments.signals import interruption_reason
from experiments.sweep import baselines, gc_policy
from experiments.sweep import study as st
from experiments.sweep.checks import (
    check_searched_keys,
    check_settings,
    warn_if_sqlite_shared,
    worker_seed,
)
from experiments.sweep.engine import Engine, SweepAborted, SweepRun
from experiments.sweep.executor import PoolExecutor, make_executor, task_for_launcher
from experiments.sweep.layers import PlainLayer, ResNetLayer
from experiments.sweep.live import board_or_lines
from experiments.sweep.progress import Progress
from experiments.sweep.records import NoBook, Recorder, TrackedBook
from experiments.sweep.space import Param, parse_param, parse_space, search_space_hook
from experiments.sweep.ticket import trial_function
from experiments.sweep.trial_checkpoints import checkpoint_root, remove_study_checkpoints
from hydra_plugins.resnet_blocks_sweeper._config import SweeperConf
from resnet_blocks import SpecError

log = logging.getLogger("experiments.sweep")


class SweeperImpl:
    def __init__(self, config: dict[str, Any]):
        base = OmegaConf.structured(SweeperConf)
        self.conf = OmegaConf.merge(base, {k: v for k, v in config.items() if k != "_target_"})
        self.launcher = self.hydra_context = self.config = self.trial_fn = None
        self.baselines: list = []  # (Baseline, its searched values), resolved before any trial

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        # A task that names a trial function (experiments.run's, or an app on its config like
        # benchmarks/replay.py) gets the ResNet layer: vetting, MLflow, reports, pruning.
        self.trial_fn = trial_function(task_function)
        self.resnet = self.trial_fn is not None
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_for_launcher(task_function, self.trial_fn), config=config
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
        self.baselines = baselines.resolve(
            baselines.parse_baselines(_container(c.baselines), resnet=self.resnet),
            self._compose,
            fixed,
            params,
            presets=model_presets(),
        )
        params[:] = baselines.widen(params, self.baselines)
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
        check_settings(c, resnet=self.resnet)
        monitor = self._validate_run(base, objectives) if self.resnet else None
        for key, read in st.resolve_constraints(c.constraints, _cost_of(base) if self.resnet else None).items():
            log.info("hydra.sweeper.constraints.%s: %s (the run config's own model)", key, read)
        st.make_sampler(c.sampler, _grid_space(params))
        st.make_pruner(c.pruner)
        return directions, objectives, monitor, base

    @staticmethod
    def _validate_run(base: DictConfig, objectives: list[str]) -> str:
        """experiments.run's settings, checked once for the whole sweep; returns the metric
        each trial reports for pruning."""
        from experiments.data import validate_data_config
        from experiments.trainer_config import validate_trainer_config

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

    @user_errors  # bad settings: one clear line (exit 2) before any trial; an abort: exit 1
    def sweep(self, arguments: list[str]) -> Any:
        from experiments.config import model_spec  # noqa: F401 - registers resolvers
        from experiments.tracking import check_tracking_uri, is_local_store

        c = self.conf
        params, fixed = self._split_arguments(arguments)
        if self.resnet:
            self._load_plugins(fixed)
        slots = self._device_slots()  # (n_jobs becomes their number: before the checks of n_jobs)
        directions, objectives, monitor, base = self._validate(params, fixed)
        if slots and self.resnet:
            from experiments.devices import check_trial_devices

            check_trial_devices(base.trainer.distribute, c.devices, c.devices_per_trial)
        hook = search_space_hook(c.custom_search_space, base)
        if c.sampler.name == "grid" and c.n_trials > (size := st.grid_size(_grid_space(params))):
            log.info("grid of %d points: n_trials %d lowered to %d", size, c.n_trials, size)
            c.n_trials = size
        layer = ResNetLayer(c, self.config, self._compose, monitor) if self.resnet else PlainLayer(self.config)
        if self.resnet:
            layer.checkpoints = checkpoint_root(c.checkpoints, c.storage)
        if c.dry_run:
            return layer.dry_run(st.make_sampler(c.sampler, _grid_space(params)), params, fixed, hook, c.dry_run)

        executor = make_executor(self.launcher, self.trial_fn, c.n_jobs, 0 if slots else c.prefetch)
        if slots and isinstance(executor, PoolExecutor):  # (other launchers' workers claim theirs)
            executor.pool.place(slots)
        # Through our pool the jobs vet their own models: each builds it anyway, so the
        # sweeper's dry build (~0.1 s per new architecture) would be spent twice.
        layer.jobs_vet = isinstance(executor, PoolExecutor)
        if self.resnet and not c.setup_only:
            executor.preload()
        tracking = base.tracking if self.resnet else OmegaConf.create({"enabled": False})
        # A server is probed without writing; a local store is created by its probe, so it
        # comes after the Optuna storage: an unreachable one leaves no empty mlflow.db.
        local_store = tracking.enabled and is_local_store(tracking.tracking_uri)
        if tracking.enabled and not local_store:
            check_tracking_uri(tracking.tracking_uri)
        storage = self._storage()
        if local_store:
            check_tracking_uri(tracking.tracking_uri)
        if self.resnet and not c.setup_only:  # services reachable: start the workers
            data = {"data": OmegaConf.to_container(base.data, resolve=True), "batch_size": base.trainer.batch_size}
            uri = tracking.tracking_uri if tracking.enabled else None
            executor.start({"tracking_uri": uri, "storage_url": c.storage, "data": data})
        study = self._open_study(storage, params, directions, objectives, monitor, base)
        if added := baselines.enqueue(study, self.baselines, st.study_lock(storage, c.study_name)):
            log.info("baseline trial(s) enqueued first: %s", ", ".join(added))
        book = self._open_book(study, tracking, objectives, directions)
        recorder = layer.recorder = Recorder(study, book, progress=None)
        layer.parent_run_id = book.parent
        engine = Engine(
            c, SweepRun(study, storage, params, fixed, hook, monitor, objectives), executor, layer, recorder
        )
        engine.reconcile()
        if c.setup_only:
            print(f"study {c.study_name!r} ready in {c.storage} ({len(study.trials)} trials)"
                  + (f"; MLflow parent run {layer.parent_run_id}" if layer.parent_run_id else ""))  # fmt: skip
            return None
        warn_if_sqlite_shared(c, study)
        recorder.progress = Progress(c.n_trials, objectives, directions, counts_rejected=st.counts_rejected(c))
        done = st.counted(study.get_trials(deepcopy=False), rejected=st.counts_rejected(c))
        recorder.progress.start(c.study_name, len(done), c.storage)
        recorder.heartbeats = st.Heartbeats(storage, c.heartbeat_interval)
        # Everything alive now (TensorFlow, Hydra, the study) lives as long as the sweep. Out of
        # the collector's way, the collection after each vetting build scans only that trial's
        # objects (benchmarks/sweep_overhead.py measures it).
        gc_policy.freeze_survivors()
        engine.started = time.monotonic()
        status, reason = "FINISHED", None
        epochs = base.trainer.epochs if self.resnet else None
        try:
            with board_or_lines(recorder.progress, executor, c.live, epochs, monitor):
                engine.loop()
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
            recorder.heartbeats.close()
            book.close(study, status, reason, time.monotonic() - engine.started)
            layer.finish(study, objectives, book, status, reason)
        if self.resnet and not c.keep_checkpoints and engine.reached_total():
            remove_study_checkpoints(layer.checkpoints, c.study_name)  # (no trial of it will be retried)
        return None

    def _open_study(self, storage, params, directions, objectives, monitor, base):
        """Create or load the study; check it matches; record what reports and finalize need."""
        from experiments.data import split_sizes

        c = self.conf
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
        return study

    def _open_book(self, study, tracking, objectives, directions):
        """The study's MLflow parent run (found again on resume), or no bookkeeping."""
        from experiments.tracking import StudyRuns

        c = self.conf
        if not tracking.enabled:
            return NoBook()
        runs = StudyRuns(tracking.tracking_uri, tracking.experiment_name, retry_s=tracking.retry_s)
        parent = runs.parent_run(c.study_name, st.parent_run_of(study))
        study.set_user_attr(st.PARENT_RUN_ATTR, parent)
        from experiments.tracking.processes import shown_storage

        if c.storage:  # where cleanup finds the study of a sweep that died
            runs.set_tags(parent, {"sweep.storage": shown_storage(c.storage)})
        runs.set_tags(parent, {"sweep.objectives": ",".join(objectives), "sweep.directions": ",".join(directions),
                               "sweep.sampler": c.sampler.name, "sweep.pruner": c.pruner.name, "sweep.n_trials": c.n_trials,
                               **self._code_tags()})  # fmt: skip
        return TrackedBook(runs, parent, c.study_name)

    def _device_slots(self) -> list[str] | None:
        """``devices`` and ``trials_per_device`` as the slots the workers claim; n_jobs set to
        their number. Our process launcher places its workers; joblib's and a local submitit's
        claim slots offered in their environment; other launchers are refused."""
        from experiments.devices import device_slots, offer_slots

        c = self.conf
        slots = device_slots(c.devices, c.trials_per_device, c.n_jobs, c.devices_per_trial)
        if slots is None:
            return None
        if getattr(self.launcher, "sweep_executor", None) is None:
            self._check_launcher_places(slots)
            offer_slots(slots, Path(self.config.hydra.sweep.dir) / ".device-slots")
        if c.devices != "cpu" and c.n_jobs not in (1, len(slots)):
            raise SpecError("hydra.sweeper.n_jobs", c.n_jobs, f"1 or {len(slots)}: with devices, one trial per device "
                            "slot (len(devices) / devices_per_trial x trials_per_device) trains at a time")  # fmt: skip
        c.n_jobs = len(slots)
        log.info("devices: %d worker(s), each on its own slot of %s", len(slots), ", ".join(slots))
        return slots

    def _check_launcher_places(self, slots: list[str]) -> None:
        """Launchers other than ours place their jobs through the environment: joblib's workers
        (one per slot, each keeps its slot for its life) and a local submitit's jobs."""
        c, kind = self.conf, type(self.launcher).__name__
        if kind == "JoblibLauncher":
            n_jobs = dict(getattr(self.launcher, "joblib", {}) or {}).get("n_jobs")
            if n_jobs != len(slots):
                raise SpecError("hydra.launcher.n_jobs", n_jobs, f"{len(slots)} with hydra.sweeper.devices: one joblib "
                                "worker per device slot, each keeping its slot for its life")  # fmt: skip
            return
        if kind == "LocalLauncher":  # (submitit's: each job a process of its own)
            return
        why = (
            "SLURM gives each job its GPUs (hydra.launcher.gpus_per_node)"
            if kind == "SlurmLauncher"
            else "this launcher runs jobs where no slot can be claimed"
        )
        raise SpecError("hydra.sweeper.devices", c.devices, f"null with hydra/launcher={kind} ({why}); placed "
                        "launchers: resnet_blocks_process (the shipped sweeps'), joblib, submitit_local")  # fmt: skip

    def _code_tags(self) -> dict[str, str]:
        """The code this sweep's config brought in (``experiments.code_tags``)."""
        from experiments.code_tags import hook_tags, plugin_tags

        callbacks = OmegaConf.to_container(self.config.hydra.callbacks) if "callbacks" in self.config.hydra else {}
        plugins = OmegaConf.select(self.config, "model.plugins", default=None) or []
        return {**plugin_tags(plugins), **hook_tags(self.conf.custom_search_space, callbacks)}

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
            said = " ".join(str(err).split("(Background on this error")[0].split()) or type(err).__name__
            raise UserError(f"hydra.sweeper.storage: cannot open Optuna storage {c.storage!r}: {said}") from None
        return storage


def _cost_of(base: DictConfig):
    """The cost of the run config's own model, counted from its spec when asked."""

    def cost():
        from experiments.run import dry_build, plan_run

        return dry_build(plan_run(base, build=False).spec, build=False)

    return cost


def _container(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def model_presets() -> list[str]:
    """The model presets of the project's config directory (``cifar_resnet20``, ...)."""
    from experiments.overrides import CONF_DIR

    return sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))


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
