"""Search-space parsing: every override form maps to its Optuna distribution."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from experiments.overrides import format_override
from experiments.sweep.space import parse_param, sample
from resnet_blocks import SpecError


@pytest.mark.parametrize(
    ("expression", "expected", "encoded"),
    [
        ("choice(regular, bottleneck)", CategoricalDistribution(["regular", "bottleneck"]), False),
        ("choice(8, 16, 32)", CategoricalDistribution([8, 16, 32]), False),
        ("choice(true, false)", CategoricalDistribution([True, False]), False),
        ("choice(0.1, 0.01)", CategoricalDistribution([0.1, 0.01]), False),
        ("choice([1,2,2],[1,1,2])", CategoricalDistribution(["[1, 2, 2]", "[1, 1, 2]"]), True),
        ("range(1, 5)", IntDistribution(1, 4), False),
        ("range(0, 10, 3)", IntDistribution(0, 9, step=3), False),
        ("tag(log, range(1, 65))", IntDistribution(1, 64, log=True), False),
        ("interval(0.0, 1.0)", FloatDistribution(0.0, 1.0), False),
        ("interval(1, 4)", FloatDistribution(1.0, 4.0), False),
        ("tag(int, interval(1, 4))", IntDistribution(1, 4), False),
        ("tag(int, log, interval(1, 64))", IntDistribution(1, 64, log=True), False),
        ("tag(log, interval(0.001, 0.1))", FloatDistribution(0.001, 0.1, log=True), False),
        # Hydra's Optuna sweeper grammar: casts, float ranges with a step, shuffled ranges
        ("int(interval(1, 5))", IntDistribution(1, 5), False),
        ("tag(log, int(interval(1, 64)))", IntDistribution(1, 64, log=True), False),
        ("range(0.5, 5.5, step=1)", FloatDistribution(0.5, 4.5, step=1.0), False),
        ("range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1), False),
        ("shuffle(range(1, 5))", CategoricalDistribution([1, 2, 3, 4]), False),
    ],
)
def test_override_forms(expression, expected, encoded):
    param = parse_param("model.x", expression)
    assert param.distribution == expected
    assert param.encoded is encoded


@pytest.mark.parametrize(("expression", "fixed"), [("16", 16), ("regular", "regular"), ("[1,2,2]", [1, 2, 2]), (7, 7)])
def test_plain_values_are_fixed(expression, fixed):
    param = parse_param("model.x", expression)
    assert param.distribution is None and param.fixed == fixed


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("range(5, 1)", "lo < hi"),
        ("interval(1.0, 0.5)", "lo < hi"),
        ("tag(log, interval(0.0, 1.0))", "lo > 0"),
        ("range(0.5, 0.5)", "lo < hi"),
        ("choice(", "choice(...)"),
    ],
)
def test_bad_expressions_name_the_param(expression, message):
    with pytest.raises(SpecError) as err:
        parse_param("trainer.learning_rate", expression)
    assert "hydra.sweeper.params.trainer.learning_rate" in str(err.value) and message in str(err.value)


def test_list_choices_decode_back_to_lists_and_overrides():
    params = [parse_param("model.strides", "choice([1,2,2],[1,1,2])"), parse_param("trainer.learning_rate", "0.1")]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(10):
        trial = study.ask()
        values = sample(trial, params)
        assert values["trainer.learning_rate"] == 0.1
        assert values["model.strides"] in ([1, 2, 2], [1, 1, 2])
        assert trial.params["model.strides"] in ("[1, 2, 2]", "[1, 1, 2]")  # Optuna stores the scalar
        seen.add(json.dumps(values["model.strides"]))
        study.tell(trial, 0.0)
    assert len(seen) == 2
    assert format_override("model.strides", [1, 2, 2]) == "model.strides=[1,2,2]"
    assert format_override("model.block", "bottleneck_v1") == "model.block=bottleneck_v1"
    assert format_override("trial.storage", "sqlite:///x.db") == 'trial.storage="sqlite:///x.db"'


def test_stagewise_hook_samples_only_existing_stages():
    from experiments.sweep.space import stagewise

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(15):
        trial = study.ask()
        values = stagewise(trial, {"num_stages": [2, 3], "depth": [1, 2], "base_width": [8], "width_growth": [2]})
        n = trial.params["num_stages"]
        assert len(values["model.depths"]) == len(values["model.widths"]) == len(values["model.strides"]) == n
        assert values["model.strides"][0] == 1 and values["model.widths"] == [8 * 2**i for i in range(n)]
        assert ("stage3.depth" in trial.params) == (n == 3)
        study.tell(trial, 0.0)
