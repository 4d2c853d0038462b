"""Cost limits relative to the model the user would have trained anyway: ``max_macs=baseline``
(or ``0.6*baseline``) is read as the run config's own model's cost, before any trial."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from experiments.sweep import study as st
from hydra_plugins.resnet_blocks_sweeper._config import SweeperConf
from resnet_blocks import SpecError
from tests.experiments.conftest import REPO


def _constraints(**values):
    return OmegaConf.merge(OmegaConf.structured(SweeperConf), {"constraints": values}).constraints


@pytest.fixture
def resnet20():
    return SimpleNamespace(macs=40_554_000, trainable_params=269_722)  # (cifar_resnet20's, as counted)


def test_baseline_and_a_share_of_it_are_read_as_the_baseline_models_cost(resnet20):
    c = _constraints(max_macs="baseline", max_params="0.6*baseline")
    read = st.resolve_constraints(c, lambda: resnet20)
    assert c.max_macs == resnet20.macs and c.max_params == int(0.6 * resnet20.trainable_params)
    assert read == {"max_macs": f"baseline = {resnet20.macs:,}",
                    "max_params": f"0.6*baseline = {int(0.6 * resnet20.trainable_params):,}"}  # fmt: skip
    # The baseline itself is within a limit of "baseline"; one more MAC is not.
    assert st.over_budget(_constraints(max_macs=c.max_macs), resnet20) is None
    assert st.over_budget(_constraints(max_macs=c.max_macs - 1), resnet20) is not None


def test_numbers_are_kept_and_nothing_is_counted_without_a_relative_limit():
    c = _constraints(max_macs=41_000_000)

    def never():
        raise AssertionError("the baseline's cost was counted")

    assert st.resolve_constraints(c, never) == {} and c.max_macs == 41_000_000


@pytest.mark.parametrize("value", ["half", "-1*baseline", "0*baseline", "baseline*2", 0, -5, 1.5, True])
def test_other_values_are_refused_naming_the_field_and_what_is_allowed(value, resnet20):
    with pytest.raises(SpecError) as raised:
        st.resolve_constraints(_constraints(max_macs=value), lambda: resnet20)
    message = str(raised.value)
    assert message.startswith(f"hydra.sweeper.constraints.max_macs: received {value!r}; allowed: a positive integer")
    assert "0.6*baseline" in message


def test_an_app_without_a_resnet_of_its_own_cannot_use_a_relative_limit():
    with pytest.raises(SpecError, match="this app trains no ResNet of its own"):
        st.resolve_constraints(_constraints(max_params="baseline"), None)


def test_a_dry_run_rejects_what_costs_more_than_the_run_configs_model(tmp_path):
    """quick's own model, as run without the sweep, is w16-32-64 (here d1-1-1): the wider
    choice costs more and is over budget, the narrower one is not."""
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "+sweep=quick", "hydra.sweeper.dry_run=6",
         "model.depths=[1,1,1]", "model.widths=choice([8,16,32],[32,64,128])",
         "hydra.sweeper.constraints.max_macs=baseline"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    (line,) = [ln for ln in out.splitlines() if "hydra.sweeper.constraints.max_macs: baseline = " in ln]
    limit = int(line.split("baseline = ")[1].split()[0].replace(",", ""))
    assert limit == 668_800  # regular d1-1-1 w16 s122 on digits
    rows = [ln for ln in proc.stdout.splitlines() if "regular d1-1-1" in ln]
    # (the baseline's w16 joins the space: at the limit exactly, it is within it)
    assert {r.rstrip(" │").endswith(" ok") for r in rows if "w32" not in r} == {True}
    assert {f"MACs > max_macs {limit:,}" in r for r in rows if "w32" in r} == {True}


@pytest.mark.slow
def test_a_baseline_over_a_relative_budget_is_still_trained_as_the_reference(tmp_path):
    """``max_macs=0.6*baseline`` puts the baseline itself over budget: it is trained all the same
    (every trial is compared with it), infeasible to the sampler and never the study's best."""
    from experiments.sweep.baselines import trial_label
    from tests.experiments.sweep.test_sweep import load, sweep

    proc = sweep(tmp_path, "model.widths=choice([4,4,8],[8,8,16])", "model.shortcut=projection", "hydra.sweeper.n_trials=3",
                 "hydra.sweeper.pruner.name=none", "trainer.epochs=2",
                 "hydra.sweeper.constraints.max_macs=0.6*baseline")  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "trained as the reference, never chosen" in out
    study = load(tmp_path)
    base = study.trials[0]
    assert trial_label(base) == "default"
    assert base.state.name == "COMPLETE" and base.constraints[st.CONSTRAINT_KEY] > 0  # (trained, infeasible)
    assert base.params["model.widths"] == "[8, 8, 16]"
    feasible = [t for t in study.trials if t.state.name == "COMPLETE" and t.constraints[st.CONSTRAINT_KEY] <= 0]
    assert feasible and study.best_trial.number != 0
    assert all("[8, 8, 16]" not in str(t.params) for t in study.trials[1:] if t.state.name == "COMPLETE")
    assert "vs base" in proc.stdout
