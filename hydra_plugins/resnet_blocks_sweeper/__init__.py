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

    def submit(self, overrides, job_idx):
        return self._impl.submit(overrides, job_idx)

    def recycle_due(self) -> bool:
        return self._impl.recycle_due()

    def recycle(self) -> None:
        self._impl.recycle()

    def close(self, *, kill: bool = False, wait: bool = True) -> None:
        self._impl.close(kill=kill, wait=wait)

    def set_prefetch(self, prefetch: int) -> None:
        self._impl.set_prefetch(prefetch)

    def preload(self) -> None:
        self._impl.preload()

    def warm_up(
        self, tracking_uri: str | None = None, storage_url: str | None = None, data: dict | None = None
    ) -> None:
        self._impl.warm_up(tracking_uri, storage_url, data)

    def precompose(self, overrides, config) -> None:
        self._impl.precompose(overrides, config)
