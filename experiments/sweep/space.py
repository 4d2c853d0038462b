"""Search spaces in the vocabulary of Hydra's Optuna sweeper, plus conditional hooks.

``hydra.sweeper.params`` maps config keys to Hydra override expressions:

=====================================  ===============================================
``choice(a, b, c)``                    categorical (lists allowed: ``choice([1,2],[2,2])``)
``range(lo, hi[, step])``              integers lo, lo+step, ... < hi (Python's range)
``interval(lo, hi)``                   uniform float
``tag(log, interval(lo, hi))``         log-uniform (``tag(int, ...)``: integers)
a plain value                          fixed for every trial
=====================================  ===============================================

Optuna categoricals hold only scalars, so list choices (stride schedules, per-stage depth
lists) are stored as their JSON text (``"[1, 2, 2]"``) and decoded back into the override.
Conditional spaces (e.g. one depth per stage, only for stages that exist) come from a hook
registered with :func:`register_search_space` and named in ``custom_search_space``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from resnet_blocks import RegistryError, SpecError
from resnet_blocks.registry import Registry

SEARCH_SPACES = Registry("search space")


def register_search_space(name: str):
    """Register a conditional search-space hook ``fn(trial, args) -> {key: value}``.

    The returned values become overrides (lists allowed). ``args`` is
    ``hydra.sweeper.custom_search_space.args``.
    """
    return SEARCH_SPACES.register(name)


@dataclass(frozen=True)
class Param:
    """One searched key: its Optuna distribution, or a fixed value."""

    key: str
    distribution: BaseDistribution | None
    fixed: Any = None
    encoded: bool = False  # categorical of JSON-encoded lists/dicts


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def parse_param(key: str, expression: Any) -> Param:
    """Parse one ``key: expression`` into a :class:`Param` (raises SpecError)."""
    field = f"hydra.sweeper.params.{key}"
    if not isinstance(expression, str):
        return Param(key, None, fixed=expression)
    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={expression}"])
    except Exception as err:  # noqa: BLE001 - Hydra's grammar errors vary
        raise SpecError(
            field, expression, f"choice(...), range(...), interval(...), tag(log, ...) or a value ({err})"
        ) from None
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        options = list(value.list)
        if not options:
            raise SpecError(field, expression, "choice with at least one option")
        if all(_scalar(o) for o in options):
            return Param(key, CategoricalDistribution(options))
        return Param(key, CategoricalDistribution([json.dumps(_plain(o)) for o in options]), encoded=True)
    if isinstance(value, RangeSweep):
        return _range_param(key, expression, value, log)
    if isinstance(value, IntervalSweep):
        lo, hi = value.start, value.end
        if lo is None or hi is None or not lo < hi:
            raise SpecError(field, expression, "interval(lo, hi) with lo < hi")
        if log and lo <= 0:
            raise SpecError(field, expression, "tag(log, interval(lo, hi)) with lo > 0")
        if "int" in value.tags or (isinstance(lo, int) and isinstance(hi, int)):  # int(interval(...))
            return Param(key, IntDistribution(int(lo), int(hi), log=log))
        return Param(key, FloatDistribution(float(lo), float(hi), log=log))
    if value is None or _scalar(value) or isinstance(value, (list, dict)):
        return Param(key, None, fixed=_plain(value))
    raise SpecError(field, expression, "choice(...), range(...), interval(...), tag(log, ...) or a value")


def _range_param(key: str, expression: str, value: RangeSweep, log: bool) -> Param:
    """``range(lo, hi[, step])``: hi is exclusive, as in Hydra's grammar; floats take a float
    step; ``shuffle(range(...))`` is a choice of the range's values."""
    field = f"hydra.sweeper.params.{key}"
    start, stop, step = value.start, value.stop, value.step if value.step is not None else 1
    if step <= 0 or not start < stop:
        raise SpecError(field, expression, "range(lo, hi[, step]) with lo < hi and step > 0 (hi is exclusive)")
    count = math.ceil((stop - start) / step - 1e-9)
    values = [start + i * step for i in range(count)]
    if any(isinstance(v, float) for v in (start, stop, step)):
        values = [round(v, 12) for v in values]  # 0.1 * 3 is not 0.30000000000000004
        if value.shuffle:
            return Param(key, CategoricalDistribution(values))
        return Param(key, FloatDistribution(float(start), float(values[-1]), step=float(step)))
    if value.shuffle:
        return Param(key, CategoricalDistribution(values))
    if log:
        return Param(key, IntDistribution(int(start), int(values[-1]), log=True))
    return Param(key, IntDistribution(int(start), int(values[-1]), step=int(step)))


def _plain(value: Any) -> Any:
    """Hydra's parsed containers -> plain Python lists / dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_space(params: Mapping[str, Any]) -> list[Param]:
    return [parse_param(str(k), v) for k, v in (params or {}).items()]


def sample(trial, params: list[Param], hook: tuple[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Ask ``trial`` for every param (and the hook); return ``{key: value}`` to override."""
    values: dict[str, Any] = {}
    for p in params:
        if p.distribution is None:
            values[p.key] = p.fixed
            continue
        v = suggest(trial, p.key, p.distribution)
        values[p.key] = json.loads(v) if p.encoded else v
    if callable(hook):
        values.update(hook(trial))
    elif hook is not None:
        name, args = hook
        fn: Callable[..., Mapping[str, Any]] = get_search_space(name)
        values.update(fn(trial, dict(args)))
    return values


def search_space_hook(conf: Any, cfg: Any):
    """The conditional part of a space: a registered hook (``{name, args}``), or, as with
    Hydra's Optuna sweeper, the dotted path of ``fn(cfg, trial)``, whose suggestions become
    overrides (a key named ``+w`` adds ``w``). None without one; SpecError if not found."""
    if isinstance(conf, str):
        from hydra.utils import get_method

        try:
            fn = get_method(conf.lstrip("."))
        except Exception as err:  # noqa: BLE001 - ImportError, AttributeError, ValueError
            raise SpecError(
                "hydra.sweeper.custom_search_space", conf, f"the dotted path of fn(cfg, trial) ({err})"
            ) from None

        def hook(trial) -> dict[str, Any]:
            before = set(trial.params)
            fn(cfg, trial)
            return {k: v for k, v in trial.params.items() if k not in before}

        return hook
    if conf and conf.get("name"):
        get_search_space(conf["name"])
        return (conf["name"], conf.get("args") or {})
    return None


def suggest(trial, key: str, d: BaseDistribution) -> Any:
    """Ask ``trial`` for ``key`` from distribution ``d`` through the public suggest API."""
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(key, list(d.choices))
    if isinstance(d, IntDistribution):
        return trial.suggest_int(key, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)


def get_search_space(name: str):
    try:
        return SEARCH_SPACES.get(name).fn
    except RegistryError as err:
        raise SpecError("hydra.sweeper.custom_search_space.name", name, str(err)) from None


@register_search_space("stagewise")
def stagewise(trial, args: Mapping[str, Any]) -> dict[str, Any]:
    """Per-stage depth, width and stride, only for the stages that exist.

    args: ``num_stages`` (list of choices), ``depth`` [lo, hi], ``base_width`` (choices),
    ``width_growth`` (choices: 1 keeps widths, 2 doubles each stage), ``strides`` (choices
    for stages after the first; the first stage has stride 1).
    """
    n = trial.suggest_categorical("num_stages", list(args.get("num_stages", [2, 3])))
    lo, hi = args.get("depth", [1, 3])
    depths = [trial.suggest_int(f"stage{i + 1}.depth", lo, hi) for i in range(n)]
    base = trial.suggest_categorical("base_width", list(args.get("base_width", [16, 32])))
    growth = trial.suggest_categorical("width_growth", list(args.get("width_growth", [1, 2])))
    strides = [1] + [
        trial.suggest_categorical(f"stage{i + 1}.stride", list(args.get("strides", [1, 2]))) for i in range(1, n)
    ]
    return {
        "model.depths": depths,
        "model.widths": [int(base * growth**i) for i in range(n)],
        "model.strides": strides,
    }
