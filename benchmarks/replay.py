"""Replay: a sweep's trials looked up in the tabular benchmark (``benchmarks/search_table.py``)
instead of trained.

As a Hydra app it composes the project's own configs, so the shipped sweeps run against the
table unchanged but for the task::

    python benchmarks/replay.py +sweep=blocks hydra.sweeper.storage=sqlite:///replay.db

Each trial replays the tabled learning curve of its configuration (one of the tabled seeds,
picked by the trial number): every epoch's validation accuracy is reported to the trial, so
the sweep's pruner stops it exactly where it would have stopped the real run, and the trial
records the simulated cost (``replay.epochs``, ``replay.seconds``: the tabled epoch times).
It returns what ``experiments.run`` returns: the best value of each objective.

Settings the table holds fixed (``model.shortcut``, ``trainer.learning_rate``, ...) are
ignored with one warning; a configuration outside the table is rejected as an invalid
architecture is (the sampler learns to avoid it), naming the key and the tabled values.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # (run as python benchmarks/replay.py)
DEFAULT_TABLE = REPO / "benchmarks" / "results" / "search_table.csv"
KEYS = ("model.block", "model.depths", "model.widths", "model.strides")  # the table's columns, in order
COLUMNS = ("block", "depths", "widths", "strides")

log = logging.getLogger("replay")


class NotTabled(ValueError):
    """A configuration the table does not hold."""


@dataclass
class Curve:
    """One tabled run: per-epoch validation accuracy and seconds, and its held-out result."""

    val_accuracy: list[float]
    epoch_s: list[float]
    test_accuracy: float
    macs: int
    params: int


@dataclass
class Table:
    """The tabled runs, by configuration (block, depths, widths, strides) and seed."""

    runs: dict[tuple[str, ...], dict[int, Curve]]
    values: dict[str, list[str]] = field(default_factory=dict)  # tabled values per key, for errors

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TABLE) -> Table:
        rows: dict[tuple[tuple[str, ...], int], list[dict]] = defaultdict(list)
        with Path(path).open(newline="") as f:
            for row in csv.DictReader(f):
                if row["status"] == "ok":
                    rows[(tuple(row[c] for c in COLUMNS), int(row["seed"]))].append(row)
        runs: dict[tuple[str, ...], dict[int, Curve]] = defaultdict(dict)
        for (key, seed), epochs in rows.items():
            epochs = list({int(r["epoch"]): r for r in reversed(epochs)}.values())  # a run trained twice: the first
            epochs.sort(key=lambda r: int(r["epoch"]))
            last = epochs[-1]
            runs[key][seed] = Curve(
                [float(r["val_accuracy"]) for r in epochs], [float(r["epoch_s"]) for r in epochs],
                float(last["test_accuracy"]), int(last["macs"]), int(last["params"]),
            )  # fmt: skip
        if not runs:
            raise NotTabled(f"no complete run in {path}")
        values = {k: sorted({key[i] for key in runs}) for i, k in enumerate(KEYS)}
        return cls(dict(runs), values)

    def key(self, config: dict[str, Any]) -> tuple[str, ...]:
        """The table's key for ``config`` (``{"model.block": ..., ...}``); NotTabled if absent."""
        key = tuple(_cell(config[k]) for k in KEYS)
        if key not in self.runs:
            for k, cell in zip(KEYS, key):
                if cell not in self.values[k]:
                    raise NotTabled(f"{k}={cell} is not in the table (tabled: {', '.join(self.values[k])})")
            raise NotTabled(f"{dict(zip(KEYS, key))} is not in the table (some of its runs are missing)")
        return key

    def curve(self, key: tuple[str, ...], pick: int) -> Curve:
        """One tabled run of ``key``: seed number ``pick`` modulo the seeds tabled."""
        seeds = sorted(self.runs[key])
        return self.runs[key][seeds[pick % len(seeds)]]

    def test_accuracy(self, key: tuple[str, ...]) -> float:
        """Held-out accuracy of the architecture: the mean over its tabled seeds."""
        runs = self.runs[key].values()
        return sum(c.test_accuracy for c in runs) / len(runs)


def _cell(value: Any) -> str:
    return "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


@dataclass
class Replayed:
    """What one replayed trial cost and found."""

    best_val: float
    epochs: int
    seconds: float
    curve: Curve


def replay_curve(trial, curve: Curve, epochs: int | None = None, *, report: bool = True) -> Replayed:
    """Replay ``curve`` into ``trial`` epoch by epoch: report, ask the pruner, stop where it says.

    Raises ``optuna.TrialPruned`` (after recording the cost) when the pruner stops the trial."""
    import optuna

    values = curve.val_accuracy[: epochs or None]
    spent, seconds, best = 0, 0.0, float("-inf")
    pruned = None
    for step, value in enumerate(values, start=1):
        spent, seconds, best = step, seconds + curve.epoch_s[step - 1], max(best, value)
        if report:
            trial.report(value, step)
            if trial.should_prune():
                pruned = optuna.TrialPruned(f"pruned at epoch {step} (val/accuracy={value:.4f})")
                break
    trial.set_user_attr("replay.epochs", spent)
    trial.set_user_attr("replay.seconds", seconds)
    if pruned is not None:
        raise pruned
    return Replayed(best, spent, seconds, curve)


# -- the Hydra app ------------------------------------------------------------------------
_FIXED = {"model.shortcut": "projection", "model.stem_width": 16}
_warned: set[str] = set()


def _warn_fixed(cfg) -> None:
    from omegaconf import OmegaConf

    for key, tabled in _FIXED.items():
        value = OmegaConf.select(cfg, key)
        if value != tabled and key not in _warned:
            _warned.add(key)
            log.warning("%s=%s is ignored: the table was trained with %s", key, value, tabled)


def task(cfg, trial=None, table: Table | None = None) -> list[float]:
    """The replayed run of ``cfg``: its objectives' best values, as ``experiments.run`` returns them."""
    from omegaconf import OmegaConf

    from experiments.sweep.study import TrialNotTrained

    table = table or Table.load(OmegaConf.select(cfg, "replay.table", default=None) or DEFAULT_TABLE)
    _warn_fixed(cfg)
    try:
        key = table.key({k: OmegaConf.to_container(v) if OmegaConf.is_config(v := OmegaConf.select(cfg, k)) else v
                         for k in KEYS})  # fmt: skip
    except NotTabled as err:
        raise TrialNotTrained(f"invalid architecture: {err}", 1.0) from None
    pick = (trial.number if trial is not None else 0) + int(cfg.trainer.seed)
    curve = table.curve(key, pick)
    multi = len(cfg.objective) > 1
    if trial is None:  # a single replayed run
        import optuna

        trial = optuna.create_study().ask()
    done = replay_curve(trial, curve, report=not multi)
    out = {"val/accuracy": done.best_val, "macs": float(curve.macs), "params": float(curve.params)}
    for name in cfg.objective:
        if name not in out:
            raise TrialNotTrained(f"objective {name!r} is not tabled (tabled: {', '.join(out)})")
    return [out[name] for name in cfg.objective]


def replay_trial(cfg, ticket, services=None):
    """A sweep's trial (the sweeper hands over its ticket): the tabled run, reported to it."""
    from experiments.sweep.job import open_trial

    values = task(cfg, open_trial(ticket))
    return values if len(values) > 1 else values[0]


def _main():
    import hydra

    import experiments.config  # noqa: F401 - the run schema (the sweep configs compose against it)

    def main(cfg):
        values = task(cfg)
        return values if len(values) > 1 else values[0]

    main.sweep_trial_function = replay_trial  # in a sweep, each trial runs through it
    hydra.main(config_path="../conf", config_name="config", version_base="1.3")(main)()


if __name__ == "__main__":
    _main()
