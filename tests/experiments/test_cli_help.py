"""``python -m experiments.run --help`` is the map of the config: groups, common keys, next steps."""

from __future__ import annotations

import subprocess
import sys

from omegaconf import OmegaConf

import experiments.config  # noqa: F401  (registers the schemas the configs extend)

from .conftest import CONF, REPO


def _help(module="experiments.run", *args) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _groups(text: str) -> dict[str, set[str]]:
    """The groups section: wrapped lines joined, ``*`` marks the chosen option."""
    section = text.split("Config groups")[1].split("\n\n")[0].splitlines()[1:]
    groups, current = {}, None
    for line in section:
        if not line.startswith("            "):
            current, line = line.split(":", 1)
            current = current.strip()
        groups.setdefault(current, set()).update(o.strip() for o in line.split(",") if o.strip())
    return groups


def _keys(text: str) -> dict[str, str]:
    section = text.split("Common keys (key=value), with their values here:")[1].split("\nExamples:")[0]
    return dict(ln.split()[0].split("=", 1) for ln in section.strip().splitlines() if not ln.startswith("   "))


def test_help_lists_every_preset_and_real_keys_with_their_values(make_cfg):
    text = _help()
    assert max(len(ln) for ln in text.splitlines()) <= 80
    groups = _groups(text)
    for group in ("model", "data", "trainer", "tracking", "sweep"):
        listed = {o.lstrip("*") for o in groups[group]}
        assert listed == {p.stem for p in (CONF / group).glob("*.yaml")}, group
    assert "*cifar_resnet20" in groups["model"] and "*digits" in groups["data"]
    # Every key the help documents exists in the composed config (the help cannot drift),
    # with the value it has there.
    keys = _keys(text)
    assert "model.block" in keys and "trainer.learning_rate" in keys
    cfg = make_cfg(fast=False)
    for key in keys:
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", key
    assert keys["model.depths"] == "[3,3,3]" and keys["trainer.epochs"] == "10" and keys["model.block"] == "regular"
    assert "python -m experiments.blocks" in text and "--cfg job" in text


def test_help_shows_the_values_of_the_command_line_it_is_given():
    text = _help("experiments.run", "model=resnet18", "trainer.epochs=3")
    keys = _keys(text)
    assert keys["model.depths"] == "[2,2,2,2]" and keys["model.widths"] == "[64,128,256,512]"
    assert keys["trainer.epochs"] == "3" and "*resnet18" in _groups(text)["model"]
    describe = _help("experiments.describe", "model=resnet50")
    assert max(len(ln) for ln in describe.splitlines()) <= 80 and "${" not in describe
    assert _keys(describe)["model.depths"] == "[3,4,6,3]" and _keys(describe)["format"] == "table"


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


def test_sweep_help_lists_every_shipped_sweep_in_80_columns():
    proc = subprocess.run([sys.executable, "-m", "experiments.command", "sweep", "--help"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = {ln.split()[0] for ln in proc.stdout.splitlines()[3:] if ln and not ln.startswith(" ")}
    assert listed == {p.stem for p in (CONF / "sweep").glob("*.yaml")}
    assert max(len(ln) for ln in proc.stdout.splitlines()) <= 80
