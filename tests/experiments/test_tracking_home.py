"""One home for tracking: the rest of the code speaks of runs, trials and models; what MLflow
calls them (URIs, system tags, environment variables, module names, its client) is known in
``experiments.tracking`` only (``tests/test_architecture.py`` pins its imports)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from experiments.tracking import (
    PRELOAD_MODULES,
    NullTracker,
    RunReader,
    RunTracker,
    StudyRuns,
    default_tracking_uri,
    model_uri,
    tags_with_parents,
)
from tests.experiments.conftest import REPO


def _mlflow_names(path) -> list[str]:
    """What ``path`` says in MLflow's own terms: its module names and system tags, its
    environment variables, ``runs:/`` URIs built by hand, its client and metric histories."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        line = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if (
                v == "mlflow"
                or (v.startswith("mlflow.") and " " not in v)
                or (v.startswith("MLFLOW_") and " " not in v)
            ):
                found.append(f"{line} {v!r}")
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            if str(node.values[0].value).startswith("runs:/"):
                found.append(f"{line} a runs:/ URI")
        elif isinstance(node, ast.Attribute) and node.attr in ("client", "get_metric_history"):
            found.append(f"{line} .{node.attr}")
    return found


def test_no_module_outside_tracking_speaks_mlflow():
    paths = [p for pkg in ("experiments", "resnet_blocks", "hydra_plugins") for p in (REPO / pkg).rglob("*.py")]
    found = [f for p in sorted(paths) if "tracking" not in p.relative_to(REPO).parts for f in _mlflow_names(p)]
    assert not found, found


def test_the_null_tracker_offers_what_a_run_tracker_does_and_nothing_else():
    offered = {n for n in vars(RunTracker) if not n.startswith("_") and n != "remote"}  # (remote: the model store's)
    assert offered <= set(dir(NullTracker)), offered - set(dir(NullTracker))
    assert "__getattr__" not in vars(NullTracker)
    tr = NullTracker()
    with tr.open(run_name="x", tags={}, parent_run_id=None) as opened:
        assert opened is tr
        assert tr.log_config({"a": 1}, "a: 1\n") is None
        assert tr.log_metrics({"m": 1.0}, step=1, background=True) is None
        assert tr.set_tags({"t": 1}) is None
        assert tr.log_text("x", "x.txt") is None and tr.log_dict({}, "x.json") is None
        assert tr.log_artifact("x.txt") is None and tr.log_dataset(object()) is None
        assert tr.log_model(object(), None, metadata={}, registered_name=None) is None
    assert tr.run_id is None and tr.page is None and tr.model_uri is None and tr.lost is None
    with pytest.raises(AttributeError):
        tr.log_metric  # noqa: B018 - a misspelt call fails, as on a RunTracker


def test_both_books_are_books_and_say_where_they_are_kept():
    import optuna

    from experiments.sweep.engine import tracking_lost_line
    from experiments.sweep.records import Book, NoBook, TrackedBook

    none = NoBook()
    assert isinstance(none, Book) and none.lost is None and none.where is None and none.parent is None
    tracked = TrackedBook(SimpleNamespace(tracking_uri="sqlite:///x.db"), "p1", "s", lost=RuntimeError("gone"))
    assert isinstance(tracked, Book) and tracked.where == "sqlite:///x.db" and tracked.parent == "p1"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    line = tracking_lost_line(tracked, optuna.create_study(study_name="s"), None)
    assert line.startswith("tracking.tracking_uri: the MLflow tracking store 'sqlite:///x.db' stopped answering (gone)")


def test_a_runs_model_uri_has_one_home():
    from experiments.evaluate import model_uri_of

    run_id = "0123456789abcdef" * 2
    assert model_uri(run_id) == f"runs:/{run_id}/model" == model_uri_of(run_id)
    assert model_uri_of("models:/m/1") == "models:/m/1"


def test_the_default_store_and_the_cleanup_help_come_from_tracking(monkeypatch, capsys):
    from experiments.cleanup import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://h:5000")
    assert default_tracking_uri() == "http://h:5000"
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db" in " ".join(capsys.readouterr().out.split())


def test_importing_tracking_turns_mlflows_progress_bars_off_unless_asked():
    code = "import os, experiments.tracking; print(os.environ.get('MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR'))"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"}
    for given, expected in ((None, "false"), ("true", "true")):
        run_env = {**env, "PYTHONPATH": str(REPO), **({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": given} if given else {})}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_the_fork_server_preloads_what_tracking_names():
    from experiments.sweep.forkserver import PRELOAD

    assert [m for m in PRELOAD if m in PRELOAD_MODULES] == list(PRELOAD_MODULES)
    assert "mlflow" in PRELOAD_MODULES and PRELOAD[0] == "experiments.sweep.forkserver_guard"


def test_runs_are_read_back_with_their_metric_histories_and_parents(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = StudyRuns(uri, "resnet-blocks")
    parent = runs.parent_run("s", None)
    runs.set_tags(parent, {"sweep.storage": "sqlite:///optuna.db"})
    child = runs.record_trial_without_training(parent, "t00", {}, {"sweep.role": "trial", "sweep.trial": 0})
    for step, value in ((1, 0.5), (2, 0.75)):
        runs.log_metric(child, "val/accuracy", value, step=step)
    assert runs.metric_history(child, "val/accuracy") == [(1, 0.5), (2, 0.75)]
    assert RunReader(uri).metric_history(child, "val/accuracy") == [(1, 0.5), (2, 0.75)]
    assert RunReader(uri).metric_history(child, "no/such") == []

    found = tags_with_parents(uri, [child, parent, "f" * 32])
    assert set(found) == {child, parent}  # (a run that is gone is left out)
    tags, parent_tags = found[child]
    assert tags["sweep.trial"] == "0" and parent_tags["sweep.storage"] == "sqlite:///optuna.db"
    assert found[parent][1] == {}
