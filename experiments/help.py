"""``--help`` for the Hydra apps (run, describe): groups, options and the keys users change
most, with the values this command line resolves to, in 80 columns.

Hydra's own help prints a fixed template (run) or the whole config with raw interpolations
(describe). Ours composes the config with the other arguments, so ``run model=resnet18
--help`` shows ResNet-18's depths and widths. ``--hydra-help`` still gives Hydra's flags.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

WIDTH = 80
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# (key, what it is): the keys users change most, in the order they meet them.
RUN_KEYS = [
    ("model.block", "regular | bottleneck | regular_v1 | bottleneck_v1 | a registered block"),
    ("model.shortcut", "identity | projection | zero_pad | avg_down (where shapes change)"),
    ("model.depths", "blocks per stage (CIFAR presets: model.depth=20|32|44|56|110)"),
    ("model.widths", "channels per stage"),
    ("model.strides", "stride of each stage's first block"),
    ("model.plugins", "modules that register extra blocks, e.g. [examples.se_block]"),
    ("data.path", "image folder or .tar.gz for data=image_folder"),
    ("data.max_samples", "train on a subsample"),
    ("data.augment", "random crop + flip for training"),
    ("trainer.epochs", "epochs to train"),
    ("trainer.batch_size", "batch size"),
    ("trainer.optimizer", "sgd | adamw"),
    ("trainer.learning_rate", "peak learning rate"),
    ("trainer.weight_decay", "decoupled weight decay"),
    ("trainer.schedule", "cosine | step | constant (warm-up: trainer.warmup_epochs)"),
    ("trainer.mixed_precision", "float32 | mixed_bfloat16 | mixed_float16"),
    ("tracking.tracking_uri", "MLflow store or server (env MLFLOW_TRACKING_URI)"),
    ("tracking.enabled", "false: train without MLflow"),
    ("objective", "what a sweep optimises, e.g. [val/accuracy,macs]"),
]
DESCRIBE_KEYS = [k for k in RUN_KEYS if k[0].startswith("model.")] + [
    ("data.image_size", "the input size the model is counted at"),
    ("format", "table | json"),
]

APPS = {
    "run": {
        "config": "config",
        "usage": "python -m experiments.run [group=option ...] [key=value ...]",
        "about": "Train one ResNet configuration and track it in MLflow (default: CIFAR ResNet-20 on "
        "the embedded digits dataset, about 20 s on 2 CPU cores). Add +sweep=<name> to run an "
        "Optuna architecture search instead.",
        "keys": RUN_KEYS,
        "examples": [
            ("python -m experiments.run", "the default run"),
            ("python -m experiments.run model=resnet18 data=cifar10 trainer.epochs=30", ""),
            ("python -m experiments.run model.depths=[2,2,2] model.block=bottleneck", ""),
            ("python -m experiments.run +sweep=quick", "a 12-trial search on digits"),
        ],
    },
    "describe": {
        "config": "describe",
        "usage": "python -m experiments.describe [group=option ...] [key=value ...]",
        "about": "A model's per-stage output shapes, parameters and MACs, counted without training "
        "(format=json: one JSON object).",
        "keys": DESCRIBE_KEYS,
        "examples": [
            ("python -m experiments.describe model=resnet50 data=cifar10", ""),
            ("python -m experiments.describe model.block=bottleneck format=json", ""),
        ],
    },
}

MORE = [
    ("python -m experiments.run --cfg job", "the full config"),
    ("python -m experiments.describe model=NAME", "a model's stages and costs"),
    ("python -m experiments.blocks", "blocks, shortcuts, their arguments"),
    ("mlflow ui --backend-store-uri sqlite:///mlflow.db", "review runs and sweeps"),
    ("--hydra-help", "Hydra's own flags (multirun, ...)"),
]


def wants_help(argv: Sequence[str]) -> bool:
    return any(a in ("--help", "-h") for a in argv)


def render(app: str, argv: Sequence[str]) -> str:
    """The help of ``app`` (``run`` or ``describe``) for the command line ``argv``."""
    spec = APPS[app]
    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    cfg, choices = _compose(spec["config"], overrides)
    out = [spec["usage"], "", *textwrap.wrap(spec["about"], WIDTH), ""]
    out.append("Config groups (group=option; * this command line's):")
    for group, options in _groups(spec["config"]).items():
        marked = [f"*{o}" if choices.get(group) == o else o for o in options]
        out += textwrap.wrap(
            ", ".join(marked), WIDTH, initial_indent=f"  {group + ':':<10}", subsequent_indent=" " * 12
        )
    out += ["", "Common keys (key=value), with their values here:"]
    for key, about in spec["keys"]:
        out += _row(f"{key}={_value(cfg, key)}", about)
    out += ["", "Examples:"]
    for command, about in spec["examples"]:
        out += _row(command, about, width=42)
    out += ["", "More:"]
    for command, about in MORE:
        out += _row(command, about, width=42)
    out += [""]
    out += textwrap.wrap(
        "A misspelt key, an unknown option or a refused value is one line naming the field and "
        "what is allowed (exit 2).",
        WIDTH,
    )
    return "\n".join(out)


def _row(left: str, about: str, width: int = 30) -> list[str]:
    """``  left  about``, the description wrapped at ``width`` + 4 (on its own line when
    ``left`` is longer)."""
    indent = " " * (width + 4)
    if not about:
        return textwrap.wrap(left, WIDTH, initial_indent="  ", subsequent_indent="      ")
    if len(left) <= width:
        return textwrap.wrap(about, WIDTH, initial_indent=f"  {left:<{width}}  ", subsequent_indent=indent)
    return [*textwrap.wrap(left, WIDTH, initial_indent="  ", subsequent_indent="      "),
            *textwrap.wrap(about, WIDTH, initial_indent=indent, subsequent_indent=indent)]  # fmt: skip


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import experiments.config  # noqa: F401 - registers the schemas

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    return cfg, choices


def _value(cfg, key: str) -> str:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    value = OmegaConf.select(cfg, key, default=None)
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _groups(config_name: str) -> dict[str, list[str]]:
    """The config groups under ``conf/`` and their options (file names)."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(CONF_DIR.iterdir())
        if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml"))
    }


def print_help(app: str, argv: Sequence[str]) -> None:
    print(render(app, argv))
