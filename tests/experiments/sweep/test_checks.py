"""What a sweep refuses before its first trial, how it ends when nothing trained, and how
workers on one study keep apart (experiments/sweep/checks.py)."""

from __future__ import annotations

import contextlib
import importlib
import pickle
from unittest import mock

import optuna
import pytest

from experiments.sweep.checks import worker_seed
from tests.experiments.sweep.test_sweep import load, sweep, sweep_call

REFUSED = [
    # (searched keys on the command line: checked with the run's, before Hydra and Optuna start)
    ("model.foo=choice(1,2)", "model.foo: no such key in model"),
    ("model.widht=choice([8,16,32])", "(did you mean model.widths?)"),
    ("+trainer.epoch=3", "+trainer.epoch: received 'epoch'; allowed: a key of trainer, which is typed"),
    # Every value of a space is composed, not only the first: a later choice that is wrong
    # fails at start too, worded as the run's own check words it.
    ("model=choice(cifar_resnet20,cifar_resnet3)", "model: received 'cifar_resnet3'; allowed: one of "),
    ("trainer.epochs=choice(3,abc)", "trainer.epochs: received 'abc'; allowed: an integer"),
]


def test_keys_the_run_config_lacks_fail_at_start(tmp_path):
    from tests.parallel import run_together

    dirs = [tmp_path / str(i) for i in range(len(REFUSED))]
    for d in dirs:
        d.mkdir()
    procs = run_together([sweep_call(d, override) for d, (override, _) in zip(dirs, REFUSED)])
    for d, (override, message), proc in zip(dirs, REFUSED, procs):
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, (override, out[-3000:])
        assert message in out, (override, out[-3000:])
        assert "(did you mean trainer.epochs?)" in out or "epoch=" not in override
        assert not (d / "optuna.db").exists()  # refused before the study was created


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ((), "model: received 'cifar_resnet3'; allowed: one of "),
        (("model=cifar_resnet20",), "trainer.weight_decay: received 'abc'; allowed: a number"),
    ],
)
def test_a_sweep_configs_own_space_is_composed_value_by_value_at_start(tmp_path, overrides, message):
    """Spaces of a sweep config (``hydra.sweeper.params`` in its YAML) are checked by the
    sweeper, every choice of them, before the study exists."""
    proc = sweep(tmp_path, *overrides, name="t_bad_space", check=False)
    line = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in line and line.endswith("(searched in hydra.sweeper.params)"), line
    assert not (tmp_path / "optuna.db").exists()


def test_open_dicts_still_take_added_keys(tmp_path):
    proc = sweep(tmp_path, "+model.block_args.foo=1", "+tracking.tags.owner=me", "hydra.sweeper.dry_run=1")
    assert "+model.block_args.foo=1" in proc.stdout


def test_a_sweep_whose_trials_all_failed_exits_non_zero(tmp_path):
    proc = sweep(
        tmp_path,
        "model.plugins=[tests.plugins.faulty]",
        "model.block=crash_regular",
        "+model.block_args.crash_width=16",  # every sampled width list contains 16
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=1.0",  # (not the failure-rate limit)
        "hydra/launcher=basic",
        check=False,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "sweep failed: all 2 finished trials failed" in proc.stdout + proc.stderr
    assert [t.state for t in load(tmp_path).trials] == [optuna.trial.TrialState.FAIL] * 2


def test_workers_joining_a_study_sample_with_their_own_seeds():
    study = optuna.create_study()
    seeds = [worker_seed(study, 0, contextlib.nullcontext())[0] for _ in range(3)]
    assert seeds[0] == 0  # the first worker keeps the configured seed (a lone worker reproduces)
    assert len(set(seeds)) == 3
    assert study.user_attrs["workers_started"] == 3
    proposals = []
    for seed in seeds:
        s = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=8))
        proposals.append([s.ask().suggest_categorical("x", list(range(20))) for _ in range(4)])
    assert proposals[0] != proposals[1] != proposals[2]
    assert worker_seed(optuna.create_study(), None, contextlib.nullcontext())[0] is None


def test_the_run_task_names_its_trial_function_and_a_plain_task_none():
    from experiments.run import task
    from experiments.sweep.job import run_trial
    from experiments.sweep.ticket import TRIAL_FUNCTION_ATTR, LazyFunction, trial_function

    assert hasattr(task, TRIAL_FUNCTION_ATTR)  # (experiments.run spells the name out: kept in step)
    named = trial_function(task)  # imported when a trial runs (the job's module imports Keras)
    assert isinstance(named, LazyFunction) and (named.module, named.name) == ("experiments.sweep.job", "run_trial")
    assert getattr(importlib.import_module(named.module), named.name) is run_trial
    assert pickle.loads(pickle.dumps(named)) == named  # (it travels to worker processes)

    def my_app(cfg):
        return 1.0

    assert trial_function(my_app) is None


def test_a_ticket_travels_as_one_hydra_override_and_comes_back_equal():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.utils import filter_overrides

    from experiments.sweep.ticket import TICKET_KEY, TrialTicket

    ticket = TrialTicket("s p'a\"ce", "postgresql://u:p@h/db?x=1", 7, "val/accuracy", {"name": "median",
                         "options": {"n_warmup_steps": 3}}, {"max_params": 10}, "abc", 2)  # fmt: skip
    override = ticket.hydra_override()
    (parsed,) = OverridesParser.create().parse_overrides([override])  # Hydra's grammar takes it as is
    assert parsed.key_or_group == f"hydra.sweeper.{TICKET_KEY}"
    assert filter_overrides([override]) == []  # (Hydra's launchers leave it out of their log lines)
    with mock.patch("hydra.core.hydra_config.HydraConfig.get") as get:
        get.return_value.sweeper = {TICKET_KEY: parsed.value()}
        assert TrialTicket.from_hydra_job() == ticket


def test_max_failure_rate_zero_stops_at_the_first_failure():
    """Hydra's Optuna-sweeper example sets max_failure_rate: 0.0: abort on the first failure,
    however few trials have finished; another rate waits for min_trials_for_failure_rate."""
    from types import SimpleNamespace

    from optuna.trial import TrialState, create_trial

    from experiments.sweep.engine import Engine, SweepAborted

    ok, failed = create_trial(value=1.0), create_trial(state=TrialState.FAIL)
    engine = SimpleNamespace(conf=SimpleNamespace(min_trials_for_failure_rate=4, max_failure_rate=0.0))
    Engine._check_failure_rate(engine, [ok])  # no failure: goes on
    with pytest.raises(SweepAborted, match=r"1 of 2 finished trials failed \(50% > hydra.sweeper.max_failure_rate=0\)"):
        Engine._check_failure_rate(engine, [ok, failed])
    engine.conf.max_failure_rate = 0.5
    Engine._check_failure_rate(engine, [ok, failed, failed])  # (3 < 4 finished: too early to judge)
    from omegaconf import OmegaConf

    from experiments.sweep.checks import check_settings
    from hydra_plugins.resnet_blocks_sweeper._config import SweeperConf
    from resnet_blocks import SpecError

    conf = OmegaConf.structured(SweeperConf)
    conf.max_failure_rate = 0.0
    check_settings(conf, resnet=False)
    conf.max_failure_rate = 1.5
    with pytest.raises(SpecError, match=r"max_failure_rate: received 1.5; allowed: a fraction in \[0, 1\]"):
        check_settings(conf, resnet=False)
