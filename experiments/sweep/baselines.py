"""Baselines: what the user would have trained without the sweep, entered as the study's first trials.

A search is worth its cost only if it beats the model the user would have trained anyway. The
run config's own model and trainer (``default``) and any presets or override lists named in
``hydra.sweeper.baselines`` are enqueued (Optuna's ``enqueue_trial``) before the sampler's
first trial, each once per study (a resumed sweep or a second worker finds them there). Each
trial's value is then shown against the best baseline's, with the standard error of the
difference. A baseline whose searched values lie outside the space widens the space to hold
them: the sampler learns from the baseline like from any other trial.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from experiments.sweep.selection import accuracy_se, is_accuracy
from experiments.sweep.space import Param
from resnet_blocks import SpecError

log = logging.getLogger("experiments.sweep")

BASELINE_ATTR = "baseline"  # trial user attribute: the baseline's label (``default``, ``cifar_resnet32``)
BASELINE_OVERRIDES_ATTR = "baseline_overrides"  # what the baseline adds to the sweep's fixed overrides
VS_BASELINE_ATTR = "vs_baseline"  # trial user attribute: "+0.012 ± 0.008 vs baseline t00 (default)"
DEFAULT = "default"


@dataclass(frozen=True)
class Baseline:
    label: str
    overrides: tuple[str, ...]  # added after the sweep's fixed overrides


def parse_baselines(entries: Any, *, resnet: bool) -> list[Baseline]:
    """``hydra.sweeper.baselines``: null (``[default]`` for a ResNet task, none for any other
    app), or a list of ``default``, a model preset (``cifar_resnet32``), one override
    (``trainer.learning_rate=0.1``) or a list of overrides."""
    if entries is None:
        return [Baseline(DEFAULT, ())] if resnet else []
    if isinstance(entries, (str, int, float)) or not isinstance(entries, (list, tuple, ListConfig)):
        raise SpecError("hydra.sweeper.baselines", entries, "a list of default, model presets or override lists")
    out: list[Baseline] = []
    for i, entry in enumerate(entries):
        field = f"hydra.sweeper.baselines[{i}]"
        if isinstance(entry, (list, tuple, ListConfig)):
            overrides = tuple(str(o) for o in entry)
            if not overrides or not all("=" in o for o in overrides):
                raise SpecError(field, list(entry), "a non-empty list of overrides key=value")
            out.append(Baseline(" ".join(overrides), overrides))
        elif isinstance(entry, str) and entry == DEFAULT:
            out.append(Baseline(DEFAULT, ()))
        elif isinstance(entry, str) and "=" in entry:
            out.append(Baseline(entry, (entry,)))
        elif isinstance(entry, str) and entry:
            out.append(Baseline(entry, (f"model={entry}",)))
        else:
            raise SpecError(field, entry, "default, a model preset name, key=value, or a list of overrides")
    labels = [b.label for b in out]
    for label in labels:
        if labels.count(label) > 1:
            raise SpecError("hydra.sweeper.baselines", labels, f"each baseline once ({label!r} is given twice)")
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _encoded(p: Param, value: Any) -> Any:
    return json.dumps(value) if p.encoded else value


def resolve(
    baselines: Sequence[Baseline],
    compose: Callable[[list[str]], DictConfig],
    fixed: list[str],
    params: list[Param],
    presets: Sequence[str] = (),
) -> list[tuple[Baseline, dict[str, Any]]]:
    """Each baseline with its values of the searched keys (as Optuna params), composed as a
    job would be; a preset or override that does not compose is a SpecError naming it."""
    out = []
    for i, b in enumerate(baselines):
        try:
            cfg = compose([*fixed, *b.overrides])
        except Exception as err:  # noqa: BLE001 - Hydra's composition errors vary
            near = ""
            if len(b.overrides) == 1 and b.overrides[0].startswith("model=") and presets:
                close = difflib.get_close_matches(b.label, list(presets), n=3)
                near = f" (did you mean {', '.join(close)}?)" if close else ""
                allowed = f"default, a model preset ({', '.join(presets)}){near}, or overrides"
            else:
                allowed = f"overrides that compose with the run config ({_first_line(err)})"
            raise SpecError(f"hydra.sweeper.baselines[{i}]", b.label, allowed) from None
        values = {}
        for p in params:
            if p.distribution is None:
                continue
            value = _plain(OmegaConf.select(cfg, p.key, default=None))
            if value is not None:
                values[p.key] = _encoded(p, value)
        out.append((b, values))
    return out


def widen(params: list[Param], resolved: list[tuple[Baseline, dict[str, Any]]]) -> list[Param]:
    """The space, widened to hold every baseline's values (a categorical gets the value as a
    choice, a range its bounds); each widening is logged once."""
    by_key = {p.key: p for p in params}
    for b, values in resolved:
        for key, value in values.items():
            p = by_key[key]
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                if value in d.choices:
                    continue
                d = CategoricalDistribution([*d.choices, value])
            elif isinstance(d, (FloatDistribution, IntDistribution)) and isinstance(value, (int, float)):
                if d.low <= value <= d.high and (d.step is None or _on_step(d, value)):
                    continue
                if d.step is not None and not _on_step(d, value):
                    raise SpecError(
                        f"hydra.sweeper.params.{key}",
                        value,
                        f"a baseline value on the space's step {d.step} ({b.label})",
                    )
                low, high = min(d.low, value), max(d.high, value)
                d = type(d)(low, high, log=d.log, step=d.step) if d.step is not None else type(d)(low, high, log=d.log)
            else:
                continue
            log.info("baseline %s: %s=%s added to the searched space", b.label, key, value)
            by_key[key] = Param(key, d, p.fixed, p.encoded)
    return [by_key[p.key] for p in params]


def _on_step(d, value) -> bool:
    return abs((value - d.low) / d.step - round((value - d.low) / d.step)) < 1e-9


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def enqueue(study, resolved: list[tuple[Baseline, dict[str, Any]]], lock) -> list[str]:
    """Enqueue the baselines the study does not hold yet (in any state); return their labels.

    Under the study lock, so two workers starting together enqueue each baseline once."""
    added = []
    with lock:
        held = {t.user_attrs.get(BASELINE_ATTR) for t in study.get_trials(deepcopy=False)}
        for b, values in resolved:
            if b.label in held:
                continue
            study.enqueue_trial(values, user_attrs={BASELINE_ATTR: b.label, BASELINE_OVERRIDES_ATTR: list(b.overrides)})
            added.append(b.label)
    return added


def trial_label(trial) -> str | None:
    """The baseline label of ``trial`` (a Trial or FrozenTrial), None for a searched trial."""
    return trial.user_attrs.get(BASELINE_ATTR)


def named(arch: str, label: str | None) -> str:
    """How a trial is named wherever it is listed: ``baseline regular d3-3-3 w16 s122``."""
    if label is None:
        return arch
    return f"baseline {arch}" if label == DEFAULT else f"baseline[{label}] {arch}"


@dataclass(frozen=True)
class Difference:
    """A trial's first objective minus the best baseline's, with its standard error."""

    baseline_trial: int
    baseline_label: str
    value: float
    se: float | None  # None when the objective is not an accuracy (no binomial noise model)

    def text(self) -> str:
        se = f" ± {self.se:.4f}" if self.se is not None else ""
        return f"{self.value:+.4f}{se} vs baseline t{self.baseline_trial:02d} ({self.baseline_label})"

    def to_dict(self) -> dict[str, Any]:
        return {"vs_baseline": self.value, "vs_baseline_se": self.se, "baseline_trial": self.baseline_trial,
                "baseline_label": self.baseline_label}  # fmt: skip


def best_baseline(trials, direction: StudyDirection):
    """The COMPLETE baseline trial with the best first objective, or None."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values and trial_label(t) is not None]
    if not done:
        return None
    sign = 1 if direction == StudyDirection.MAXIMIZE else -1
    return max(done, key=lambda t: (sign * t.values[0], -t.number))


def _difference(v: float, base, objective: str, num_val: int | None) -> Difference:
    """For an accuracy measured on ``num_val`` validation images, the standard error is that
    of a difference of two independent binomial proportions (an upper bound when both are
    measured on the same images, as here: their errors are positively correlated)."""
    b = base.values[0]
    se = None
    if is_accuracy(objective) and num_val and 0.0 <= v <= 1.0 and 0.0 <= b <= 1.0:
        se = math.hypot(accuracy_se(v, num_val), accuracy_se(b, num_val))
    return Difference(base.number, trial_label(base), v - b, se)


def differences(trials, objective: str, direction: StudyDirection, num_val: int | None) -> dict[int, Difference]:
    """Each COMPLETE trial's difference to the best baseline on the first objective."""
    base = best_baseline(trials, direction)
    if base is None:
        return {}
    return {
        t.number: _difference(t.values[0], base, objective, num_val)
        for t in trials
        if t.state == TrialState.COMPLETE and t.values
    }


def attribute_before_tell(study, trial, values: list[float]) -> None:
    """Before ``trial`` is told COMPLETE with ``values``: its difference to the best baseline
    finished so far (itself included, if it is one), as a user attribute that optuna-dashboard
    shows. (A finished trial's attributes can no longer be written; the sweep's summary
    compares every trial to the best baseline at its end.)"""
    from optuna.trial import FrozenTrial

    objectives = study.user_attrs.get("objectives") or ["objective"]
    trials = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
    label = trial.user_attrs.get(BASELINE_ATTR)
    own = FrozenTrial(
        number=trial.number, state=TrialState.COMPLETE, value=None, values=list(values), datetime_start=None,
        datetime_complete=None, params={}, distributions={}, user_attrs={BASELINE_ATTR: label} if label else {},
        system_attrs={}, intermediate_values={}, trial_id=-1,
    )  # fmt: skip
    base = best_baseline([*trials, own], study.directions[0])
    if base is None:
        return
    num_val = study.user_attrs.get("num_val")
    d = _difference(values[0], base, str(objectives[0]), num_val if isinstance(num_val, int) else None)
    trial.set_user_attr(VS_BASELINE_ATTR, d.text())
