"""A config is as trusted as code: what it brings in is recorded, a stray ``_target_`` refused."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from experiments.code_tags import hook_tags, plugin_tags
from tests.experiments.conftest import REPO


def test_plugin_tags_name_modules_with_their_files_and_files_with_their_digest(tmp_path, examples_importable):
    import examples.se_block

    file = tmp_path / "blocks.py"
    file.write_text("X = 1\n")
    tags = plugin_tags(["examples.se_block", str(file)])
    shown = tags["code.plugins"].split("; ")
    assert shown[0] == f"examples.se_block ({examples.se_block.__file__})"
    assert shown[1] == f"{file} (sha256 {hashlib.sha256(b'X = 1' + bytes([10])).hexdigest()})"
    assert plugin_tags([]) == {}  # (no entry points are installed here)


def test_hook_tags_name_the_search_space_and_each_callback():
    assert hook_tags("my.hooks.space", {"log": {"_target_": "my.Callback"}}) == {
        "code.search_space": "my.hooks.space",
        "code.hydra_callbacks": "log=my.Callback",
    }
    assert hook_tags({"name": "resnet_blocks_conditional", "args": {}}) == {
        "code.search_space": "registered resnet_blocks_conditional"
    }
    assert hook_tags(None, None) == {}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("++model._target_=os.system", "model._target_"),
        ("+model.block_args._target_=os.system", "model.block_args._target_"),
        ("+tracking.tags._target_=x", "tracking.tags._target_"),
        ("+extra._target_=os.system", "extra._target_"),
        ("+_target_=os.system", "_target_"),
    ],
)
def test_a_target_key_in_the_run_config_is_refused_in_one_line(override, field):
    out = subprocess.run([sys.executable, "-m", "experiments.run", override, "--cfg", "job"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {field}: received ") and "instantiates nothing" in line, line
    assert "model.plugins" in line


def test_hydras_own_targets_stay_allowed():
    out = subprocess.run([sys.executable, "-m", "experiments.run", "--cfg", "hydra",
                          "+hydra.callbacks.log_return._target_=hydra.experimental.callbacks.LogJobReturnCallback"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LogJobReturnCallback" in out.stdout


@pytest.mark.slow
def test_a_sweep_records_its_plugins_search_space_and_callbacks_on_every_run(tmp_path):
    from tests.experiments.sweep.test_sweep import mlflow_runs, sweep

    sweep(tmp_path, "hydra.sweeper.n_trials=2", "hydra.sweeper.baselines=[]", "trainer.epochs=1",
          "model.plugins=[examples.se_block]", "hydra.sweeper.custom_search_space=tests.plugins.search_hooks.learning_rate",
          "+hydra.callbacks.log_return._target_=hydra.experimental.callbacks.LogJobReturnCallback",
          "hydra.sweeper.devices=cpu")  # fmt: skip
    _, parents, children = mlflow_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 2
    for run in [*parents, *children]:
        tags = run.data.tags
        assert tags["code.plugins"] == f"examples.se_block ({REPO / 'examples' / 'se_block.py'})", tags
        assert tags["code.search_space"] == "tests.plugins.search_hooks.learning_rate"
        assert tags["code.hydra_callbacks"] == "log_return=hydra.experimental.callbacks.LogJobReturnCallback"
    assert all("trainer.learning_rate" in run.data.params for run in children)
    assert all(run.data.tags["devices"] == "cpu" for run in children)  # where each trial trained
