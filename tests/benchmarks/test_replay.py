"""The replay of the tabular benchmark (benchmarks/replay.py, benchmarks/compare_strategies.py)
on a small table: 6 configurations of the real one, seed 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL_TABLE = Path(__file__).with_name("small_table.csv")
sys.path.insert(0, str(REPO / "benchmarks"))

import compare_strategies as cs  # noqa: E402
from replay import NotTabled, Table  # noqa: E402


@pytest.fixture(scope="module")
def table() -> Table:
    return Table.load(SMALL_TABLE)


def test_the_table_loads_every_tabled_run(table):
    assert len(table.runs) == 6
    assert table.values["model.block"] == ["regular"]
    curve = table.curve(("regular", "1-1-1", "16-32-64", "1-2-2"), 0)
    assert len(curve.val_accuracy) == len(curve.epoch_s) == 10
    assert 0.1 < curve.test_accuracy < 1 and curve.macs > 0


def test_a_configuration_outside_the_table_is_named(table):
    config = {
        "model.block": "bottleneck",
        "model.depths": [1, 1, 1],
        "model.widths": [16, 32, 64],
        "model.strides": [1, 2, 2],
    }
    with pytest.raises(NotTabled, match=r"model.block=bottleneck is not in the table \(tabled: regular\)"):
        table.key(config)


def test_a_replayed_search_is_reproducible_and_spends_its_budget(table):
    strategy = cs.STRATEGIES["tpe+median (shipped before)"]
    a = cs.search(table, strategy, 3, budget=40)
    assert a == cs.search(table, strategy, 3, budget=40)
    spent = [s for s, _ in a]
    assert spent == sorted(spent) and 40 <= spent[-1] < 50  # stops once the budget is spent
    incumbents = [v for _, v in a if v is not None]
    assert incumbents == sorted(incumbents) or len(set(incumbents)) > 1  # (tracks the best by validation)
    best_by_test = max(table.test_accuracy(k) for k in table.runs)
    assert max(incumbents) <= best_by_test


def test_hypervolume_of_a_known_front():
    # (accuracy up, MACs down) against ref (0, 10): two points, area 0.5*4 + 0.8*(10-6)... by hand:
    # sorted by MACs: (2, 0.5) covers [2,6) at 0.5 = 2.0; (6, 0.8) covers [6,10) at 0.8 = 3.2.
    assert cs.hypervolume([(0.5, 2), (0.8, 6)], (0.0, 10)) == pytest.approx(5.2)
    assert cs.hypervolume([(0.5, 2), (0.4, 3)], (0.0, 10)) == pytest.approx(4.0)  # a dominated point adds nothing


@pytest.mark.slow
def test_a_shipped_sweep_runs_against_the_table(tmp_path, table):
    """``+sweep=blocks`` unchanged but for the task (and the space cut to the small table):
    trials report the tabled curves, the pruner stops some, and cost is accounted."""
    storage = f"sqlite:///{tmp_path / 'replay.db'}"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "replay.py"), "+sweep=blocks",
         "model.block=regular", "model.depths=[1,1,1]", "model.shortcut=projection",
         "model.widths=choice([16,32,64],[32,64,128])", "model.strides=choice([1,2,2],[1,1,2],[2,2,2],[1,2,1])",
         f"+replay.table={SMALL_TABLE}", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=10",
         "hydra.sweeper.sampler.options.n_startup_trials=4", "hydra.sweeper.pruner.options.n_startup_trials=2",
         "tracking.enabled=false", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = optuna.load_study(study_name="blocks", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 2
    for t in study.trials:
        if "rejected" in t.user_attrs:  # strides 1-2-1 is not tabled
            assert (
                t.params["model.strides"] == "[1, 2, 1]"
                and "model.strides=1-2-1 is not in the table" in t.user_attrs["rejected"]
            )
            continue
        if "duplicate_of" in t.user_attrs:
            continue
        key = (
            "regular",
            "1-1-1",
            *(p.strip("[]").replace(", ", "-") for p in (t.params["model.widths"], t.params["model.strides"])),
        )
        curve = table.curve(key, 0)
        steps = sorted(t.intermediate_values)
        assert steps == list(range(1, len(steps) + 1))
        assert [t.intermediate_values[s] for s in steps] == pytest.approx(curve.val_accuracy[: len(steps)])
        assert t.user_attrs["replay.epochs"] == len(steps)
        assert t.user_attrs["replay.seconds"] == pytest.approx(sum(curve.epoch_s[: len(steps)]))
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.value == pytest.approx(max(curve.val_accuracy)) and len(steps) == 10
        else:
            assert t.state == optuna.trial.TrialState.PRUNED and len(steps) <= 10  # (stopped where the pruner said)
