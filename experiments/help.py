"""``--help`` for the Hydra apps (run, describe, a sweep): groups, options and the keys users
change most, with the values this command line resolves to, in 80 columns.

Hydra's own help prints a fixed template (run) or the whole config with raw interpolations
(describe). Ours composes the config with the other arguments, so ``run model=resnet18
--help`` shows ResNet-18's depths and widths, and ``run +sweep=blocks --help`` (``resnet-blocks
sweep blocks --help``) shows that sweep: its space, budget, sampler and sweeper settings.
``--hydra-help`` still gives Hydra's flags.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

WIDTH = 80
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# How the user called us: None, ``python -m experiments.<app>``; a name (``resnet-blocks``),
# the console script's sub-commands. Set by the dispatcher (experiments/command.py).
PROGRAM: str | None = None

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
SWEEPER = "hydra.sweeper."
# The sweeper's settings users change most (keys under hydra.sweeper).
SWEEP_KEYS = [
    ("n_trials", "trials to reach (a rerun resumes up to it)"),
    ("storage", "Optuna storage; postgresql://... for machines"),
    ("n_jobs", "trials training at once"),
    ("baselines", "null: the run's own config; or presets, lists"),
    ("constraints.max_params", "a number, or relative: 0.6*baseline"),
    ("constraints.max_macs", "MACs at batch 1: a number, or 0.6*baseline"),
    ("checkpoints", "per-epoch, for retries: auto | a path | none"),
    ("devices", "null | auto | cpu | [0,1]: one per worker"),
    ("dry_run", "N: sample N architectures, train nothing"),
]

# {run}, {describe}, {blocks}, {sweep}NAME: the commands, as the user calls them (_commands).
APPS = {
    "run": {
        "config": "config",
        "usage": "{run} [group=option ...] [key=value ...]",
        "about": "Train one ResNet configuration and track it in MLflow (default: CIFAR ResNet-20 on "
        "the embedded digits dataset, about 20 s on 2 CPU cores). An Optuna architecture search "
        "instead: {sweep}<name> (its own help: {sweep}<name> --help).",
        "groups": ("data", "model", "sweep", "tracking", "trainer"),
        "keys": RUN_KEYS,
        "examples": [
            ("{run}", "the default run"),
            ("{run} model=resnet18 data=cifar10 trainer.epochs=30", ""),
            ("{run} model.depths=[2,2,2] model.block=bottleneck", ""),
            ("{sweep}quick", "a 12-trial search on digits"),
        ],
    },
    "describe": {
        "config": "describe",
        "usage": "{describe} [group=option ...] [key=value ...]",
        "about": "A model's per-stage output shapes, parameters and MACs, counted without training "
        "(format=json: one JSON object).",
        "groups": ("data", "model"),
        "keys": DESCRIBE_KEYS,
        "examples": [
            ("{describe} model=resnet50 data=cifar10", ""),
            ("{describe} model.block=bottleneck format=json", ""),
        ],
    },
}

MORE = [
    ("{run} --cfg job", "the full config"),
    ("{describe} model=NAME", "a model's stages and costs"),
    ("{blocks}", "blocks, shortcuts, their arguments"),
    ("mlflow ui --backend-store-uri sqlite:///mlflow.db", "review runs and sweeps"),
    ("--hydra-help", "Hydra's own flags (multirun, ...)"),
]

DEFAULT_STORAGE = "sqlite:///optuna.db"  # finalize's and report's --storage default


def _wrap(text: str, width: int = WIDTH, **kwargs) -> list[str]:
    """``textwrap.wrap`` that keeps ``resnet-blocks`` and ``--study`` whole."""
    return textwrap.wrap(text, width, break_on_hyphens=False, **kwargs)


def wants_help(argv: Sequence[str]) -> bool:
    return any(a in ("--help", "-h") for a in argv)


def _commands() -> dict[str, str]:
    """The commands as this user calls them: ``resnet-blocks run`` or ``python -m experiments.run``;
    ``sweep`` is followed by the sweep's name (``resnet-blocks sweep quick``, ``... +sweep=quick``)."""
    if PROGRAM:
        names = ("run", "describe", "blocks", "finalize", "report")
        return {**{n: f"{PROGRAM} {n}" for n in names}, "sweep": f"{PROGRAM} sweep "}
    return {
        **{n: f"python -m experiments.{n}" for n in ("run", "describe", "blocks")},
        **{n: f"python -m experiments.sweep.{n}" for n in ("finalize", "report")},
        "sweep": "python -m experiments.run +sweep=",
    }


def _cmd(template: str) -> str:
    return template.format(**_commands())


def render(app: str, argv: Sequence[str]) -> str:
    """The help of ``app`` (``run`` or ``describe``) for the command line ``argv``; with
    ``+sweep=NAME`` among run's arguments, that sweep's help."""
    overrides, sweeps = _split([a for a in argv if not a.startswith("-") and "=" in a])
    spec = APPS[app]
    cfg, choices = _compose(spec["config"], overrides)
    if app == "run" and choices.get("sweep"):
        return _render_sweep(cfg, choices, overrides, sweeps)
    out = ["usage: " + _cmd(spec["usage"]), "", *_wrap(_cmd(spec["about"])), ""]
    out += _groups_section(spec["groups"], choices)
    out += ["", "Common keys (key=value), with their values here:"]
    for key, about in spec["keys"]:
        out += _row(f"{key}={_value(cfg, key)}", about)
    out += ["", "Examples:"]
    for command, about in spec["examples"]:
        out += _row(_cmd(command), about, width=42)
    out += ["", "More:"]
    for command, about in MORE:
        out += _row(_cmd(command), about, width=42)
    out += [""]
    out += _wrap(
        "A misspelt key, an unknown option or a refused value is one line naming the field and "
        "what is allowed (exit 2).",
        WIDTH,
    )
    return "\n".join(out)


def _render_sweep(cfg, choices: dict, overrides: list[str], sweeps: list[str]) -> str:
    """A sweep's help: what it searches and how, its settings, and what comes after."""
    name, sweeper, study_name = choices["sweep"], cfg.hydra.sweeper, _value(cfg, SWEEPER + "study_name")
    cmds = _commands()
    this = cmds["sweep"] + name
    usage = f"usage: {this} [group=option ...] [key=value ...] [key=choice(...) ...]"
    out = _wrap(usage, subsequent_indent=" " * (8 + len(this)))
    if about := _sweep_about(name):
        out += ["", *_wrap(about)]
    out += ["", f"Searches ({SWEEPER}params; key=choice(...) adds or replaces a key, key=value fixes it):"]
    out[-1:] = _wrap(out[-1])
    space = _space(_resolved(sweeper.params) or {}, overrides, sweeps)
    for key, expression in space.items():
        fixed = "" if _is_sweep(key, expression) else " (fixed)"
        out += _row(key, _spaced(expression) + fixed, width=22)
    hook = _resolved(sweeper.custom_search_space) or {}
    if isinstance(hook, dict) and hook.get("name"):
        args = ", ".join(f"{k}={_plain(v)}" for k, v in (hook.get("args") or {}).items())
        out += _row("custom_search_space", f"{hook['name']}({args})", width=22)
    if not space and not (isinstance(hook, dict) and hook.get("name")):
        out += ["  (nothing: add key=choice(...) or key=interval(lo,hi))"]
    out += ["", "Study:"]
    study = [
        ("name", f"{study_name} in {_value(cfg, SWEEPER + 'storage')}"),
        ("trials", f"{_value(cfg, SWEEPER + 'n_trials')}, trainer.epochs={_value(cfg, 'trainer.epochs')} each"),
        ("sampler", _named(_resolved(sweeper.sampler))),
        ("pruner", _named(_resolved(sweeper.pruner))),
        ("objectives", _objectives(_resolved(sweeper.direction), _resolved(cfg.objective))),
        ("constraints", _constraints(_resolved(sweeper.constraints))),
        ("baselines", _baselines(_resolved(sweeper.baselines), choices)),
    ]
    for label, text in study:
        out += _row(label, text, width=11)
    out += ["", f"Sweeper settings ({SWEEPER}KEY=value), with their values here:"]
    for key, about in SWEEP_KEYS:
        out += _row(f"{key}={_value(cfg, SWEEPER + key)}", about, width=30)
    out += [""]
    out += _groups_section(("data", "model", "tracking", "trainer"), choices, "of the trials' config")
    storage = _value(cfg, SWEEPER + "storage")
    where = f"--study {study_name}" + ("" if storage == DEFAULT_STORAGE else f" --storage {storage}")
    out += ["", "Then:"]
    out += _row(f"{cmds['finalize']} {where}", "retrain top trials, ship the winner", width=38)
    out += _row(f"{cmds['report']} --study {study_name} --storage {storage}", "the study's HTML report", width=38)
    out += _row(f"{cmds['run']} --help", "the trials' keys", width=38)
    out += [""]
    out += _wrap(
        "Rerunning the command resumes the study. A misspelt key, an unknown option or a refused "
        "value is one line naming the field and what is allowed (exit 2). --hydra-help: Hydra's "
        "own flags.",
        WIDTH,
    )
    return "\n".join(out)


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """The overrides Hydra composes, and the sweep expressions (``key=choice(...)``) the sweeper
    takes as its space's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(args)
    return ([o.input_line for o in parsed if not o.is_sweep_override()],
            [o.input_line for o in parsed if o.is_sweep_override()])  # fmt: skip


def _space(params: dict, overrides: list[str], sweeps: list[str]) -> dict[str, str]:
    """The searched keys and their spaces as the sweeper will see them: the sweep config's
    ``params``, command-line sweeps replacing or adding a key, a plain ``key=value`` fixing it."""
    space = {str(k): _plain(v) for k, v in params.items()}
    for line in overrides:
        space.pop(line.split("=", 1)[0].lstrip("+~"), None)
    for line in sweeps:
        key, expression = line.split("=", 1)
        space[key.lstrip("+~")] = expression
    return space


def _is_sweep(key: str, expression: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"{key}={expression}").is_sweep_override()
    except Exception:  # noqa: BLE001 - the sweeper says what is wrong with it
        return True


def _sweep_about(name: str) -> str:
    """The sweep config's leading comment, less the line that says how to run it."""
    path = CONF_DIR / "sweep" / f"{name}.yaml"
    if not path.is_file():
        return ""
    said = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            said.append(line[1:].strip())
    return re.sub(r"\s*python -m experiments\.run \+sweep=\w+\.?", "", " ".join(said)).strip()


def _spaced(expression: str) -> str:
    """``choice([2,2,2],[3,3,3])`` -> ``choice([2,2,2], [3,3,3])``: wrappable between options."""
    out, depth = [], 0
    for i, ch in enumerate(expression):
        depth += ch in "([{"
        depth -= ch in ")]}"
        out.append(ch)
        if ch == "," and depth == 1 and not expression[i + 1 : i + 2].isspace():
            out.append(" ")
    return "".join(out)


def _named(node) -> str:
    """``{name: tpe, seed: 0, options: {n_startup_trials: 4}}`` -> ``tpe (seed 0, n_startup_trials=4)``."""
    if not isinstance(node, dict):
        return _plain(node)
    extra = [f"seed {node['seed']}"] if node.get("seed") is not None else []
    extra += [f"{k}={_plain(v)}" for k, v in (node.get("options") or {}).items()]
    return f"{node.get('name')}" + (f" ({', '.join(extra)})" if extra else "")


def _objectives(direction, objective) -> str:
    directions = direction if isinstance(direction, list) else [direction]
    objectives = objective if isinstance(objective, list) else [objective]
    if len(directions) == len(objectives):
        return ", ".join(f"{d} {o}" for d, o in zip(directions, objectives))
    return f"direction={_plain(direction)}, objective={_plain(objective)}"


def _constraints(node) -> str:
    set_ = {k: v for k, v in (node or {}).items() if v is not None}
    return ", ".join(f"{k}={_plain(v)}" for k, v in set_.items()) or "none"


def _baselines(node, choices: dict) -> str:
    if node is None:
        return f"the run config's own model and trainer (model={choices.get('model')}), trained first"
    return _plain(node) if node else "none"


def _row(left: str, about: str, width: int = 30) -> list[str]:
    """``  left  about``, the description wrapped at ``width`` + 4 (on its own line when
    ``left`` is longer)."""
    indent = " " * (width + 4)
    if not about:
        return _wrap(left, initial_indent="  ", subsequent_indent="      ")
    if len(left) <= width:
        return _wrap(about, initial_indent=f"  {left:<{width}}  ", subsequent_indent=indent)
    return [*_wrap(left, initial_indent="  ", subsequent_indent="      "),
            *_wrap(about, initial_indent=indent, subsequent_indent=indent)]  # fmt: skip


def _groups_section(groups: Sequence[str], choices: dict, whose: str = "") -> list[str]:
    """``Config groups``: each of ``groups`` with its options, ``*`` marking this command line's."""
    available = _groups()
    out = [f"Config groups{' ' + whose if whose else ''} (group=option; * this command line's):"]
    for group in groups:
        marked = [f"*{o}" if choices.get(group) == o else o for o in available.get(group, [])]
        out += _wrap(", ".join(marked), initial_indent=f"  {group + ':':<10}", subsequent_indent=" " * 12)
    return out


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import experiments.config  # noqa: F401 - registers the schemas

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    return cfg, choices


def _resolved(node):
    """A config node as plain Python, interpolations resolved (None where one cannot be yet)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if not isinstance(node, (DictConfig, ListConfig)):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...}, known only once Hydra runs the app
        return None


def _plain(value) -> str:
    """A value as it is written on the command line: ``[3,3,3]``, ``null``, ``true``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_plain(v) for v in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _value(cfg, key: str) -> str:
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(cfg, key, default=None)
    except Exception:  # noqa: BLE001 - an interpolation known only once Hydra runs the app
        return "(set at start)"
    return _plain(_resolved(value))


def _groups() -> dict[str, list[str]]:
    """The config groups under ``conf/`` and their options (file names)."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(CONF_DIR.iterdir())
        if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml"))
    }


def print_help(app: str, argv: Sequence[str]) -> None:
    import os
    import sys

    try:
        print(render(app, argv), flush=True)
    except BrokenPipeError:  # ``--help | head``: the reader is gone, and that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
