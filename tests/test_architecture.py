"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and cover every module."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_imports_flow_one_way():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_experiments_module_outside_sweeps_is_under_the_contract():
    """A new module in experiments/ must be added to the contract (or be the command dispatcher)."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    sources = set(next(c for c in conf if "experiments.sweep" in c["forbidden_modules"])["source_modules"])
    modules = {f"experiments.{p.stem}" for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__"}
    # The dispatcher runs sweeps by name; cleanup ends runs and their sweeps' trials.
    assert modules - sources == {"experiments.command", "experiments.cleanup"}


def test_every_module_but_tracking_is_under_the_mlflow_contract():
    """A new module must be added to the MLflow contract: only experiments.tracking imports it."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    sources = set(next(c for c in conf if c["forbidden_modules"] == ["mlflow"])["source_modules"])
    top = {f"experiments.{p.stem}" for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__"}
    assert top - sources == set() and {"experiments.sweep", "resnet_blocks", "hydra_plugins"} <= sources
    assert not any(s.startswith("experiments.tracking") for s in sources)
    assert max(len((p.read_text()).splitlines()) for p in (REPO / "experiments" / "tracking").glob("*.py")) <= 300


def test_no_function_takes_more_than_six_parameters():
    # More state than that travels in a dataclass (SweepRun, RunHooks, TrialTicket, Job) or
    # named options (ResNetSpec.from_lists).
    import ast

    too_many = []
    paths = [p for package in ("experiments", "resnet_blocks", "hydra_plugins") for p in (REPO / package).rglob("*.py")]
    for path in sorted(paths):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)] + [
                    x.arg for x in (a.vararg, a.kwarg) if x is not None
                ]
                if names[:1] in (["self"], ["cls"]):
                    names = names[1:]
                if len(names) > 6:
                    too_many.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}({', '.join(names)})")
    assert not too_many, too_many


def test_lint_passes():
    """ruff with the rules the noqa comments name (pyproject.toml), and its formatting."""
    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([str(ruff), *args], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
