"""Hydra discovers sweepers only in the ``hydra_plugins`` namespace; this is the thin entry
class. The implementation lives in :mod:`experiments.sweep.sweeper`."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper

from experiments.sweep.config import register_sweeper_config

register_sweeper_config()


class ResnetBlocksSweeper(Sweeper):
    """Optuna 5 architecture search with pruning, constraints, resume and MLflow runs."""

    def __init__(self, **config: Any) -> None:
        from experiments.sweep.sweeper import SweeperImpl

        self._impl = SweeperImpl(config)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._impl.sweep(arguments)
