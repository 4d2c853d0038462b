"""Every configured sampler and pruner name builds its Optuna object; bad names/options are SpecErrors."""

import optuna
import pytest
from omegaconf import OmegaConf

from experiments.sweep import study as st
from resnet_blocks import SpecError


@pytest.mark.parametrize(
    ("name", "kind"),
    [("tpe", "TPESampler"), ("random", "RandomSampler"), ("gp", "GPSampler"), ("qmc", "QMCSampler"),
     ("nsga2", "NSGAIISampler"), ("grid", "GridSampler")],
)  # fmt: skip
def test_samplers(name, kind):
    sampler = st.make_sampler(OmegaConf.create({"name": name, "seed": 0, "options": {}}), {"model.block": ["a", "b"]})
    assert any(cls.__name__ == kind for cls in type(sampler).__mro__)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    assert trial.suggest_categorical("model.block", ["a", "b"]) in ("a", "b")


def test_cmaes_without_its_package_is_refused_before_any_trial(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a))
    with pytest.raises(SpecError) as raised:
        st.make_sampler(OmegaConf.create({"name": "cmaes", "seed": 0, "options": {}}))
    assert "CmaEsSampler needs the cmaes package (pip install cmaes)" in str(raised.value)


@pytest.mark.parametrize("name", st.PRUNERS)
def test_pruners(name):
    assert isinstance(st.make_pruner(OmegaConf.create({"name": name, "options": {}})), optuna.pruners.BasePruner)


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"name": "anneal", "seed": 0, "options": {}}, "hydra.sweeper.sampler.name: received 'anneal'"),
        ({"name": "tpe", "seed": 0, "options": {"bogus": 1}}, "hydra.sweeper.sampler.options: received {'bogus': 1}"),
        ({"name": "grid", "seed": 0, "options": {}}, "hydra.sweeper.sampler.name: received 'grid'"),
    ],
)
def test_bad_sampler_settings(conf, field):
    with pytest.raises(SpecError) as err:
        st.make_sampler(OmegaConf.create(conf))
    assert field in str(err.value)


def test_bad_pruner_settings():
    with pytest.raises(SpecError, match="hydra.sweeper.pruner.options: received"):
        st.make_pruner(OmegaConf.create({"name": "median", "options": {"n_startup": 1}}))
    with pytest.raises(SpecError, match="hydra.sweeper.pruner.name: received 'patient'"):
        st.make_pruner(OmegaConf.create({"name": "patient", "options": {}}))
