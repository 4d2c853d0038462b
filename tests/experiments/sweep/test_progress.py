"""What a person watching a sweep sees fits an 80-column terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console

from experiments.sweep.progress import Progress


def _summary(n: int) -> dict:
    archs = ["bottleneck_v1 d2-3-4 w32 s112", "regular_v1 d3-3-3 w16 s121", "bottleneck d1-1-1 w32 s122"]
    trials = []
    for i in range(n):
        trials.append({
            "number": i, "state": ["COMPLETE", "PRUNED", "FAIL"][i % 3], "rejected": "over budget" if i == 4 else None,
            "values": [0.4123 + i / 100] if i % 3 == 0 else None, "se": 0.0123, "arch": archs[i % 3],
            "params": 1_234_567 * (i + 1), "macs": 345_678_901 * (i + 1), "tied_with_best": i == 3,
        })  # fmt: skip
    best = [{"number": 9, "values": [0.49], "se": 0.0123, "command": "python -m experiments.run model.block=regular"}]
    return {"study_name": "blocks", "counts": {"COMPLETE": 4, "PRUNED": 4, "FAIL": 2}, "trials": trials,
            "best": best, "num_val": 5000, "se_of": "val/accuracy", "warnings": []}  # fmt: skip


def test_the_trials_table_keeps_one_line_per_trial_at_80_columns():
    progress = Progress(10, ["val/accuracy"], ["maximize"])
    out = io.StringIO()
    progress.console = Console(file=out, width=80, highlight=False, color_system=None)
    progress.summary(_summary(10))
    lines = out.getvalue().splitlines()
    table = [ln for ln in lines if "t0" in ln and "d" in ln]
    assert len(table) == 10, "\n".join(lines)  # each trial's row whole, architecture unwrapped
    assert all(len(ln) <= 80 for ln in lines if not ln.lstrip().startswith("retrain")), "\n".join(lines)
    assert any("rejected" in ln and "t04" in ln for ln in table)
    assert any("12.3M" in ln for ln in table)  # params 12,345,670 in short form


def test_each_trials_difference_to_the_baseline_shows_with_its_standard_error_at_80_columns():
    progress = Progress(10, ["val/accuracy"], ["maximize"])
    out = io.StringIO()
    progress.console = Console(file=out, width=80, highlight=False, color_system=None)
    summary = _summary(10)
    summary["baseline"] = {"number": 0, "label": "default"}
    for row in summary["trials"]:
        if row["values"]:
            row.update(vs_baseline=row["values"][0] - 0.4123, vs_baseline_se=0.0174 + row["number"] / 10000)
    summary["trials"][0].update(arch="baseline regular d3-3-3 w16 s122", baseline="default")
    summary["trials"][3].update(arch="baseline[cifar_resnet32] regular d5-5-5 w16 s122", baseline="cifar_resnet32")
    progress.summary(summary)
    lines = out.getvalue().splitlines()
    table = [ln for ln in lines if re.match(r"\s*[*≈]?t\d\d ", ln)]
    assert len(table) == 10, "\n".join(lines)
    assert all(len(ln) <= 80 for ln in lines if not ln.lstrip().startswith("retrain")), "\n".join(lines)
    assert any("t03" in ln and "+0.030" in ln for ln in table), "\n".join(lines)
    assert any("t01" in ln and " - " in f" {ln} " for ln in table)  # (pruned: no difference)
    assert any("t00" in ln and "baseline" in ln and "regular d3-3-3" in ln for ln in table)
    text = " ".join(ln.strip() for ln in lines)
    assert "baselines: t00 default, t03 cifar_resnet32" in text
    assert "minus the best baseline's (t00), its standard error 0.017-0.018" in text


def test_the_live_board_shows_each_trial_in_flight_with_its_epoch_and_last_value():
    import optuna

    from experiments.sweep.live import Flight, LiveBoard

    study = optuna.create_study()
    trained = study.ask()
    trained.report(0.5, 1)
    trained.report(0.75, 2)
    study.ask()  # (set up, no epoch yet)
    board = LiveBoard(Console(file=io.StringIO(), force_terminal=True, width=80), 5, 1, 4, "val/accuracy")
    board.update([Flight(0, "regular d1-1-1 w8 s122"), Flight(1, "bottleneck d2-2-2 w16 s122")], study)
    out = Console(file=io.StringIO(), width=80, record=True)
    out.print(board._render())
    lines = out.export_text().splitlines()
    assert any("1/5" in line and "ETA" in line for line in lines)  # the study's bar
    (t00,) = [line for line in lines if "t00" in line]
    assert "regular d1-1-1 w8 s122" in t00 and "epoch 2/4" in t00 and "val/accuracy=0.7500" in t00
    (t01,) = [line for line in lines if "t01" in line]
    assert "setting up" in t01
    board.set_done(2)
    out.print(board._render())
    assert "2/5" in out.export_text()
