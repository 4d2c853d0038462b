"""The single-run command for a trial: its architecture and hyper-parameters, the full budget.

A sweep overlay (``+sweep=<name>``) holds two kinds of settings: what the trials share about
the model, the data and training (a searched space's fixed ``model.stem_width``, a data
subset, a fixed batch size), and the short trial budget (``trainer.epochs``,
``tracking.log_model=false``). Retraining a trial keeps the first kind, as explicit overrides,
and drops the overlay, so the budget and tracking come from the base config: its full epochs,
and a logged model. Budget settings given on the
sweep's command line (``trainer.epochs=2`` for quick trials) are dropped too, unless searched.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from experiments.overrides import config_composer, format_override  # noqa: F401 - config_composer: re-exported

KEPT_GROUPS = ("model", "data", "trainer")  # what an overlay may say about the trial's model, data, training
BUDGET_KEYS = ("trainer.epochs", "trainer.steps_per_epoch", "tracking.log_model")  # a trial's, not a final run's


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _is_overlay(override: str) -> bool:
    key = _key(override)
    return key == "sweep" or key.startswith(("hydra.", "trial."))


def retrain_overrides(
    overrides: Sequence[str], compose: Callable[[list[str]], DictConfig], searched: Sequence[str] = ()
) -> list[str]:
    """``overrides`` without the sweep overlay and the trial budget (``searched`` keys stay),
    plus the overlay's other ``model``/``data``/``trainer`` settings as explicit overrides. ``compose(overrides)``
    composes the run config."""
    kept = [o for o in overrides if not _is_overlay(o) and (_key(o) not in BUDGET_KEYS or _key(o) in searched)]
    if not any(_is_overlay(o) for o in overrides):
        return kept
    swept, plain = compose(list(overrides)), compose(kept)
    given = {_key(o) for o in kept}
    extra = []
    for group in KEPT_GROUPS:
        a = OmegaConf.to_container(swept[group], resolve=False)
        b = OmegaConf.to_container(plain[group], resolve=False)
        for key, value in a.items():
            if value != b.get(key) and f"{group}.{key}" not in given and f"{group}.{key}" not in BUDGET_KEYS:
                extra.append(format_override(f"{group}.{key}", value))
    return kept + extra


def retrain_command(
    overrides: Sequence[str], compose: Callable[[list[str]], DictConfig] | None = None, searched: Sequence[str] = ()
) -> str:
    """The ``python -m experiments.run`` command that retrains a trial with the full budget
    (without ``compose``: the trial's overrides with the overlay in RUN mode, its budget too)."""
    if compose is not None:
        args = retrain_overrides(overrides, compose, searched)
    else:
        args = [*overrides, "hydra.mode=RUN"] if any(_is_overlay(o) for o in overrides) else list(overrides)
    return "python -m experiments.run " + " ".join(shlex.quote(a) for a in args)
