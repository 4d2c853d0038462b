"""A sweep reviewed in the real MLflow UI: ``mlflow server`` plus headless Chromium.

Runs a small real sweep into an MLflow store, serves it with ``mlflow server`` on 127.0.0.1
and drives Debian's ``chromium`` (``.ci/run`` and ``./dev test`` install it) with Playwright.
Screenshots are kept as test artifacts in ``$TEST_ARTIFACTS_DIR`` (default ``test-artifacts/``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.servers import mlflow_server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO / "test-artifacts")) / "mlflow_ui"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
    "--disable-sync", "--no-first-run", "--mute-audio",
]  # fmt: skip
TRIALS = 2


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium not found (apt-get install chromium); .ci/run and ./dev test install it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def swept_store(tmp_path_factory):
    """A finished 2-trial sweep tracked in a SQLite MLflow store (artifacts next to it)."""
    root = tmp_path_factory.mktemp("ui_sweep")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "experiments.run", "+sweep=quick", f"hydra.sweeper.n_trials={TRIALS}",
           "hydra/launcher=basic", "trainer.epochs=2", "trainer.verbose=0", f"tracking.tracking_uri={uri}",
           f"hydra.sweeper.storage=sqlite:///{root / 'optuna.db'}", f"hydra.sweep.dir={root / 'multirun'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, uri


@pytest.fixture(scope="module")
def ui(swept_store):
    root, uri = swept_store
    with mlflow_server(uri, root / "mlartifacts", root / "mlflow-server.log") as url:
        yield url, MlflowClient(uri)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            browser.close()


def _sweep_runs(client: MlflowClient):
    exp = client.get_experiment_by_name("resnet-blocks")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return exp, parent, children


def test_experiment_page_shows_the_study_and_its_trials(ui, page):
    url, client = ui
    exp, parent, children = _sweep_runs(client)
    assert parent.info.run_name == "quick"  # the study's name
    assert len(children) == TRIALS
    page.goto(f"{url}/#/experiments/{exp.experiment_id}/runs")
    parent_link = page.get_by_role("link", name="quick", exact=True)
    parent_link.wait_for()
    # Child runs sit under their parent: expand it and find every trial by its name.
    page.locator("[role=row]", has=parent_link).locator("button").first.click()
    for child in children:
        assert re.fullmatch(r"t\d\d (baseline )?regular d\d-\d-\d w\d+ s122", child.info.run_name), child.info.run_name
        page.get_by_role("link", name=child.info.run_name, exact=True).first.wait_for()
    # The study's first trial is the run config's own model, labelled where the trial is named.
    assert sorted(c.info.run_name for c in children)[0].startswith("t00 baseline ")
    page.screenshot(path=str(ARTIFACTS / "experiment_runs.png"), full_page=True)


def test_our_links_open_the_experiment_as_training_runs(ui, page):
    """MLflow 3.17's UI opens experiments in its GenAI view (traces, evaluations); the links
    runs and sweeps print (experiments.tracking.ui_link) open the Model training view."""
    from experiments.tracking import ui_link

    url, client = ui
    exp, parent, _ = _sweep_runs(client)
    page.goto(ui_link(url, exp.experiment_id))
    nav = page.get_by_role("navigation").first
    nav.get_by_text("Model registry", exact=True).wait_for()
    assert "Evaluation runs" not in nav.inner_text() and "Judges" not in nav.inner_text()
    page.get_by_role("link", name="quick", exact=True).wait_for()  # the runs table, with the study's parent run
    page.screenshot(path=str(ARTIFACTS / "experiment_training_view.png"), full_page=True)
    page.goto(ui_link(url, exp.experiment_id, parent.info.run_id))
    page.get_by_text("quick").first.wait_for()
    assert "Model registry" in page.get_by_role("navigation").first.inner_text()


def test_trial_page_charts_metrics_by_epoch(ui, page):
    url, client = ui
    exp, _, children = _sweep_runs(client)
    child = children[0]
    history = client.get_metric_history(child.info.run_id, "val/accuracy")
    assert [m.step for m in history] == [1, 2]  # epochs as steps
    page.goto(f"{url}/#/experiments/{exp.experiment_id}/runs/{child.info.run_id}/model-metrics")
    page.get_by_text(child.info.run_name).first.wait_for()
    # Charts are grouped by key prefix (train/, val/, perf/, ...); search brings val/accuracy up.
    page.get_by_placeholder("Search metric charts").fill("val/accuracy")
    # A line chart over epochs (bar charts of single values have no "Step" axis).
    page.locator(".js-plotly-plot").filter(has_text="Step").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "trial_metrics.png"), full_page=True)
    # Readable params: config keys as the user wrote them.
    assert child.data.params["model.block"] == "regular"
    assert "trainer.learning_rate" in child.data.params


def test_parent_artifacts_hold_the_report(ui, page):
    url, client = ui
    exp, parent, _ = _sweep_runs(client)
    page.goto(f"{url}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/artifacts")
    for name in ("trials.csv", "best_config.yaml", "summary.json", "plots", "report.html"):
        page.get_by_text(name, exact=True).first.wait_for()
    # The HTML report previews inside the UI.
    page.get_by_text("report.html", exact=True).first.click()
    report = page.frame_locator("iframe").first
    report.get_by_text("Best architectures").wait_for()
    report.locator("svg.arch").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "parent_artifacts.png"), full_page=True)
