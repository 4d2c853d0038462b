"""Configuration errors on the command line: one line naming the key, what was received and
what is allowed (with "did you mean"), exit code 2, before any work; Hydra's text never shows."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments.cli import UserError
from experiments.config_check import check_command_line
from resnet_blocks import SpecError
from tests.experiments.conftest import REPO

CASES = [
    (["trainer.epoch=3"], "trainer.epoch: no such key in trainer (did you mean trainer.epochs?)"),
    (["+trainer.epoch=3"], "+trainer.epoch: received 'epoch'; allowed: a key of trainer, which is typed:"),
    (["++trainer.epoch=3"], "++trainer.epoch: received 'epoch'; allowed: a key of trainer, which is typed:"),
    (["+epochs=3"], "+epochs: received 'epochs'; allowed: a key of the run config, which is typed: model, data, trainer, tracking, objective (did you mean trainer.epochs?)"),
    (["model=resnet51"], "model: received 'resnet51'; allowed: one of cifar_resnet110,"),
    (["data=digitz"], "data: received 'digitz'; allowed: one of cifar10, digits, image_folder, synthetic (did you mean digits?)"),
    (["+sweep=quik"], "sweep: received 'quik'; allowed: one of blocks, depth_width_stride, multiobjective, quick (did you mean quick?)"),
    (["trainer.epochs=abc"], "trainer.epochs: received 'abc'; allowed: an integer"),
    (["trainer.learning_rate=fast"], "trainer.learning_rate: received 'fast'; allowed: a number"),
    (["nonsense=1"], "nonsense: no such key in the run config"),
    (["model.depths=abc"], "model.depths: received 'abc'; allowed: a list, e.g. [1,2,2]"),
    (["trainer.nesterov=maybe"], "trainer.nesterov: received 'maybe'; allowed: true or false"),
    (["~trainer.epochs"], "~trainer.epochs: a key of a typed group cannot be deleted"),
    (["model.depth=choice("], "model.depth: cannot parse the override 'model.depth=choice(': no viable alternative"),
    (["+sweep=quick", "model.widht=3"], "model.widht: no such key in model (did you mean model.width"),
    (["+sweep=quick", "hydra.sweeper.n_trial=3"], "hydra.sweeper.n_trial: no such key in hydra.sweeper (did you mean hydra.sweeper.n_trials?)"),
    (["+sweep=quick", "hydra.sweeper.n_trials=abc"], "hydra.sweeper.n_trials: received 'abc'; allowed: an integer"),
    (["+sweep=quick", "hydra/sweeper=resnet_block"], "hydra.sweeper: received 'resnet_block'; allowed: one of basic, resnet_blocks (did you mean resnet_blocks?)"),
    (["+sweep=quick", "+hydra.sweeper.n_trial=3"], "+hydra.sweeper.n_trial: received 'n_trial'; allowed: a key of hydra.sweeper, which is typed:"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_config_errors_are_one_line_naming_the_key(argv, message):
    with pytest.raises((UserError, SpecError)) as raised:  # (both: one line, exit 2)
        check_command_line(argv)
    text = str(raised.value)
    assert text.startswith(message) and "\n" not in text, text


@pytest.mark.parametrize(
    "argv",
    [
        ["trainer.epochs=3", "model=cifar_resnet32"],
        ["+sweep=quick", "model.depths=choice([1,1,1],[2,2,2])", "hydra.sweeper.n_trials=3"],
        ["+tracking.tags.team=vision", "+model.block_args.se_ratio=0.25"],  # open dicts take new keys
        ["++trainer.epochs=3", "++tracking.tags.team=vision"],  # ++ sets a key that exists, or adds to an open dict
        ["--help"],
        ["trainer.epoch=3", "--config-name", "other"],  # a custom config: Hydra's to check
        ["--cfg", "job", "trainer.epochs=2"],
        ["-m", "trainer.learning_rate=0.1,0.2"],
        ["+sweep=quick", "hydra.sweeper.storage=sqlite:///o.db", "hydra/launcher=joblib", "hydra.run.dir=o"],
    ],
)
def test_valid_command_lines_pass(argv):
    check_command_line(argv)


def test_a_misspelt_key_exits_2_with_one_line_and_no_run(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "trainer.epoch=3", f"hydra.run.dir={tmp_path}/o"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: trainer.epoch: no such key in trainer (did you mean trainer.epochs?)"
    ]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "o").exists()


def test_configs_on_hydras_searchpath_are_found():
    searchpath = f"hydra.searchpath=[file://{REPO / 'tests' / 'conf'}]"
    check_command_line(["+sweep=t_pruning", searchpath])
    with pytest.raises(UserError) as raised:
        check_command_line(["+sweep=t_prunning", searchpath])
    assert "(did you mean t_pruning?)" in str(raised.value)


def test_a_refused_value_exits_2_before_hydra_makes_the_runs_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "model.strides=[1,3,2]"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: model.strides[1]: received 3; allowed: 1 or 2"]
    assert list(tmp_path.iterdir()) == []  # no outputs/<date>/<time>/, no store
