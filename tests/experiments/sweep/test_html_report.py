"""The HTML sweep report, rendered from a hand-built Optuna study (no training)."""

from __future__ import annotations

import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from experiments.sweep.html_report import ReportInputs, pareto_front, render, stage_diagram, top_trials
from experiments.sweep.report import main as report_main
from experiments.sweep.report import study_summary
from resnet_blocks import ResNetSpec

DISTS = {
    "model.depths": CategoricalDistribution(["[1, 1, 1]", "[2, 2, 2]"]),
    "trainer.learning_rate": FloatDistribution(0.01, 0.2),
}


def spec(depths):
    return ResNetSpec.from_lists(block="regular", depths=depths, widths=[8, 16, 32], strides=[1, 2, 2],
                                 num_classes=10, input_shape=(8, 8, 1), stem_width=8)  # fmt: skip


def make_study(storage=None, directions=("maximize",)):
    study = optuna.create_study(study_name="s", storage=storage, directions=list(directions))
    # (number implied by order): accuracy, macs, depths, lr
    rows = [(0.90, 400_000, "[1, 1, 1]", 0.05), (0.95, 900_000, "[2, 2, 2]", 0.10),
            (0.93, 300_000, "[1, 1, 1]", 0.02), (0.80, 950_000, "[2, 2, 2]", 0.19)]  # fmt: skip
    for acc, macs, depths, lr in rows:
        values = [acc] if len(directions) == 1 else [acc, macs]
        study.add_trial(
            create_trial(
                values=values, params={"model.depths": depths, "trainer.learning_rate": lr}, distributions=DISTS,
                user_attrs={"arch": f"regular d{depths[1]}-{depths[4]}-{depths[7]} w8 s122", "macs": macs,
                            "params": macs // 10, "overrides": [f"model.depths={depths}"]},
                intermediate_values={1: acc - 0.1, 2: acc},
            )
        )  # fmt: skip
    study.add_trial(create_trial(state=TrialState.PRUNED, params={}, distributions={}, intermediate_values={1: 0.3}))
    return study


def test_pareto_front_keeps_only_undominated_points():
    pts = [(0, 0.90, 400.0), (1, 0.95, 900.0), (2, 0.93, 300.0), (3, 0.80, 950.0), (4, 0.93, 300.0)]
    assert pareto_front(pts, (True, False)) == [1, 2, 4]  # ties are both kept
    assert pareto_front(pts, (False, True)) == [3]


def test_stage_diagram_draws_one_box_per_block():
    svg = stage_diagram(spec([2, 3, 1]))
    assert svg.count('class="block"') == 6 and svg.count('class="stem"') == 1
    assert "stage 2: 3x regular" in svg and "16 ch, /2, 4x4" in svg and "8x8x1" in svg


def test_single_objective_report_ranks_trials_and_shows_every_section():
    study = make_study()
    summary = study_summary(study, ["val/accuracy"])
    assert top_trials(study) == [1, 2, 0, 3]
    curves = {n: {"val/accuracy": [(1, 0.5), (2, 0.6)]} for n in (1, 2)}
    page = render(study, summary, ReportInputs(specs={1: spec([2, 2, 2])}, curves=curves, curve_source="test curves"))
    order = [page.index(f"#{i}: t{n:02d}") for i, n in enumerate([1, 2, 0, 3], 1)]
    assert order == sorted(order)
    assert page.count('<svg class="arch"') == 1  # only trial 1 had a spec
    # The front of accuracy (max) against MACs (min): t01 and t02; t00 and t03 are dominated.
    front = page.split("<h2>Pareto front</h2>")[1].split("<h2>")[0]
    assert "2 of 4 complete trials" in front
    assert re.findall(r"<tr><td>(t\d\d)</td>", front) == ["t01", "t02"]
    importances = page.split("<h2>Parameter importances</h2>")[1].split("<h2>")[0]
    assert "model.depths" in importances and "trainer.learning_rate" in importances and "<img" in importances
    curves_html = page.split("<h2>Learning curves of the top trials</h2>")[1].split("<h2>")[0]
    assert "test curves" in curves_html and curves_html.count("<img") == 1
    assert "PRUNED" in page.split("<h2>All trials</h2>")[1]


def test_multi_objective_report_uses_the_studys_front():
    study = make_study(directions=("maximize", "minimize"))
    page = render(study, study_summary(study, ["val/accuracy", "macs"]))
    front = page.split("<h2>Pareto front</h2>")[1].split("<h2>")[0]
    assert "the study's first two objectives" in front
    assert re.findall(r"<tr><td>(t\d\d)</td>", front) == ["t01", "t02"]
    # The Pareto set ranks first among the best architectures.
    assert top_trials(study)[:2] == [1, 2]


def test_report_with_no_complete_trial_still_renders():
    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={}))
    page = render(study, study_summary(study, ["val/accuracy"]))
    assert "No trial completed." in page and "Needs two or more complete trials." in page


def test_report_command_rebuilds_a_report_from_storage(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    make_study(storage).set_user_attr("objectives", ["val/accuracy"])
    out = tmp_path / "r.html"
    assert report_main(["--storage", storage, "--study", "s", "-o", str(out)]) == 0
    page = out.read_text()
    # Specs composed from the stored overrides: each top trial gets its stage diagram.
    assert page.count('<svg class="arch"') == 4 and "intermediate values (the pruning metric)" in page
    with pytest.raises(Exception, match="no study 'nope'.*studies there: \\['s'\\]"):
        report_main(["--storage", storage, "--study", "nope"])


def test_importances_need_four_complete_trials_and_say_when_they_tie():
    def section(study):
        page = render(study, study_summary(study, ["val/accuracy"]))
        return page.split("<h2>Parameter importances</h2>")[1].split("<h2>")[0]

    study = make_study()
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={}))
    three = optuna.create_study(study_name="s", direction="maximize")
    for t in study.get_trials()[:3] + study.get_trials()[4:]:  # three complete, one pruned, one failed
        three.add_trial(t)
    assert "Needs 4 or more complete trials (has 3)" in section(three)
    same = optuna.create_study(study_name="s", direction="maximize")
    for t in study.get_trials()[:4]:
        same.add_trial(create_trial(value=0.9, params=t.params, distributions=t.distributions))
    text = section(same)
    assert "importances tie (all equal): every complete trial has the same val/accuracy" in text
    assert "<img" not in text and "model.depths" in text
