"""The typed configs of ``hydra/sweeper=resnet_blocks`` and ``hydra/launcher=resnet_blocks_process``.

They live here, beside the entry classes, and import nothing of the project: Hydra imports
every ``hydra_plugins`` module of the environment when any Hydra app starts, and
``experiments`` imports TensorFlow. (The leading underscore keeps Hydra's scan from executing
this module a second time, which would make a second set of these classes.)

Keys follow Hydra's Optuna sweeper (sampler, direction, study_name, storage, n_trials,
n_jobs, params, custom_search_space) plus what it lacks: pruner, constraints, resume,
failure limit, dry run, heartbeats and retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

SWEEPER_TARGET = "hydra_plugins.resnet_blocks_sweeper.ResnetBlocksSweeper"


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe | random | gp | qmc | grid | nsga2 | cmaes (or hydra/sweeper/sampler=<name>)
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # extra sampler keyword arguments


@dataclass
class PrunerConf:
    name: str = "median"  # median | successive_halving | hyperband | none
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {n_warmup_steps: 1}


@dataclass
class ConstraintsConf:
    # A number, or relative to the run config's own model (the default baseline): baseline,
    # 0.6*baseline.
    max_params: Any = None  # trainable parameters
    max_macs: Any = None  # multiply-accumulates at batch 1


@dataclass
class SweeperConf:
    # hydra/sweeper/sampler=random selects a sampler as with Hydra's Optuna sweeper; the
    # sampler: {name: ...} form sets the same node.
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}])
    _target_: str = SWEEPER_TARGET
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    direction: Any = "maximize"  # one direction, or a list for several objectives
    study_name: str = "resnet-blocks"
    storage: str | None = "sqlite:///optuna.db"  # postgresql://... for several workers
    n_trials: int = 20  # total to reach: rerunning resumes and stops at this total
    n_jobs: int = 1  # trials launched together through the Hydra launcher
    # Trials sampled and set up ahead while others train (hydra/launcher=resnet_blocks_process
    # only): their model is built and compiled, and waits for a training slot. 0: each trial is
    # sampled after the previous one finished, as in a strictly sequential search.
    prefetch: int = 1
    # Devices for the trials (resnet_blocks_process, joblib, submitit_local): null (each worker sees what
    # the machine has), auto (every GPU nvidia-smi lists; CPU where there is none), cpu, or a
    # list of GPU indices. Each worker gets its own (CUDA_VISIBLE_DEVICES, set before TensorFlow
    # starts), trials_per_device workers share one, and n_jobs becomes the number of such slots;
    # devices_per_trial consecutive devices make one slot (trainer.distribute=mirrored trials).
    devices: Any = None
    trials_per_device: int = 1
    devices_per_trial: int = 1
    timeout: float | None = None  # seconds for this invocation
    epoch_budget: int | None = None  # stop launching trials once this many epochs were trained
    # Trials entered first, to compare every trial with: null is [default] (the run config's own
    # model and trainer) for a ResNet task, none for another app; or a list of default, model
    # presets (cifar_resnet32) and override lists ([model=cifar_resnet20, trainer.learning_rate=0.1]).
    baselines: Any = None
    reuse_duplicates: bool = True  # a configuration already trained gets that trial's values, no training
    params: dict[str, Any] = field(default_factory=dict)
    # {name, args}: a hook registered with experiments.sweep.space.register_search_space; or,
    # as with Hydra's Optuna sweeper, the dotted path of fn(cfg, trial)
    custom_search_space: Any = field(default_factory=lambda: {"name": None, "args": {}})
    constraints: ConstraintsConf = field(default_factory=ConstraintsConf)
    max_failure_rate: float = 0.5  # abort when more than this share of trials fail...
    min_trials_for_failure_rate: int = 4  # ...once at least this many have finished
    dry_run: int = 0  # > 0: sample this many architectures, print them, train nothing
    heartbeat_interval: int | None = 10  # seconds between heartbeats of a running trial
    grace_period: int | None = None  # seconds without a heartbeat before a trial counts as dead (default 3x interval)
    # Retries of a trial whose worker died, or that a stop interrupted (same parameters; each
    # resumes from the trial's checkpoint, so a trial preempted again still progresses).
    max_retry: int = 3
    # Each trial checkpoints every epoch under this folder, and a retry resumes from there:
    # auto (beside a SQLite study: optuna.db -> optuna-checkpoints/; else ./sweep-checkpoints),
    # a path (one all workers mount, for PostgreSQL workers on several machines), or none.
    checkpoints: Any = "auto"
    keep_checkpoints: bool = False  # keep a trial's checkpoints once it has ended
    allow_sqlite_parallel: bool = False  # SQLite with several workers is unsafe
    live: bool | None = None  # a live board of the trials in flight (null: when printing to a terminal)
    ticket: str | None = None  # set by the sweeper on each job: the job's trial (experiments.sweep.ticket)
    setup_only: bool = False  # create the study, MLflow experiment and parent run, then exit (before workers start)


@dataclass
class ProcessLauncherConf:
    """``hydra/launcher=resnet_blocks_process``."""

    _target_: str = "hydra_plugins.resnet_blocks_sweeper.ProcessLauncher"
    n_jobs: int = 1  # trials training at once (as hydra.sweeper.n_jobs; see set_prefetch)
    max_trials_per_process: int | None = None  # replace a worker after this many trials (null: no limit)
    max_worker_growth_mb: float | None = 400  # replace the workers once one grew this much (null: never)


# hydra/sweeper/sampler=<name>: ours, and Hydra's Optuna sweeper's names for them (motpe is
# kept so that its choice gets Optuna's answer: removed, use tpe)
SAMPLER_GROUP = ("tpe", "random", "gp", "qmc", "grid", "nsga2", "cmaes", "nsgaii", "motpe")


def register_configs() -> None:
    store = ConfigStore.instance()
    for name in SAMPLER_GROUP:
        store.store(group="hydra/sweeper/sampler", name=name, node=SamplerConf(name=name), provider="resnet_blocks")
    store.store(group="hydra/sweeper", name="resnet_blocks", node=SweeperConf, provider="resnet_blocks")
    store.store(
        group="hydra/launcher", name="resnet_blocks_process", node=ProcessLauncherConf, provider="resnet_blocks"
    )
