"""The sweeper on any Hydra app (examples/any_app: Hydra's Optuna sweeper examples with only
the sweeper's name changed): search-space grammar, sampler group, grid size, results file."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.slow

APP = REPO_ROOT / "examples" / "any_app" / "sphere.py"


def sweep_app(tmp_path, *overrides, config="sphere"):
    proc = subprocess.run(
        [sys.executable, str(APP), "--multirun", "--config-name", config, f"hydra.sweep.dir={tmp_path / 'm'}", *overrides],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    results = tmp_path / "m" / "optimization_results.yaml"
    return proc, (OmegaConf.to_container(OmegaConf.load(results)) if results.exists() else None)


def job_values(tmp_path) -> list[dict]:
    """The overrides each Hydra job ran with (its .hydra/overrides.yaml)."""
    out = []
    for f in sorted((tmp_path / "m").glob("*/.hydra/overrides.yaml")):
        out.append(dict(o.split("=", 1) for o in OmegaConf.load(f)))
    return out


def test_hydras_sphere_example_runs_and_writes_its_results(tmp_path):
    proc, results = sweep_app(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = job_values(tmp_path)
    assert 1 <= len(jobs) <= 20  # (a repeated point reuses its value: no job)
    xs = {float(j["x"]) for j in jobs}
    assert xs <= {-5.5 + 0.5 * i for i in range(22)}  # range(-5.5, 5.5, step=0.5): hi exclusive
    assert {int(j["y"]) for j in jobs} <= {-5, 0, 5}
    best = min(float(j["x"]) ** 2 + int(j["y"]) ** 2 for j in jobs)
    assert results["name"] == "optuna" and results["best_value"] == pytest.approx(best)
    assert results["best_params"]["x"] ** 2 + results["best_params"]["y"] ** 2 == pytest.approx(best)


def test_hydras_multi_objective_example_writes_its_pareto_front(tmp_path):
    proc, results = sweep_app(tmp_path, config="multi_objective")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    front = [tuple(s["values"]) for s in results["solutions"]]
    assert front
    for a in front:  # no solution dominates another
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in front)
    for s in results["solutions"]:
        x, y = s["params"]["x"], s["params"]["y"]
        assert s["values"] == pytest.approx([4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2])


def test_grid_runs_stop_at_the_grid_size(tmp_path):
    proc, _ = sweep_app(
        tmp_path, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=50", "x=choice(1,2)", "y=choice(3,4,5)"
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    points = {(j["x"], j["y"]) for j in job_values(tmp_path)}
    assert len(job_values(tmp_path)) == 6 and len(points) == 6


def test_int_casts_give_integers(tmp_path):
    proc, _ = sweep_app(tmp_path, "hydra.sweeper.n_trials=5", "x=int(interval(1,5))", "y=tag(log,int(interval(1,64)))")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for j in job_values(tmp_path):
        assert j["x"].isdigit() and 1 <= int(j["x"]) <= 5 and j["y"].isdigit()


def test_a_sampler_optuna_removed_is_named(tmp_path):
    proc, _ = sweep_app(tmp_path, "hydra/sweeper/sampler=motpe", config="multi_objective")
    assert proc.returncode == 2
    assert "MOTPESampler was removed in Optuna 4.0" in proc.stdout + proc.stderr


def test_hydras_custom_search_space_example_adds_its_suggestions_as_overrides(tmp_path):
    proc, results = sweep_app(tmp_path, "hydra.sweeper.n_trials=6", config="custom_search_space")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = job_values(tmp_path)
    assert jobs
    for j in jobs:
        assert abs(float(j["z"]) - float(j["x"])) <= 0.5 and 0 <= float(j["+w"]) <= 1
    p = results["best_params"]
    assert results["best_value"] == pytest.approx(p["x"] ** 2 + p["y"] ** 2 + p["z"] ** 2 + p["+w"])
