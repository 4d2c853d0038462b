"""Hydra imports every ``hydra_plugins`` module of the environment when any Hydra app starts:
ours must not drag TensorFlow (or the rest of the project) into other people's apps."""

from __future__ import annotations

import subprocess
import sys


def test_the_plugin_scan_imports_nothing_heavy(repo_root):
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]\n"
        "assert 'ResnetBlocksSweeper' in names, names\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'optuna', 'mlflow', 'experiments') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_the_configs_are_registered_by_the_scan(repo_root):
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.resnet_blocks_sweeper  # noqa: F401

    repo = ConfigStore.instance().repo
    assert "resnet_blocks.yaml" in repo["hydra"]["sweeper"]
    assert "resnet_blocks_process.yaml" in repo["hydra"]["launcher"]
