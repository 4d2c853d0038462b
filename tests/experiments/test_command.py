"""The ``resnet-blocks`` command: subcommands delegate to the ``python -m experiments.*`` apps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.command import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)


def test_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown command 'trian'; allowed: " + ", ".join(COMMANDS)


def test_sweep_needs_a_name(capsys):
    assert main(["sweep", "trainer.epochs=2"]) == 2
    assert "usage: resnet-blocks sweep NAME" in capsys.readouterr().out


def test_blocks_lists_the_registry(capsys):
    assert main(["blocks"]) == 0
    out = capsys.readouterr().out
    assert "bottleneck_v1" in out and "zero_pad" in out


@pytest.mark.parametrize("command", ["evaluate", "finalize", "report", "blocks"])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_installed_console_script_runs_describe():
    """The console script is installed with the package (pyproject's [project.scripts])."""
    script = shutil.which("resnet-blocks", path=str(Path(sys.executable).parent))
    assert script, "resnet-blocks is not installed next to this Python: reinstall the project (pip install -e .)"
    out = subprocess.run(
        [script, "describe", "format=json", "model.depths=[1,1,1]"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"trainable_params"' in out.stdout


def test_blocks_with_an_unknown_plugin_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["blocks", "--plugins", "no_such_module.blocks"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'no_such_module.blocks'" in err
