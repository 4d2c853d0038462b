"""Hydra discovers sweepers and launchers only in the ``hydra_plugins`` namespace; these are
the thin entry classes and their configs. The implementations live in :mod:`experiments.sweep`
and are imported when a sweep starts, not when Hydra scans its plugins (every Hydra app in
the environment does that scan, and ``experiments`` imports TensorFlow)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper

from hydra_plugins.resnet_blocks_sweeper._config import register_configs

register_configs()


class ResnetBlocksSweeper(Sweeper):
    """Optuna 5 architecture search with pruning, constraints, resume and MLflow runs."""

    def __init__(self, **config: Any) -> None:
        from experiments.sweep.sweeper import SweeperImpl

        self._impl = SweeperImpl(config)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._impl.sweep(arguments)


class ProcessLauncher(Launcher):
    """Jobs in spawned worker processes, replaced when they grow (see experiments.sweep.launcher)."""

    def __init__(
        self, n_jobs: int = 1, max_trials_per_process: int | None = None, max_worker_growth_mb: float | None = 400
    ) -> None:
        from experiments.sweep.launcher import ProcessLauncherImpl

        self._impl = ProcessLauncherImpl(n_jobs, max_trials_per_process, max_worker_growth_mb)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides, initial_job_idx):
        return self._impl.launch(job_overrides, initial_job_idx)

    def sweep_executor(self, trial_fn, n_jobs: int, prefetch: int):
        """The sweep engine's executor on this launcher's pool (experiments.sweep.executor):
        jobs in flight, set up ahead, each given its trial's ticket as an argument."""
        from experiments.sweep.executor import PoolExecutor

        return PoolExecutor(self._impl, trial_fn, n_jobs, prefetch)
