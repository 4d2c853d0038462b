"""``python -m experiments.run --help`` is the map of the config: groups, common keys, next steps."""

from __future__ import annotations

import subprocess
import sys

from omegaconf import OmegaConf

import experiments.config  # noqa: F401  (registers the schemas the configs extend)

from .conftest import CONF, REPO


def _help() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_lists_every_preset_and_real_keys(make_cfg):
    text = _help()
    for group in ("model", "data", "trainer", "tracking", "sweep"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{group}: "))
        listed = set(line.split(": ", 1)[1].split(", "))
        assert listed == {p.stem for p in (CONF / group).glob("*.yaml")}, group
    # Every key the help documents exists in the composed config (the help cannot drift).
    section = text.split("== Common keys (key=value) ==")[1].split("== Examples ==")[0]
    keys = [ln.split()[0] for ln in section.strip().splitlines()]
    assert "model.block" in keys and "trainer.learning_rate" in keys
    cfg = make_cfg()
    for key in keys:
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", key
    assert "python -m experiments.blocks" in text and "--cfg job" in text


def test_unknown_preset_lists_the_available_ones_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "model=resnet99"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: model: received 'resnet99'; allowed: one of cifar_resnet110, cifar_resnet20")
    listed = line.split("one of ", 1)[1].split(" (did you mean")[0].split(", ")
    assert {"resnet50", "cifar_resnet20", "wrn"} <= set(listed)
    assert "(did you mean resnet50" in line
