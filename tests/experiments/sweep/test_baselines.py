"""Baselines and the verdict, unit by unit: parsing, widening, differences, paired intervals."""

from __future__ import annotations

import csv
import math
import re
import threading

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from experiments.sweep import baselines as bl
from experiments.sweep.space import Param, parse_param
from experiments.sweep.verdict import Interval, Verdict, paired_interval, ratio
from resnet_blocks import SpecError


def test_default_baseline_only_for_resnet_tasks():
    assert bl.parse_baselines(None, resnet=True) == [bl.Baseline("default", ())]
    assert bl.parse_baselines(None, resnet=False) == []
    assert bl.parse_baselines([], resnet=True) == []


def test_presets_overrides_and_override_lists():
    got = bl.parse_baselines(
        ["default", "cifar_resnet32", "trainer.learning_rate=0.1", ["model=cifar_resnet20", "trainer.epochs=3"]],
        resnet=True,
    )
    assert got == [
        bl.Baseline("default", ()),
        bl.Baseline("cifar_resnet32", ("model=cifar_resnet32",)),
        bl.Baseline("trainer.learning_rate=0.1", ("trainer.learning_rate=0.1",)),
        bl.Baseline("model=cifar_resnet20 trainer.epochs=3", ("model=cifar_resnet20", "trainer.epochs=3")),
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("cifar_resnet20", "hydra.sweeper.baselines: received 'cifar_resnet20'; allowed: a list of default"),
        ([[]], "hydra.sweeper.baselines[0]: received []; allowed: a non-empty list of overrides"),
        ([["model.depth"]], "hydra.sweeper.baselines[0]: received ['model.depth']; allowed: a non-empty list"),
        (["default", ""], "hydra.sweeper.baselines[1]: received ''; allowed: default, a model preset name"),
        (["default", 3], "hydra.sweeper.baselines[1]: received 3"),
        (["cifar_resnet32", "cifar_resnet32"], "each baseline once ('cifar_resnet32' is given twice)"),
    ],
)
def test_bad_baselines_name_the_field_and_what_is_allowed(entries, message):
    with pytest.raises(SpecError) as raised:
        bl.parse_baselines(entries, resnet=True)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_baseline_outside_the_space_widens_it():
    params = [
        parse_param("model.depths", "choice([1,1,1],[2,2,2])"),
        parse_param("trainer.learning_rate", "tag(log, interval(0.01, 0.2))"),
        parse_param("trainer.epochs", "range(2, 8, step=2)"),
        Param("model.block", None, "regular"),
    ]
    base = bl.Baseline("default", ())
    inside = bl.widen(
        params, [(base, {"model.depths": params[0].distribution.choices[0], "trainer.learning_rate": 0.05})]
    )
    assert inside == params  # already held: unchanged
    resolved = [(base, {"model.depths": "[3, 3, 3]", "trainer.learning_rate": 0.5, "trainer.epochs": 8})]
    wide = bl.widen(params, resolved)
    assert isinstance(wide[0].distribution, CategoricalDistribution)
    assert wide[0].distribution.choices == (*params[0].distribution.choices, "[3, 3, 3]")
    lr = wide[1].distribution
    assert isinstance(lr, FloatDistribution) and (lr.low, lr.high, lr.log) == (0.01, 0.5, True)
    epochs = wide[2].distribution
    assert isinstance(epochs, IntDistribution) and (epochs.low, epochs.high, epochs.step) == (2, 8, 2)
    assert wide[3] == params[3]
    with pytest.raises(SpecError) as raised:
        bl.widen(params, [(base, {"trainer.epochs": 5})])
    assert "hydra.sweeper.params.trainer.epochs: received 5; allowed: a baseline value on the space's step 2" in str(
        raised.value
    )


def _trial(number, value, label=None, state=TrialState.COMPLETE):
    t = create_trial(state=state, value=value, user_attrs={bl.BASELINE_ATTR: label} if label else {})
    t.number = number
    return t


def test_differences_are_to_the_best_baseline_with_a_binomial_standard_error():
    trials = [
        _trial(0, 0.80, "default"),
        _trial(1, 0.84, "cifar_resnet32"),
        _trial(2, 0.90),
        _trial(3, None, state=TrialState.PRUNED),
    ]
    d = bl.differences(trials, "val/accuracy", StudyDirection.MAXIMIZE, num_val=400)
    assert sorted(d) == [0, 1, 2]  # complete trials only, the baselines included
    assert d[2].baseline_trial == 1 and d[2].baseline_label == "cifar_resnet32"
    assert d[2].value == pytest.approx(0.06)
    se = math.hypot(math.sqrt(0.9 * 0.1 / 400), math.sqrt(0.84 * 0.16 / 400))
    assert d[2].se == pytest.approx(se)
    assert d[2].text() == f"+0.0600 ± {se:.4f} vs baseline t01 (cifar_resnet32)"
    assert d[1].value == 0.0
    # Not an accuracy: no noise model, no standard error. Minimised: the lowest baseline is best.
    low = bl.differences(trials[:3], "val/loss", StudyDirection.MINIMIZE, num_val=400)
    assert low[2].baseline_trial == 0 and low[2].se is None and low[2].value == pytest.approx(0.10)
    assert bl.differences([_trial(0, 0.9)], "val/accuracy", StudyDirection.MAXIMIZE, 400) == {}


def test_baselines_are_enqueued_once_per_study(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s", direction="maximize")
    resolved = [(bl.Baseline("default", ()), {"x": 1.0}), (bl.Baseline("p", ("model=p",)), {"x": 2.0})]
    lock = threading.Lock()
    assert bl.enqueue(study, resolved, lock) == ["default", "p"]
    assert bl.enqueue(study, resolved, lock) == []  # a resume, or a second worker
    first = study.ask({"x": FloatDistribution(0, 3)})
    assert first.number == 0 and first.params == {"x": 1.0} and first.user_attrs[bl.BASELINE_ATTR] == "default"
    study.tell(first, 0.5)
    assert bl.enqueue(study, resolved, lock) == []  # held in any state
    assert [bl.trial_label(t) for t in study.trials] == ["default", "p"]
    assert bl.named("regular d3-3-3 w16 s122", "default") == "baseline regular d3-3-3 w16 s122"
    assert bl.named("regular d5-5-5 w16 s122", "p") == "baseline[p] regular d5-5-5 w16 s122"
    assert bl.named("regular d1-1-1 w8 s122", None) == "regular d1-1-1 w8 s122"


def test_paired_interval_is_a_student_t_interval_of_the_differences():
    iv = paired_interval([0.60, 0.615, 0.63], [0.58, 0.59, 0.60])
    diffs = [0.02, 0.025, 0.03]
    sd = 0.005
    assert iv.n == 3 and iv.mean == pytest.approx(sum(diffs) / 3)
    assert iv.half == pytest.approx(4.302652729911275 * sd / math.sqrt(3))  # t(0.975, 2 dof)
    assert iv.excludes_zero and iv.text() == f"+0.0250 ± {iv.half:.4f}"
    wide = paired_interval([0.60, 0.62, 0.61], [0.58, 0.59, 0.60])  # differences 0.02, 0.03, 0.01
    assert wide.half == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3)) and not wide.excludes_zero
    # Unknown values drop their pair; one pair gives no interval; none gives n/a.
    one = paired_interval([0.6, None], [0.5, 0.4])
    assert (one.n, one.half) == (1, None) and one.text() == "+0.1000 (1 seed: no interval)"
    assert paired_interval([None], [0.5]).text() == "n/a"
    assert ratio(2.0, 4.0) == 0.5 and ratio(None, 1.0) is None and ratio(1.0, 0) is None


def _verdict(val_mean, half=0.01):
    return Verdict(
        "t07 bottleneck d1-1-1 w16 s122", "t00 baseline regular d3-3-3 w16 s122",
        Interval(val_mean, half, 3), Interval(-0.01, 0.02, 3), 0.5, 0.6, None,
    )  # fmt: skip


def test_the_verdict_ships_the_winner_only_when_it_is_better_on_validation():
    paid = _verdict(0.02)
    assert paid.paid and paid.line().startswith("verdict: the search paid: t07 bottleneck")
    assert "shipped the winner" in paid.line() and "0.50x MACs, 0.60x params" in paid.line()
    assert "latency" not in paid.line()  # unknown ratios are left out
    assert "the interval includes 0" in _verdict(0.005).line()
    lost = _verdict(-0.01)
    assert not lost.paid and lost.line().startswith("verdict: the search did not pay at this budget")
    assert lost.line().endswith("shipped the baseline") and "\n" not in lost.line()
    table = lost.table()
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in table.splitlines())
    assert rows["search paid (better on validation)"] == "no" and rows["shipped"] == "the baseline"
    assert rows["latency ratio (batch 1, this machine)"] == "n/a" and rows["MACs ratio (winner / baseline)"] == "0.500"
    d = lost.to_dict()
    assert d["search_paid"] is False and d["val_diff_mean"] == -0.01 and d["seeds"] == 3
    assert not _verdict(float("nan"), None).paid


@pytest.mark.slow
def test_a_sweep_enters_its_baselines_first_once_across_a_resume(tmp_path):
    from tests.experiments.sweep.test_sweep import load, mlflow_runs, sweep

    given = ["hydra.sweeper.baselines=[default,cifar_resnet32,'trainer.learning_rate=0.5']",
             "hydra.sweeper.pruner.name=none"]  # fmt: skip
    first = sweep(tmp_path, *given, "hydra.sweeper.n_trials=4")
    resumed = sweep(tmp_path, *given, "hydra.sweeper.n_trials=5")
    study = load(tmp_path)
    assert len(study.trials) == 5
    labels = [bl.trial_label(t) for t in sorted(study.trials, key=lambda t: t.number)]
    assert labels == ["default", "cifar_resnet32", "trainer.learning_rate=0.5", None, None]
    rate = study.trials[2]
    # The override's learning rate lies outside quick's interval(0.01, 0.2): the space holds it.
    assert rate.params["trainer.learning_rate"] == 0.5
    assert rate.distributions["trainer.learning_rate"].high == 0.5
    assert "model=cifar_resnet32" in study.trials[1].user_attrs["overrides"]
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and bl.VS_BASELINE_ATTR in t.user_attrs  # (optuna-dashboard)
    client, (parent,), children = mlflow_runs(tmp_path)
    names = sorted(r.info.run_name for r in children)
    assert names[0].startswith("t00 baseline regular d1-1-1") and names[1].startswith("t01 baseline[cifar_resnet32] ")
    assert all("sweep.vs_baseline" in r.data.tags for r in children)
    assert {"baseline/val/accuracy", "best/vs_baseline/val/accuracy"} <= set(parent.data.metrics)
    # trials.csv and report.html give each trial's difference to the best baseline with its standard error.
    rows = {
        int(r["number"]): r for r in csv.DictReader(open(client.download_artifacts(parent.info.run_id, "trials.csv")))
    }
    assert [rows[n]["baseline"] for n in range(3)] == ["default", "cifar_resnet32", "trainer.learning_rate=0.5"]
    assert all(float(rows[n]["vs_baseline_se"]) > 0 for n in rows) and not rows[3]["baseline"]
    best_base = max(study.trials[:3], key=lambda t: t.values[0])
    assert float(rows[4]["vs_baseline"]) == pytest.approx(study.trials[4].values[0] - best_base.values[0])
    html = next((tmp_path / "multirun").rglob("report.html")).read_text()
    assert "vs baseline</th>" in html and "±" in html
    for out in (first.stdout, resumed.stdout):
        assert "vs base" in out
    assert "baseline trial(s) enqueued first: default, cifar_resnet32, trainer.learning_rate=0.5" in (
        first.stdout + first.stderr
    )
    assert "enqueued first" not in resumed.stdout + resumed.stderr


def test_a_baseline_over_the_studys_budget_is_never_shipped():
    """``max_macs=0.6*baseline``: the baseline is the reference, not a model the user may ship."""
    from dataclasses import replace

    lost = replace(_verdict(-0.01), baseline_over_budget=True)
    assert not lost.paid and lost.ships_winner
    assert lost.line().endswith("the baseline is over the study's budget: shipped the winner")
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lost.table().splitlines())
    assert rows["baseline within the study's budget"] == "no" and rows["shipped"] == "the winner"
    assert lost.to_dict()["shipped"] == "winner"
    assert _verdict(-0.01).to_dict()["shipped"] == "baseline"


def test_the_verdict_names_the_settings_winner_and_baseline_differ_in():
    """ResNet-20's own architecture with another trainer is a common winner: the names alone
    would read "regular d3-3-3 w16 s122 beats baseline regular d3-3-3 w16 s122"."""
    from dataclasses import replace

    from omegaconf import OmegaConf

    from experiments.sweep.finalize import setting_differences

    base = {"model": {"depths": [3, 3, 3], "shortcut": "zero_pad"},
            "trainer": {"learning_rate": 0.05, "weight_decay": 5e-4, "seed": 0, "epochs": 6}}  # fmt: skip
    won = {"model": {"depths": [3, 3, 3], "shortcut": "projection"},
           "trainer": {"learning_rate": 0.2681, "weight_decay": 7e-4, "seed": 1, "epochs": 6}}  # fmt: skip
    differs = setting_differences(OmegaConf.create(won), OmegaConf.create(base))
    assert differs == ("model.shortcut: projection vs zero_pad", "trainer.learning_rate: 0.268 vs 0.05",
                       "trainer.weight_decay: 0.0007 vs 0.0005")  # fmt: skip
    verdict = replace(_verdict(0.02), differs=differs)
    assert "they differ in model.shortcut, trainer.learning_rate, trainer.weight_decay" in verdict.line()
    table = verdict.table()
    assert "winner vs baseline" in table and "trainer.learning_rate: 0.268 vs 0.05" in table
    assert verdict.to_dict()["differs"] == list(differs)
