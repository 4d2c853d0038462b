"""``python -m experiments.describe [overrides]``: a model's per-stage table and totals.

Uses the same ``conf/`` as ``experiments.run``; ``format=json`` prints one JSON object.
"""

from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig

from experiments import config as _config  # noqa: F401  (registers schemas and resolvers)
from experiments.cli import quiet_tensorflow, user_errors


def describe(cfg: DictConfig) -> dict:
    """Build the configured model (no training) and return its cost as a dict."""
    from experiments.config import model_spec
    from experiments.data import data_signature
    from experiments.run import build_model_for_config
    from resnet_blocks import SpecError, model_cost

    if cfg.format not in ("table", "json"):
        raise SpecError("format", cfg.format, "'table' or 'json'")
    input_shape, num_classes = data_signature(cfg.data)
    spec = model_spec(cfg.model, input_shape=input_shape, num_classes=num_classes)
    cost = model_cost(build_model_for_config(spec))
    result = {"model": cfg.model.name, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes}
    result.update(cost.to_dict())
    result["stages"] = [{**s, "output_shape": list(s["output_shape"])} for s in result["stages"]]
    return result


def main() -> None:
    """``python -m experiments.describe``: our help and one-line configuration errors, then Hydra."""
    from experiments.run import _check_command_line

    if _check_command_line("describe", "describe"):
        _hydra_main()


@hydra.main(config_path="../conf", config_name="describe", version_base="1.3")
@user_errors
def _hydra_main(cfg: DictConfig) -> None:
    quiet_tensorflow()
    from resnet_blocks import ModelCost, StageCost, format_cost_table

    result = describe(cfg)
    if cfg.format == "json":
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        return
    cost = ModelCost(
        result["trainable_params"],
        result["non_trainable_params"],
        result["macs"],
        [StageCost(s["name"], tuple(s["output_shape"]), s["params"], s["macs"]) for s in result["stages"]],
    )
    shape = "x".join(str(d) for d in result["input_shape"])
    print(f"{result['model']}: input {shape}, {result['num_classes']} classes")
    print(format_cost_table(cost))


if __name__ == "__main__":
    main()
