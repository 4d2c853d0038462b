"""Any Hydra app can use the sweeper: Hydra's Optuna sweeper example, unchanged but for the
sweeper's name (``hydra/sweeper: resnet_blocks``).

    python examples/any_app/sphere.py --multirun
    python examples/any_app/sphere.py --multirun --config-name multi_objective
    python examples/any_app/sphere.py --multirun --config-name custom_search_space
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="sphere")
def sphere(cfg: DictConfig) -> float:
    x: float = cfg.x
    y: float = cfg.y
    return x**2 + y**2


@hydra.main(version_base=None, config_path="conf", config_name="multi_objective")
def binh_and_korn(cfg: DictConfig) -> tuple[float, float]:
    x: float = cfg.x
    y: float = cfg.y
    return 4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2


def configure(cfg: DictConfig, trial) -> None:
    """A search space that depends on sampled values (``custom_search_space``)."""
    x_value = trial.params["x"]
    trial.suggest_float("z", x_value - cfg.max_z_difference_from_x, x_value + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)  # "+w": a key the config lacks, added


@hydra.main(version_base=None, config_path="conf", config_name="custom_search_space")
def sphere_zw(cfg: DictConfig) -> float:
    return cfg.x**2 + cfg.y**2 + cfg.z**2 + cfg.get("w", 1.0)


if __name__ == "__main__":
    import sys

    if "multi_objective" in sys.argv:
        binh_and_korn()
    elif "custom_search_space" in sys.argv:
        sphere_zw()
    else:
        sphere()
