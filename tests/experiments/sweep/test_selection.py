"""Accuracies with their standard errors and ties within noise: the statistics and where they show."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from experiments.sweep.html_report import render
from experiments.sweep.progress import Progress
from experiments.sweep.report import study_summary
from experiments.sweep.selection import (
    accuracy_index,
    accuracy_se,
    fmt_se,
    separation_warning,
    tied_with_best,
    within_noise,
)

# Standard errors by hand, sqrt(p (1 - p) / n), at n = 100:
#   0.95 -> sqrt(0.0475 / 100) = 0.021794    0.93 -> sqrt(0.0651 / 100) = 0.025515
#   0.90 -> sqrt(0.09 / 100)   = 0.030000    0.80 -> sqrt(0.16 / 100)   = 0.040000
# Ties with 0.95, 1.96 * sqrt(se_best^2 + se_i^2) against the difference:
#   0.93: 1.96 * sqrt(0.000475 + 0.000651) = 0.06577 > 0.02 -> tied
#   0.90: 1.96 * sqrt(0.000475 + 0.0009)   = 0.07268 > 0.05 -> tied
#   0.80: 1.96 * sqrt(0.000475 + 0.0016)   = 0.08928 < 0.15 -> separated
# At n = 10000 each threshold is ten times smaller (0.006577 < 0.02): nothing ties.
RANKED = [(1, 0.95), (2, 0.93), (0, 0.90), (3, 0.80)]


@pytest.mark.parametrize(
    "p, n, se",
    [
        (0.9, 100, 0.03),
        (0.5, 400, 0.025),  # sqrt(0.25 / 400)
        (0.912, 360, 0.0149),  # sqrt(0.080256 / 360) = 0.014931
        (0.8, 10_000, 0.004),  # sqrt(0.16 / 10000)
        (1.0, 50, 0.0),  # all right: no binomial spread
        (0.0, 10, 0.0),
    ],
)
def test_accuracy_se_is_the_binomial_standard_error(p, n, se):
    assert accuracy_se(p, n) == pytest.approx(se, abs=5e-5)


@pytest.mark.parametrize("p, n", [(0.5, 0), (1.5, 100), (-0.1, 100)])
def test_accuracy_se_rejects_what_is_not_an_accuracy(p, n):
    with pytest.raises(ValueError, match="0 <= p <= 1"):
        accuracy_se(p, n)


@pytest.mark.parametrize(
    "ranked, n, tied",
    [
        (RANKED, 100, [2, 0]),
        (RANKED, 10_000, []),
        # Equal accuracies always tie, also at 1.0 where both standard errors are 0;
        # 0.9 against 1.0: 1.96 * sqrt(0 + 0.0009) = 0.0588 < 0.1 -> separated.
        ([(4, 1.0), (5, 1.0), (6, 0.9)], 100, [5]),
        # 0.912 against 0.905 at n = 360: 1.96 * sqrt(0.00022293 + 0.00023882) = 0.0421 > 0.007 -> tied
        ([(3, 0.912), (7, 0.905)], 360, [7]),
        ([(3, 0.912)], 360, []),
        ([], 360, []),
    ],
)
def test_tied_with_best_uses_a_two_sided_test_on_the_difference(ranked, n, tied):
    assert tied_with_best(ranked, n) == tied


def test_within_noise_is_symmetric():
    assert within_noise(0.95, 0.90, 100) and within_noise(0.90, 0.95, 100)
    assert not within_noise(0.95, 0.80, 100) and not within_noise(0.80, 0.95, 100)


@pytest.mark.parametrize(
    "p, se, text",
    [(0.912, 0.014931, "0.912 ± 0.015"), (0.98765, 0.00049, "0.9877 ± 0.0005"), (1.0, 0.0, "1.000 ± 0.000")],
)
def test_fmt_se_shows_a_significant_digit_of_the_error(p, se, text):
    assert fmt_se(p, se) == text


def test_accuracy_index_finds_the_accuracy_objective():
    assert accuracy_index(["val/accuracy"]) == 0
    assert accuracy_index(["macs", "val/accuracy"]) == 1
    assert accuracy_index(["val/loss", "macs"]) is None


def test_separation_warning_names_the_tied_trials_and_what_to_do():
    # se(0.905, 360) = sqrt(0.085975 / 360) = 0.015454
    assert separation_warning([(3, 0.912), (7, 0.905)], 360) == (
        "validation split too small to separate the top trials: t03 0.912 ± 0.015 and t07 0.905 ± 0.015 "
        "are within noise (n_val=360); finalize the top trials with several seeds "
        "(python -m experiments.sweep.finalize) or use a larger data.validation_split"
    )
    assert separation_warning(RANKED, 10_000) is None
    assert separation_warning(RANKED[:1], 100) is None
    # The best and four tied trials are named, the rest counted.
    many = separation_warning([(k, 0.9) for k in range(7)], 100)
    assert "t03 0.900 ± 0.030, t04 0.900 ± 0.030 and 2 more are within noise" in many


# -- in a study's summary, the printed table and the HTML report ------------------------------
DISTS = {"model.depths": CategoricalDistribution(["[1, 1, 1]", "[2, 2, 2]"])}


def make_study(num_val: int | None = 100, directions=("maximize",)):
    """The RANKED accuracies as trials 0-3, a reused duplicate of t02 (t04) and a pruned trial."""
    study = optuna.create_study(study_name="noise", directions=list(directions))
    if num_val is not None:
        study.set_user_attr("num_val", num_val)
    for acc, macs, extra in [(0.90, 400_000, {}), (0.95, 900_000, {}), (0.93, 300_000, {}), (0.80, 950_000, {}),
                             (0.93, 300_000, {"duplicate_of": 2})]:  # fmt: skip
        values = [acc] if len(directions) == 1 else [acc, macs]
        depths = "[1, 1, 1]" if macs < 500_000 else "[2, 2, 2]"
        study.add_trial(
            create_trial(
                values=values, params={"model.depths": depths}, distributions=DISTS,
                user_attrs={"arch": f"regular d{depths[1]}-{depths[4]}-{depths[7]}", "macs": macs, **extra},
            )
        )  # fmt: skip
    study.add_trial(create_trial(state=TrialState.PRUNED, params={}, distributions={}))
    return study


def test_summary_gives_each_accuracy_its_error_and_marks_ties():
    summary = study_summary(make_study(), ["val/accuracy"])
    assert summary["num_val"] == 100 and summary["se_of"] == "val/accuracy"
    rows = {r["number"]: r for r in summary["trials"]}
    assert rows[1]["se"] == pytest.approx(math.sqrt(0.95 * 0.05 / 100))
    # t01 is the best (the reference); t04 repeats t02 and shares its tie.
    assert {n: r["tied_with_best"] for n, r in rows.items()} == {0: True, 1: False, 2: True, 3: False, 4: True, 5: None}
    assert rows[5]["se"] is None  # pruned: no value
    [best] = summary["best"]
    assert best["number"] == 1 and best["se"] == pytest.approx(0.021794, abs=1e-6) and best["tied_with_best"] is False
    [warning] = summary["warnings"]
    assert "t01 0.950 ± 0.022, t02 0.930 ± 0.026 and t00 0.900 ± 0.030 are within noise (n_val=100)" in warning


def test_report_shows_the_errors_ties_and_warning():
    study = make_study()
    summary = study_summary(study, ["val/accuracy"])
    page = render(study, summary)
    head = page.split("<h2>Best architectures</h2>")[0]
    assert "class='warn'" in head and "validation split too small to separate the top trials" in head
    assert "n_val=100" in head
    cards = page.split("<h2>Best architectures</h2>")[1].split("<h2>")[0]
    assert "val/accuracy = 0.950 ± 0.022" in cards and "#2: t02 regular d1-1-1 <span class='tie'" in cards
    table = page.split("<h2>All trials</h2>")[1]
    assert "<td>0.800 ± 0.040</td>" in table and "<td>t00 <span class='tie'" in table and "<td>t03</td>" in table


def test_progress_summary_prints_errors_ties_and_warning(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    summary = study_summary(make_study(), ["val/accuracy"])
    Progress(6, ["val/accuracy"], ["maximize"]).summary(summary)
    out = capsys.readouterr().out
    assert "0.950 ± 0.022" in out and "≈t02" in out and "*t01" in out and "≈t03" not in out
    assert "best t01 best/val/accuracy=0.950 ± 0.022" in out
    assert "warning: validation split too small" in out.splitlines()[-1]
    table = [line for line in out.splitlines() if not line.startswith(("best", "  retrain", "warning"))]
    assert max(len(line) for line in table) <= 80


def test_without_num_val_nothing_is_marked():
    study = make_study(num_val=None)
    summary = study_summary(study, ["val/accuracy"])
    assert summary["num_val"] is None and summary["se_of"] is None and summary["warnings"] == []
    assert all(r["se"] is None and r["tied_with_best"] is None for r in summary["trials"] + summary["best"])
    page = render(study, summary)
    assert "±" not in page and "class='warn'" not in page and "does not record its validation size" in page


def test_objectives_that_are_not_accuracies_get_no_error():
    study = make_study()
    summary = study_summary(study, ["val/loss"])  # (the values are the same; only the name differs)
    assert summary["se_of"] is None and summary["warnings"] == []
    assert all(r["se"] is None for r in summary["trials"])
    assert "±" not in render(study, summary)


def test_multi_objective_study_marks_the_accuracy_objective_only():
    study = make_study(directions=("maximize", "minimize"))
    summary = study_summary(study, ["val/accuracy", "macs"])
    assert summary["se_of"] == "val/accuracy" and len(summary["warnings"]) == 1
    best = {b["number"]: b for b in summary["best"]}  # the Pareto set: t01 and t02 (t04 repeats t02)
    assert best[1]["tied_with_best"] is False and best[2]["tied_with_best"] is True
    table = render(study, summary).split("<h2>All trials</h2>")[1]
    assert "<td>0.930 ± 0.026</td><td>300,000</td>" in table  # MACs as they were
