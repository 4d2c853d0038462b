"""Configuration errors in one line, before Hydra prints its own.

Hydra reports a misspelt key, an unknown group option or a wrong type with several lines of
its own text (and lists of search paths) and exit code 1. Before Hydra runs the app, the
command line is composed here as Hydra will compose it; an error becomes one line naming the
key, what was received and what is allowed, with "did you mean" from the keys or options
next to it, and exit code 2 (:func:`experiments.cli.user_errors`). ``+key`` added to a typed
group is refused too: it can only be a misspelling. ``hydra.*`` settings are composed with
Hydra's own config and checked the same way (``hydra.sweeper.n_trial=3``); sweep
expressions are the sweeper's to check; help and custom config paths are left to Hydra.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from experiments.cli import UserError
from experiments.code_tags import refuse_targets

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# Hydra flags that take a value, and flags after which there is nothing to check.
_VALUED = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun"}
_LEAVE = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc",
          "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}  # fmt: skip


def check_command_line(argv: Sequence[str], config_name: str = "config"):
    """Compose ``argv``'s overrides as Hydra will; raise UserError (one line) on a config error.

    Returns the composed run config (None where Hydra is left to it: help, custom config
    paths, no overrides)."""
    overrides = _overrides(argv)
    if overrides is None or not overrides:
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:  # OverrideParseException, or the grammar's own
        raise UserError(_grammar_error(overrides, err)) from None
    # The run config's own keys and groups; sweep expressions go to the sweeper, which checks
    # them against the config composed here.
    kept = [o.input_line for o in parsed if not o.is_sweep_override() and not _is_hydra(o.get_key_element())]
    cfg = _compose(kept, config_name)
    refuse_targets(cfg)  # (first: its line says where code may come in, wherever the key was added)
    check_added_keys(cfg, kept)
    searched = [o for o in parsed if o.is_sweep_override() and not _is_hydra(o.get_key_element())]
    if searched:  # (the sweeper checks its config's own spaces too, once it has started)
        check_searched_values(searched, kept, config_name)
    # Hydra's own settings (``hydra.sweeper.n_trials``, ``hydra/launcher=joblib``) are composed
    # too, so that a misspelt sweeper key gets the same line as a misspelt trainer key.
    if settings := [o.input_line for o in parsed if not o.is_sweep_override() and _is_hydra(o.get_key_element())]:
        check_added_keys(_compose([*kept, *settings], config_name, hydra=True), settings)
    return cfg


def check_searched_values(searched, kept: list[str], config_name: str = "config") -> None:
    """Every value a trial may give the searched overrides (each choice; a range's or an
    interval's ends) composes: a wrong one anywhere in a space is refused now, in one line,
    before Hydra and Optuna start. One composition per round (the i-th value of each key)."""
    values = [(o.get_key_element(), _searched_values(o)) for o in searched]
    values = [(key, v) for key, v in values if v]
    names = {key.lstrip("+~") for key, _ in values}
    kept = [o for o in kept if o.lstrip("+~").split("=", 1)[0] not in names]  # (the searched value wins)
    spaces = [[f"{key}={x}" for x in v] for key, v in values]
    if found := first_failing(lambda overrides: _compose_quietly(overrides, config_name), kept, spaces):
        _compose([*kept, found[1]], config_name)  # (raises its one line)


def first_failing(compose, fixed: list[str], spaces: list[list[str]]) -> tuple[int, str, Exception] | None:
    """Compose ``fixed`` with every override of each space (a key's values as overrides), the
    i-th of each space together: one composition per round, and key by key only in a round
    that fails. The first override that fails alone: (its space's index, it, the error)."""
    for i in range(max((len(v) for v in spaces), default=0)):
        round_ = [v[i % len(v)] for v in spaces]
        try:
            compose([*fixed, *round_])
            continue
        except Exception:  # noqa: BLE001 - find which key (one composition each)
            pass
        for k, override in enumerate(round_):
            try:
                compose([*fixed, override])
            except Exception as err:  # noqa: BLE001 - Hydra's composition errors vary
                return k, override, err
    return None


def _searched_values(o) -> list[str]:
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    v = o.value()
    if isinstance(v, IntervalSweep):
        return [str(v.start), str(v.end)]
    if isinstance(v, RangeSweep):
        r = list(v.range())
        return [str(r[0]), str(r[-1])] if r else []
    if o.is_choice_sweep() and o.value_type.name != "GLOB_CHOICE_SWEEP":
        return list(o.sweep_string_iterator())
    return []


def is_single_run(argv: Sequence[str]) -> bool:
    """No sweep: neither ``--multirun`` nor ``+sweep=`` nor a sweep expression (``a=1,2``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a in ("-m", "--multirun") for a in argv):
        return False
    overrides = _overrides(argv) or []
    parsed = OverridesParser.create().parse_overrides(overrides)
    return not any(o.is_sweep_override() or o.get_key_element().lstrip("+~") == "sweep" for o in parsed)


def _overrides(argv: Sequence[str]) -> list[str] | None:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _LEAVE or arg.split("=", 1)[0] in _LEAVE:
            return None
        if arg in _VALUED:
            skip = True
            continue
        if arg.startswith("-"):  # --multirun, --run, --resolve, ...
            continue
        out.append(arg)
    return out


def _is_hydra(key: str) -> bool:
    """Hydra's own settings, left to Hydra; ``hydra.searchpath`` is kept: it says where
    configs (a sweep overlay, a user's presets) are found."""
    key = key.lstrip("+~")
    if key == "hydra.searchpath":
        return False
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _compose(overrides: list[str], config_name: str, hydra: bool = False):
    from hydra import compose, initialize_config_dir

    import experiments.config  # noqa: F401 - registers the schemas

    with composition_errors(overrides, config_name):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=hydra)


@contextmanager
def composition_errors(overrides: Sequence[str], config_name: str = "config"):
    """Hydra's composition errors (a misspelt key, an unknown option, a wrong type) inside
    the block become one-line UserErrors, as on the command line (finalize and evaluate
    compose their runs' configs with the user's overrides this way)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException

    try:
        yield
    except MissingConfigException as err:
        raise UserError(_missing_option(err, list(overrides))) from None
    except ConfigCompositionException as err:
        raise UserError(_composition_error(err, list(overrides), config_name)) from None


def _missing_option(err, overrides: list[str]) -> str:
    """``model=resnet51``: the group, the option received, the group's options, the nearest."""
    m = re.search(r"Could not find '([^']+)'", str(err))
    missing = m.group(1) if m else (err.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    options = sorted(err.options or [])
    if not group or not options:
        return _first_line(err)
    near = difflib.get_close_matches(option, options, n=3)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    return f"{group.replace('/', '.')}: received '{option}'; allowed: one of {', '.join(options)}{hint}"


def _composition_error(err, overrides: list[str], config_name: str) -> str:
    cause = err.__cause__
    text = str(err)
    m = re.search(r"Could not override '([^']+)'", text)
    key = m.group(1) if m else getattr(cause, "full_key", None)
    if cause is not None and "not in" not in str(cause) and "is not in struct" not in str(cause):
        # A value of the wrong type: OmegaConf says what it could not convert to.
        said = str(cause)
        if "does not support deletion" in said:
            return f"~{key}: a key of a typed group cannot be deleted; set it instead ({key}=...)"
        value = _value_of(overrides, key)
        m = re.search(r"could not be converted to (\w+)", said)
        kinds = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}
        if m and m.group(1) in kinds:
            allowed = kinds[m.group(1)]
        elif "is not a ListConfig" in said:
            allowed = "a list, e.g. [1,2,2]"
        elif "not a valid bool" in said:
            allowed = "true or false"
        else:
            allowed = _first_line(cause)
        return f"{key}: received {value}; allowed: {allowed}"
    if key:
        return _unknown_key(key, overrides, config_name)
    return _first_line(err)


def _unknown_key(key: str, overrides: list[str], config_name: str) -> str:
    """``trainer.epoch=3``: the key, the keys next to it and the nearest of them."""
    parent_path, _, name = key.rpartition(".")
    others = [o for o in overrides if not o.lstrip("+~").startswith(key + "=")]
    try:
        from omegaconf import DictConfig, OmegaConf

        cfg = _compose_quietly(others, config_name, hydra=key.startswith("hydra."))
        parent = OmegaConf.select(cfg, parent_path, default=None) if parent_path else cfg
        keys = [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []
    except Exception:  # noqa: BLE001 - the hint is a courtesy: the line stands without it
        keys = []
    near = difflib.get_close_matches(name, keys, n=3)
    where = f"{parent_path}" if parent_path else "the run config"
    hint = f" (did you mean {', '.join(f'{parent_path}.{n}' if parent_path else n for n in near)}?)" if near else ""
    plus = f"; +{key}=... adds a key only where the config is open (model.block_args, tracking.tags)"
    return f"{key}: no such key in {where}{hint}{plus if not near else ''}"


def _compose_quietly(overrides: list[str], config_name: str, hydra: bool = False):
    """:func:`_compose` without translating its errors (for hints inside a translation)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=hydra)


def _value_of(overrides: list[str], key: str | None) -> str:
    for o in overrides:
        k, _, v = o.lstrip("+~").partition("=")
        if k == key:
            return repr(v) if not v.replace(".", "").replace("-", "").isdigit() else v
    return "?"


def _grammar_error(overrides: list[str], err) -> str:
    """A malformed override (``'model.depth=choice('``): the override, then Hydra's reason."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except HydraException as one:
            key = o.split("=", 1)[0].lstrip("+~")
            return f"{key}: cannot parse the override {o!r}: {_first_line(one)}"
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def check_added_keys(base, fixed: list[str]) -> None:
    """``+group.key=value`` may add keys to open dicts (``model.block_args``, ``tracking.tags``)
    and new top-level nodes, never to a typed group, where it can only be a misspelling."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, OmegaConf

    from resnet_blocks import SpecError

    for override in OverridesParser.create().parse_overrides(fixed):
        key = override.get_key_element()
        if not key.startswith("+"):  # (+key adds; ++key adds or sets: both can only misspell a typed key)
            continue
        path = key.lstrip("+")
        parent_path, _, name = path.rpartition(".")
        parent = OmegaConf.select(base, parent_path, default=None) if parent_path else base
        if not isinstance(parent, DictConfig) or not dataclasses.is_dataclass(OmegaConf.get_type(parent)):
            continue
        fields = [f.name for f in dataclasses.fields(OmegaConf.get_type(parent))]
        if name in fields:
            continue
        if not parent_path and (name not in parent or isinstance(parent.get(name), DictConfig)):
            continue  # a config group added at the top (+sweep=quick), not a value
        near = [f"{parent_path}.{n}" if parent_path else n for n in difflib.get_close_matches(name, fields, n=3)]
        if not parent_path:  # (+epochs=3: a group's key, written without its group)
            near += [f"{g}.{name}" for g in fields if isinstance(parent.get(g), DictConfig) and name in parent[g]]
        where = parent_path or "the run config"
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise SpecError(key, name, f"a key of {where}, which is typed: {', '.join(fields)}{hint}")
