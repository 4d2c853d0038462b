"""The ResNet layer vets each trial in the sweeper, from its spec: no model is built, and what
the study has rejected or trained already is answered from the study."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from experiments.sweep import study as st
from experiments.sweep.layers import ResNetLayer
from experiments.sweep.records import NoBook, Recorder
from hydra_plugins.resnet_blocks_sweeper._config import SweeperConf

SMALL, LARGE = "model.widths=[16,16,32]", "model.widths=[32,32,64]"  # 433,472 and 1,410,688 MACs on digits
SAME_BLOCKS = "model.stage_blocks=[regular,regular,regular]"  # other overrides, the same spec as model.block=regular


class Lines:
    """Progress that records what it is told."""

    def __init__(self):
        self.lines = []

    def rejected(self, number, arch, reason, repeats=None):
        self.lines.append(("rejected", number, repeats))

    def reused(self, number, same, arch, pruned=False):
        self.lines.append(("reused", number, same, pruned))

    def finished(self, trial, study):
        self.lines.append(("finished", trial.number))


@pytest.fixture
def no_build(monkeypatch):
    """Any model build fails the test: vetting must come from the spec."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    for target in (
        "experiments.train.build_resnet",
        "resnet_blocks.build_resnet",
        "resnet_blocks.builder.build_resnet",
    ):
        monkeypatch.setattr(target, refuse)


@pytest.fixture
def layer(make_cfg, tmp_path):
    def make(*, max_macs=500_000, jobs_vet=True, reuse_duplicates=True):
        conf = OmegaConf.merge(
            OmegaConf.structured(SweeperConf),
            {"storage": f"sqlite:///{tmp_path / 'optuna.db'}", "constraints": {"max_macs": max_macs},
             "reuse_duplicates": reuse_duplicates},
        )  # fmt: skip
        study = optuna.create_study(directions=["maximize"])
        recorder = Recorder(study, NoBook(), progress=Lines())
        compose = lambda overrides: make_cfg(*overrides)  # noqa: E731
        return ResNetLayer(conf, None, compose, "val/accuracy", recorder=recorder, jobs_vet=jobs_vet), study

    return make


def prepare(layer, study, *overrides):
    trial = study.ask()
    return trial, layer.prepare(trial, {}, list(overrides), None)


@pytest.mark.parametrize("jobs_vet", [True, False])
def test_over_budget_architectures_are_rejected_in_the_sweeper_without_a_build(layer, no_build, jobs_vet):
    layer, study = layer(jobs_vet=jobs_vet)
    trial, pending = prepare(layer, study, LARGE)
    assert pending is None  # never handed to a job
    (t,) = study.get_trials()
    assert t.state == TrialState.PRUNED and t.constraints["budget"] == pytest.approx(1_410_688 / 500_000 - 1)
    assert t.user_attrs["rejected"] == "over budget: 1,410,688 MACs > max_macs 500,000"
    trial, pending = prepare(layer, study, SMALL)
    assert pending is not None and pending.job.ticket.number == trial.number
    assert trial.user_attrs["macs"] == 433_472  # counted from the spec, recorded before the job
    assert study.get_trials()[1].constraints == {"budget": 0.0}


def test_a_repeated_rejection_is_answered_from_the_study(layer, no_build, monkeypatch):
    layer, study = layer()
    prepare(layer, study, LARGE)
    # The same architecture from other overrides: rejected at once, as a repeat, without a new count.
    counted = []
    monkeypatch.setattr("experiments.run.spec_cost", lambda spec: counted.append(spec))
    _, pending = prepare(layer, study, LARGE, SAME_BLOCKS)
    assert pending is None and not counted
    first, again = study.get_trials()
    assert again.state == TrialState.PRUNED and again.user_attrs["duplicate_of"] == first.number
    assert again.user_attrs["rejected"] == first.user_attrs["rejected"] and again.constraints == first.constraints
    assert layer.recorder.progress.lines == [("rejected", 0, None), ("rejected", 1, 0)]


def test_another_budget_is_vetted_again(layer, no_build):
    strict, study = layer()
    prepare(strict, study, LARGE)
    loose, _ = layer(max_macs=2_000_000)
    loose.recorder.study = study
    trial, pending = prepare(loose, study, LARGE)
    assert pending is not None and "duplicate_of" not in trial.user_attrs


def test_a_configuration_trained_already_reuses_its_values_from_other_overrides(layer, no_build):
    layer, study = layer()
    trial, pending = prepare(layer, study, SMALL)
    study.tell(trial, [0.9])  # (as if its job had trained it)
    again, pending = prepare(layer, study, SMALL, SAME_BLOCKS)
    assert pending is None
    t = study.get_trials()[1]
    assert t.state == TrialState.COMPLETE and t.values == [0.9] and t.user_attrs["duplicate_of"] == trial.number
    # Another learning rate is another configuration of the same architecture: trained.
    _, pending = prepare(layer, study, SMALL, SAME_BLOCKS, "trainer.learning_rate=0.01")
    assert pending is not None


def test_a_configuration_pruned_already_is_pruned_again_without_training(layer, no_build):
    layer, study = layer()
    trial, pending = prepare(layer, study, SMALL)
    for step, value in ((1, 0.3), (2, 0.35)):
        trial.report(value, step)
    study.tell(trial, state=TrialState.PRUNED)  # (as if its job had been pruned after epoch 2)
    again, pending = prepare(layer, study, SMALL, SAME_BLOCKS)
    assert pending is None
    t = study.get_trials()[1]
    assert t.state == TrialState.PRUNED and t.user_attrs["duplicate_of"] == trial.number
    assert t.intermediate_values == {1: 0.3, 2: 0.35} and "rejected" not in t.user_attrs
    assert layer.recorder.progress.lines[-1] == ("reused", 1, 0, True)
    # A complete trial of the same configuration is preferred to a pruned one.
    done = study.ask()
    done.set_user_attr(st.CONFIG_KEY_ATTR, t.user_attrs[st.CONFIG_KEY_ATTR])
    study.tell(done, [0.8])
    _, pending = prepare(layer, study, SMALL)
    assert pending is None and study.get_trials()[3].values == [0.8]


def test_memory_is_checked_from_the_spec(layer, no_build):
    layer, study = layer(max_macs=None)
    _, pending = prepare(layer, study, SMALL, "trainer.max_memory_gb=0.0001")
    assert pending is None
    assert study.get_trials()[0].user_attrs["rejected"].startswith(st.MEMORY_REJECTION)


def test_a_plugin_block_without_a_cost_function_is_left_to_its_job(layer, no_build, temp_block):
    layer, study = layer()
    _, pending = prepare(layer, study, f"model.block={temp_block}", LARGE)
    assert pending is not None and "macs" not in study.get_trials()[0].user_attrs  # the job builds and checks it


def test_rejected_trials_do_not_count_towards_n_trials_but_a_grids_do():
    study = optuna.create_study()
    for rejected in (True, True, False):
        trial = study.ask()
        if rejected:
            trial.set_user_attr(st.REJECTED_ATTR, "over budget")
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, 0.5)
    trials = study.get_trials()
    assert len(st.counted(trials)) == 1 and len(st.counted(trials, rejected=True)) == 3
    assert st.counts_rejected(OmegaConf.create({"sampler": {"name": "grid"}}))
    assert not st.counts_rejected(OmegaConf.create({"sampler": {"name": "tpe"}}))
    assert st.too_many_rejected(trials, n_trials=1) is None
    assert "10 trials were rejected" in (st.too_many_rejected(trials * 5, n_trials=1) or "")


def test_a_repeat_takes_the_constraints_of_the_trial_it_repeats_and_none_where_it_has_none():
    study = optuna.create_study(directions=["minimize"])
    recorder = Recorder(study, NoBook(), progress=Lines())
    first = study.ask()
    first.set_user_attr(st.OVERRIDES_ATTR, ["x=1"])
    study.tell(first, [1.0])  # a plain app's trial: no constraint
    repeat = study.ask()
    assert recorder.reuse_duplicate(repeat, {"x": 1}, ["x=1"])
    assert study.trials[1].state == TrialState.COMPLETE and not study.trials[1].constraints
    constrained = study.ask()
    constrained.set_user_attr(st.OVERRIDES_ATTR, ["x=2"])
    constrained.set_constraint(st.CONSTRAINT_KEY, 0.0)
    study.tell(constrained, [2.0])
    again = study.ask()
    assert recorder.reuse_duplicate(again, {"x": 2}, ["x=2"])
    assert study.trials[3].constraints == {st.CONSTRAINT_KEY: 0.0}
