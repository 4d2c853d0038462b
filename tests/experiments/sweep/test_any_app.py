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


# Each test's sweep: (overrides, config). They start together (each mostly waits on the
# sweeper's imports, which overlap) and each test reads its own.
SWEEPS = {
    "sphere": ((), "sphere"),
    "multi_objective": ((), "multi_objective"),
    "grid": (("hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=50", "x=choice(1,2)", "y=choice(3,4,5)"), "sphere"),
    "int": (("hydra.sweeper.n_trials=5", "x=int(interval(1,5))", "y=tag(log,int(interval(1,64)))"), "sphere"),
    "motpe": (("hydra/sweeper/sampler=motpe",), "multi_objective"),
    "custom": (("hydra.sweeper.n_trials=6",), "custom_search_space"),
}


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    procs = {}
    for name, (overrides, config) in SWEEPS.items():
        d = tmp_path_factory.mktemp(name)
        args = [
            sys.executable,
            str(APP),
            "--multirun",
            "--config-name",
            config,
            f"hydra.sweep.dir={d / 'm'}",
            *overrides,
        ]
        procs[name] = (d, subprocess.Popen(args, cwd=d, env=subprocess_env(), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True))  # fmt: skip
    yield procs
    for _, proc in procs.values():
        proc.kill()


def sweep_app(started, name):
    """The finished sweep ``name`` of SWEEPS: (process, optimization_results.yaml or None, its directory)."""
    d, proc = started[name]
    out, err = proc.communicate(timeout=300)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    results = d / "m" / "optimization_results.yaml"
    return done, (OmegaConf.to_container(OmegaConf.load(results)) if results.exists() else None), d


def job_values(tmp_path) -> list[dict]:
    """The overrides each Hydra job ran with (its .hydra/overrides.yaml)."""
    out = []
    for f in sorted((tmp_path / "m").glob("*/.hydra/overrides.yaml")):
        out.append(dict(o.split("=", 1) for o in OmegaConf.load(f)))
    return out


def test_hydras_sphere_example_runs_and_writes_its_results(started):
    proc, results, tmp_path = sweep_app(started, "sphere")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = job_values(tmp_path)
    assert 1 <= len(jobs) <= 20  # (a repeated point reuses its value: no job)
    xs = {float(j["x"]) for j in jobs}
    assert xs <= {-5.5 + 0.5 * i for i in range(22)}  # range(-5.5, 5.5, step=0.5): hi exclusive
    assert {int(j["y"]) for j in jobs} <= {-5, 0, 5}
    best = min(float(j["x"]) ** 2 + int(j["y"]) ** 2 for j in jobs)
    assert results["name"] == "optuna" and results["best_value"] == pytest.approx(best)
    assert results["best_params"]["x"] ** 2 + results["best_params"]["y"] ** 2 == pytest.approx(best)


def test_hydras_multi_objective_example_writes_its_pareto_front(started):
    proc, results, _ = sweep_app(started, "multi_objective")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    front = [tuple(s["values"]) for s in results["solutions"]]
    assert front
    for a in front:  # no solution dominates another
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in front)
    for s in results["solutions"]:
        x, y = s["params"]["x"], s["params"]["y"]
        assert s["values"] == pytest.approx([4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2])


def test_grid_runs_stop_at_the_grid_size(started):
    proc, _, tmp_path = sweep_app(started, "grid")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    points = {(j["x"], j["y"]) for j in job_values(tmp_path)}
    assert len(job_values(tmp_path)) == 6 and len(points) == 6


def test_int_casts_give_integers(started):
    proc, _, tmp_path = sweep_app(started, "int")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for j in job_values(tmp_path):
        assert j["x"].isdigit() and 1 <= int(j["x"]) <= 5 and j["y"].isdigit()


def test_a_sampler_optuna_removed_is_named(started):
    proc, _, _ = sweep_app(started, "motpe")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "sampler was removed in Optuna 4.0" in line and "MOTPESampler" in line and "use tpe" in line


def test_hydras_custom_search_space_example_adds_its_suggestions_as_overrides(started):
    proc, results, tmp_path = sweep_app(started, "custom")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = job_values(tmp_path)
    assert jobs
    for j in jobs:
        assert abs(float(j["z"]) - float(j["x"])) <= 0.5 and 0 <= float(j["+w"]) <= 1
    p = results["best_params"]
    assert results["best_value"] == pytest.approx(p["x"] ** 2 + p["y"] ** 2 + p["z"] ** 2 + p["+w"])
