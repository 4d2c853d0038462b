"""From a study to a shipped model: retrain commands, finalize, evaluate."""

from __future__ import annotations

import csv
import logging
import os
import shlex
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from experiments import evaluate
from experiments.sweep import finalize
from experiments.sweep.retrain import config_composer, retrain_command, retrain_overrides
from tests.experiments.conftest import CONF, REPO, runs_of
from tests.experiments.test_run import _write_jpegs

TINY = ["model.depths=[1,1,1]", "model.widths=[8,8,16]", "trainer.batch_size=128"]


def test_retrain_keeps_the_overlays_model_and_data_and_drops_the_trial_budget():
    compose = config_composer(str(CONF))
    overrides = ["+sweep=quick", "trainer.epochs=2", "tracking.log_model=false", "model.depths=[1,1,1]",
                 "trainer.learning_rate=0.1"]  # fmt: skip
    args = retrain_overrides(overrides, compose, searched=["model.depths", "trainer.learning_rate"])
    assert not [a for a in args if a.startswith(("+sweep", "trainer.epochs", "tracking.log_model"))]
    cfg = compose(args)
    base = compose([])
    assert cfg.trainer.epochs == base.trainer.epochs == 10 and cfg.tracking.log_model
    assert cfg.model.stem_width == 8 != base.model.stem_width  # the quick overlay's fixed architecture
    assert list(cfg.model.depths) == [1, 1, 1] and cfg.trainer.learning_rate == 0.1
    # A searched budget key stays: it is part of what the trial chose.
    assert "trainer.epochs=2" in retrain_overrides(overrides, compose, searched=["trainer.epochs"])


@pytest.mark.slow
def test_the_printed_retrain_command_uses_the_full_budget_and_logs_a_model(tmp_path, mlflow_client, tracking_uri):
    compose = config_composer(str(CONF))
    command = retrain_command(["+sweep=quick", "trainer.epochs=1", *TINY], compose, searched=[])
    assert command.startswith("python -m experiments.run ") and "+sweep" not in command
    args = shlex.split(command)[3:]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", *args, f"tracking.tracking_uri={tracking_uri}",
         f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = runs_of(mlflow_client)
    assert run.data.params["trainer.epochs"] == "10" and run.data.metrics["train/epochs_run"] == 10
    assert run.data.params["model.stem_width"] == "8"
    (logged,) = mlflow_client.search_logged_models([run.info.experiment_id])
    assert logged.source_run_id == run.info.run_id


def _study(storage: str) -> optuna.Study:
    """A finished sweep's study: three configurations (one tried twice) and a pruned trial."""
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("objectives", ["val/accuracy"])
    lr = FloatDistribution(0.001, 1.0, log=True)
    for value, rate, state in [(0.90, 0.05, "COMPLETE"), (0.95, 0.1, "COMPLETE"), (0.95, 0.1, "COMPLETE"),
                               (0.80, 0.02, "COMPLETE"), (None, 0.5, "PRUNED")]:  # fmt: skip
        overrides = ["+sweep=quick", "trainer.epochs=2", *TINY, f"trainer.learning_rate={rate}"]
        study.add_trial(
            create_trial(
                state=TrialState[state], value=value, params={"trainer.learning_rate": rate},
                distributions={"trainer.learning_rate": lr},
                user_attrs={"overrides": overrides, "arch": "regular d1-1-1 w8 s122"},
            )
        )  # fmt: skip
    return study


@pytest.mark.slow
def test_finalize_retrains_top_k_with_seeds_under_the_parent_and_ships_the_winner(
    tmp_path, tracking_uri, mlflow_client, capsys
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _study(storage)
    code = finalize.main(
        ["--study", "s", "--storage", storage, "--top-k", "2", "--seeds", "2", "--register", "s-best",
         "trainer.epochs=2", f"tracking.tracking_uri={tracking_uri}"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    runs = runs_of(mlflow_client)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    every = [r for r in runs if r.data.tags.get("sweep.role") == "finalize"]
    # The study holds no baseline trial: finalize derives its default and retrains it, same seeds.
    baseline = [r for r in every if r.data.tags.get("finalize.baseline") == "default"]
    assert sorted(r.data.tags["finalize.seed"] for r in baseline) == ["0", "1"]
    finals = [r for r in every if r not in baseline]
    assert parent.data.tags["sweep.study"] == "s" and parent.info.status == "FINISHED"
    assert len(finals) == 4 and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in finals)
    # Top 2 distinct configurations: trials 1 (0.95; trial 2 repeats it) and 0 (0.90), two seeds each.
    assert sorted((r.data.tags["finalize.trial"], r.data.tags["finalize.seed"]) for r in finals) == [
        ("0", "0"), ("0", "1"), ("1", "0"), ("1", "1"),
    ]  # fmt: skip
    for r in finals:
        assert r.info.status == "FINISHED" and r.data.params["trainer.epochs"] == "2"
        assert "test/accuracy" in r.data.metrics and "val/accuracy" in r.data.metrics
    assert len(mlflow_client.search_logged_models([parent.info.experiment_id])) == 6
    # The table, ranked by mean validation accuracy, is logged to the parent and printed.
    path = mlflow_client.download_artifacts(parent.info.run_id, "finalize/finalize.csv")
    rows = list(csv.DictReader(open(path)))
    rows = [r for r in rows if not r["baseline"]]
    assert {r["trial"] for r in rows} == {"0", "1"}
    assert float(rows[0]["val_mean"]) >= float(rows[1]["val_mean"])
    for row in rows:
        # (the model kept is its best epoch's: best/val/accuracy, not the last epoch's val/accuracy)
        vals = [r.data.metrics["best/val/accuracy"] for r in finals if r.data.tags["finalize.trial"] == row["trial"]]
        assert float(row["val_mean"]) == pytest.approx(sum(vals) / 2)
    winner = parent.data.tags["finalize.winner_run"]
    paid = parent.data.tags["finalize.search_paid"] == "true"
    assert parent.data.tags["finalize.winner_trial"] == (rows[0]["trial"] if paid else "-1")
    (version,) = mlflow_client.search_model_versions("name='s-best'")
    assert version.run_id == winner
    assert "shipped: " in out and "verdict: " in out and "models:/s-best/1" in out and "±" in out


@pytest.mark.slow
def test_evaluate_reports_the_test_split_and_rejects_other_classes(
    make_cfg, tracking_uri, mlflow_client, tmp_path, capsys
):
    from experiments.run import run_task

    run_task(make_cfg())
    (run,) = runs_of(mlflow_client)
    assert evaluate.main([run.info.run_id, f"tracking.tracking_uri={tracking_uri}"]) == 0
    out = capsys.readouterr().out
    # The same test split and images as the run's own end-of-training evaluation.
    assert f"accuracy {run.data.metrics['test/accuracy']:.4f}" in out and "270 images" in out
    evaluation = [r for r in runs_of(mlflow_client) if r.data.tags.get("evaluation.run_id") == run.info.run_id]
    (ev,) = evaluation
    assert ev.data.metrics["test/accuracy"] == pytest.approx(run.data.metrics["test/accuracy"], abs=1e-6)
    assert ev.data.metrics["test/loss"] == pytest.approx(run.data.metrics["test/loss"], rel=1e-4)
    assert {f"test/class_accuracy/{i}" for i in range(10)} <= set(ev.data.metrics)
    assert {"confusion_matrix.png", "per_class.csv"} <= {a.path for a in mlflow_client.list_artifacts(ev.info.run_id)}
    # A folder of other classes: one clear line naming both class lists, exit code 2.
    _write_jpegs(tmp_path / "imgs", size=(8, 8))
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([f"runs:/{run.info.run_id}/model", "data=image_folder", f"data.path={tmp_path / 'imgs'}",
                       "data.test_split=0.3", "data.channels=1", "data.image_size=[8,8]", f"tracking.tracking_uri={tracking_uri}"])  # fmt: skip
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "['0', '1'" in err and "['cat', 'dog', 'owl']" in err


@pytest.mark.slow
def test_finalize_retrains_the_studys_baseline_with_the_same_seeds_and_writes_the_verdict(
    tmp_path, tracking_uri, mlflow_client, capsys
):
    import json

    from experiments.sweep.baselines import BASELINE_ATTR, BASELINE_OVERRIDES_ATTR

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="b", storage=storage, direction="maximize")
    study.set_user_attr("objectives", ["val/accuracy"])
    lr = FloatDistribution(0.001, 1.0, log=True)
    for value, rate, label in [(0.85, 0.05, "default"), (0.95, 0.1, None), (0.80, 0.02, None)]:
        attrs = {"overrides": ["+sweep=quick", "trainer.epochs=2", *TINY, f"trainer.learning_rate={rate}"],
                 "arch": "regular d1-1-1 w8 s122"}  # fmt: skip
        if label:
            attrs |= {BASELINE_ATTR: label, BASELINE_OVERRIDES_ATTR: []}
        study.add_trial(create_trial(value=value, params={"trainer.learning_rate": rate},
                                     distributions={"trainer.learning_rate": lr}, user_attrs=attrs))  # fmt: skip
    code = finalize.main(["--study", "b", "--storage", storage, "--top-k", "1", "--seeds", "2", "trainer.epochs=2",
                          f"tracking.tracking_uri={tracking_uri}"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    runs = runs_of(mlflow_client)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    every = [r for r in runs if r.data.tags.get("sweep.role") == "finalize"]
    baseline = {r.data.tags["finalize.seed"]: r for r in every if r.data.tags.get("finalize.baseline") == "default"}
    winner = {r.data.tags["finalize.seed"]: r for r in every if "finalize.baseline" not in r.data.tags}
    # The study's own baseline trial (t00), not a derived one; the winner's seeds and budget.
    assert sorted(baseline) == sorted(winner) == ["0", "1"] and len(every) == 4
    assert {r.data.tags["finalize.trial"] for r in baseline.values()} == {"0"}
    assert {r.data.tags["finalize.trial"] for r in winner.values()} == {"1"}
    for r in every:
        assert r.data.params["trainer.epochs"] == "2"
    assert {r.data.params["trainer.learning_rate"] for r in baseline.values()} == {"0.05"}
    # The verdict: winner − baseline paired by seed, on what selection used and on the test split.
    with open(mlflow_client.download_artifacts(parent.info.run_id, "finalize/verdict.json", str(tmp_path))) as f:
        verdict = json.load(f)
    val = [winner[s].data.metrics["best/val/accuracy"] - baseline[s].data.metrics["best/val/accuracy"] for s in "01"]
    test = [winner[s].data.metrics["test/accuracy"] - baseline[s].data.metrics["test/accuracy"] for s in "01"]
    assert verdict["seeds"] == 2 and verdict["val_diff_mean"] == pytest.approx(sum(val) / 2)
    assert verdict["test_diff_mean"] == pytest.approx(sum(test) / 2) and verdict["val_diff_ci95"] is not None
    assert verdict["macs_ratio"] == pytest.approx(1.0) and verdict["baseline"].startswith("t00 baseline ")
    paid = sum(val) > 0
    assert verdict["search_paid"] is paid and parent.data.tags["finalize.search_paid"] == str(paid).lower()
    assert parent.data.tags["finalize.winner_trial"] == ("1" if paid else "0")
    assert parent.data.metrics["verdict/val_diff_mean"] == pytest.approx(sum(val) / 2)
    table = open(mlflow_client.download_artifacts(parent.info.run_id, "finalize/verdict.txt", str(tmp_path))).read()
    assert "val accuracy, winner − baseline" in table and table.rstrip().endswith(parent.data.tags["finalize.verdict"])
    line = next(ln for ln in out.splitlines() if ln.startswith("verdict: "))
    assert line == parent.data.tags["finalize.verdict"]
    assert ("shipped the winner" if paid else "shipped the baseline") in line


@pytest.mark.slow
def test_finalize_again_resumes_what_was_interrupted_and_refuses_other_settings_unless_again(
    tmp_path, tracking_uri, mlflow_client, capsys, caplog
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _study(storage)
    args = ["--study", "s", "--storage", storage, "--top-k", "1", "--seeds", "2", "--register", "s-best",
            "trainer.epochs=1", f"tracking.tracking_uri={tracking_uri}"]  # fmt: skip

    def finals():
        return [r for r in runs_of(mlflow_client) if r.data.tags.get("sweep.role") == "finalize"]

    assert finalize.main(args) == 0
    first = finals()
    assert len(first) == 4 and {r.data.tags["finalize.round"] for r in first} == {"1"}  # 1 trial + baseline, 2 seeds
    killed = next(r for r in first if r.data.tags["finalize.trial"] == "1" and r.data.tags["finalize.seed"] == "1")
    mlflow_client.set_terminated(killed.info.run_id, status="KILLED")  # as if finalize was interrupted there
    capsys.readouterr()
    caplog.set_level(logging.INFO, logger="experiments.sweep.finalize")
    assert finalize.main(args) == 0  # the same command resumes: only the killed run trains again
    second = finals()
    (new,) = [r for r in second if r.info.run_id not in {r.info.run_id for r in first}]
    assert (new.data.tags["finalize.trial"], new.data.tags["finalize.seed"], new.data.tags["finalize.round"]) == (
        "1", "1", "1",
    )  # fmt: skip
    assert new.data.tags["finalize.config"] == killed.data.tags["finalize.config"]
    assert "resumes round 1: 3 of 4 runs done before" in caplog.text
    assert "shipped: " in capsys.readouterr().out
    assert finalize.main(args) == 0  # everything done: nothing trains, nothing registered twice
    assert len(finals()) == 5
    assert len(mlflow_client.search_model_versions("name='s-best'")) <= 2
    (parent,) = [r for r in runs_of(mlflow_client) if r.data.tags.get("sweep.role") == "parent"]
    assert parent.info.status == "FINISHED"
    capsys.readouterr()
    other = [a if a != "2" else "1" for a in args]  # --seeds 1: other settings
    with pytest.raises(SystemExit) as exit_:
        finalize.main(other)
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --again: study 's' was finalized before with other settings (round 1: 5 runs, ")
    assert "--top-k 1 --seeds 2 trainer.epochs=1" in line
    assert len(finals()) == 5 and mlflow_client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert finalize.main([*other, "--again"]) == 0
    third = [r for r in finals() if r.data.tags["finalize.round"] == "2"]
    assert sorted((r.data.tags["finalize.trial"], r.data.tags["finalize.seed"]) for r in third) == [
        ("-1", "0"),
        ("1", "0"),
    ]
