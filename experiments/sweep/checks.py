"""What a sweep refuses before its first trial, and what keeps its workers apart.

A searched key the run config lacks (``'model.foo=choice(1,2)'``) would fail every trial, and
an added key in a typed group (``+trainer.epoch=3``, Hydra's own hint for a misspelt key)
would be accepted and logged as a junk param; both are refused at start. Workers sharing a
study each sample with their own seed, so they do not propose the same configurations.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Sequence

from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from experiments.cli import UserError
from experiments.config_check import first_failing
from experiments.locks import claim_sqlite_study
from experiments.sweep import study as st
from experiments.sweep.space import Param
from resnet_blocks import SpecError

log = logging.getLogger("experiments.sweep")

WORKERS_ATTR = "workers_started"  # study attribute: sweep invocations that have joined the study


def check_searched_keys(compose: Callable[[list[str]], DictConfig], params: Sequence[Param], fixed: list[str]) -> None:
    """Compose every value of the searched keys' spaces (each choice; a range's ends), as the
    trials will: a key the run config lacks, an unknown preset or group option and a value of
    the wrong type fail here, in one line naming the key, what it received and what is allowed
    (with "did you mean"), before the study exists. One composition per round: the i-th value
    of every key together; only a round that fails is composed key by key."""
    spaces = [[f"{p.key}={_literal(x)}" for x in _values(p)] for p in params]
    if found := first_failing(compose, fixed, spaces):
        k, override, err = found
        raise UserError(f"{_translated(err, params[k].key, [override, *fixed], compose, fixed)} "
                        "(searched in hydra.sweeper.params)") from None  # fmt: skip


def _translated(err: Exception, key: str, overrides: list[str], compose, fixed) -> str:
    """Hydra's error as the run's own check words it (one line, "did you mean")."""
    from hydra.errors import ConfigCompositionException, MissingConfigException

    from experiments.config_check import composition_errors

    if isinstance(err, MissingConfigException | ConfigCompositionException):
        try:
            with composition_errors(overrides):
                raise err
        except UserError as translated:
            text = str(translated)
            if "no such key" not in text:
                return text
    return f"{key}: no such key in the run config{_close_keys(compose, fixed, key)}"


def worker_seed(study, seed: int | None, lock) -> tuple[int | None, int]:
    """This invocation's sampler seed and worker index on a shared study: the first worker
    keeps ``seed``; each later one derives its own, so workers that start together do not
    sample the same trials. ``lock``: the study lock that serialises workers."""
    with lock:
        index = int(study.user_attrs.get(WORKERS_ATTR, 0))
        study.set_user_attr(WORKERS_ATTR, index + 1)
    if seed is None or index == 0:
        return seed, index
    derived = (seed * 1_000_003 + index * 7919) % 2**31
    log.info("sampler seed %d -> %d for worker %d of this study", seed, derived, index)
    return derived, index


def _values(p: Param) -> list:
    """The values a trial may give ``p``: its fixed value, every choice, or a range's ends."""
    import json

    from optuna.distributions import CategoricalDistribution

    d = p.distribution
    if d is None:
        return [p.fixed]
    if isinstance(d, CategoricalDistribution):
        return [json.loads(v) if p.encoded else v for v in d.choices]
    return [d.low, d.high]


def _literal(value) -> str:
    from experiments.overrides import format_override

    return format_override("k", value)[2:]


def _close_keys(compose, fixed, key: str) -> str:
    """`` (did you mean ...?)`` from the keys of the same group."""
    parent_path, _, name = key.rpartition(".")
    try:
        node = compose(list(fixed))
        parent = OmegaConf.select(node, parent_path, default=None) if parent_path else node
    except Exception:  # noqa: BLE001
        return ""
    if not isinstance(parent, DictConfig):
        return ""
    near = difflib.get_close_matches(name, [str(k) for k in parent.keys()], n=3)
    return f" (did you mean {', '.join(f'{parent_path}.{n}' if parent_path else n for n in near)}?)" if near else ""


def check_settings(c, *, resnet: bool) -> None:
    """The sweeper's own settings (``hydra.sweeper.*``), each with its allowed values."""
    if c.n_trials < 1:
        raise SpecError("hydra.sweeper.n_trials", c.n_trials, "an integer >= 1 (the total to reach)")
    if c.n_jobs < 1:
        raise SpecError("hydra.sweeper.n_jobs", c.n_jobs, "an integer >= 1")
    if c.prefetch < 0:
        raise SpecError("hydra.sweeper.prefetch", c.prefetch, "an integer >= 0 (0: no trial set up ahead)")
    if not 0 <= c.max_failure_rate <= 1:
        raise SpecError(
            "hydra.sweeper.max_failure_rate", c.max_failure_rate, "a fraction in [0, 1] (0: stop at the first failure)"
        )
    if not c.storage and (resnet or c.n_jobs > 1):
        raise SpecError(
            "hydra.sweeper.storage",
            c.storage,
            "a database URL such as sqlite:///optuna.db (jobs reach their trial through it; "
            "only a plain task run by one worker can do without, in memory)",
        )
    if st.is_sqlite(c.storage) and c.n_jobs > 1 and not c.allow_sqlite_parallel:
        raise SpecError(
            "hydra.sweeper.storage",
            c.storage,
            "a PostgreSQL URL when several jobs run at once: SQLite locks under concurrent writers "
            "and can hand a queued trial out twice (set allow_sqlite_parallel=true to accept the risk)",
        )


def warn_if_sqlite_shared(conf, study) -> None:
    """SQLite cannot be shared safely by several workers: say so if another one is live."""
    if not st.is_sqlite(conf.storage) or conf.allow_sqlite_parallel:
        return
    if not claim_sqlite_study(conf.storage, conf.study_name):
        log.warning(
            "another sweep is running study %r on this SQLite file: SQLite is unsafe with several workers "
            "(database locks, queued trials handed out twice); stop one of them, or use PostgreSQL.",
            conf.study_name,
        )
        return
    live = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if live:
        log.warning(
            "study %r on SQLite has %d RUNNING trial(s): if another worker is running it, stop one of "
            "them. SQLite is unsafe with several workers (database locks, queued trials handed out "
            "twice); use PostgreSQL. A worker that was killed is detected after the grace period.",
            conf.study_name, len(live),
        )  # fmt: skip
