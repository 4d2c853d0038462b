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


def _section(text: str, title: str) -> list[str]:
    """The lines of the section whose heading starts with ``title``, up to the blank line."""
    return text.split("\n" + title, 1)[1].split("\n\n")[0].splitlines()[1:]


def _command_help(*args) -> str:
    """``resnet-blocks ARGS --help``, as the console script runs it."""
    return _help("experiments.command", *args)


def test_each_shipped_sweep_has_its_own_help_with_its_space_and_settings():
    from tests.parallel import run_together

    names = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
    calls = [{"args": [sys.executable, "-m", "experiments.command", "sweep", name, "--help"], "cwd": REPO}
             for name in names]  # fmt: skip
    for name, proc in zip(names, run_together(calls)):
        assert proc.returncode == 0, proc.stderr
        text, sweeper = proc.stdout, OmegaConf.load(CONF / "sweep" / f"{name}.yaml").hydra.sweeper
        assert max(len(ln) for ln in text.splitlines()) <= 80, name
        assert "${" not in text and "Common keys" not in text, name  # not run's help
        assert text.startswith(f"usage: resnet-blocks sweep {name} "), name
        searched = {ln.split()[0] for ln in _section(text, "Searches") if not ln.startswith("   ")}
        assert set(sweeper.params) <= searched, name
        if sweeper.get("custom_search_space"):
            assert f"custom_search_space     {sweeper.custom_search_space.name}(" in text, name
        settings = _section(text, "Sweeper settings (hydra.sweeper.KEY=value)")
        values = dict(ln.split()[0].split("=", 1) for ln in settings if not ln.startswith("   "))
        assert values["n_trials"] == str(sweeper.n_trials), name
        assert f"  trials       {sweeper.n_trials}, trainer.epochs=" in text, name
        assert {"storage", "n_jobs", "baselines", "constraints.max_macs", "checkpoints", "devices"} <= set(values)
        assert f"  sampler      {sweeper.sampler.name}" in text and f"  pruner       {sweeper.pruner.name}" in text
        assert f"resnet-blocks finalize --study {sweeper.study_name}" in text, name
        assert "sweep:" not in _groups(text), name  # the sweep is chosen: its group is not offered


def test_sweep_help_shows_this_command_lines_space_and_values(make_cfg):
    text = _help(
        "experiments.run", "+sweep=quick", "model.block=choice(regular,bottleneck)", "trainer.learning_rate=0.1",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.storage=sqlite:///elsewhere.db", "trainer.epochs=2",
    )  # fmt: skip
    assert text.startswith("usage: python -m experiments.run +sweep=quick ")
    space = {ln.split()[0]: ln.split(None, 1)[1] for ln in _section(text, "Searches") if not ln.startswith("   ")}
    # A command-line sweep joins the space; a plain key=value fixes the key (as the sweeper does).
    assert space["model.block"] == "choice(regular, bottleneck)" and "trainer.learning_rate" not in space
    assert space["model.depths"] == "choice([1,1,1], [2,2,2], [3,3,3])"
    assert "  trials       3, trainer.epochs=2 each" in text
    said = " ".join(text.split())  # the command is wrapped where it is longer than a line
    assert "python -m experiments.sweep.finalize --study quick --storage sqlite:///elsewhere.db" in said
    # Every sweeper setting the help documents exists under hydra.sweeper.
    from experiments.help import SWEEPER, _compose

    cfg, _ = _compose("config", ["+sweep=quick"])
    for line in _section(text, "Sweeper settings"):
        if not line.startswith("   "):
            key = line.split()[0].split("=", 1)[0]
            assert OmegaConf.select(cfg, SWEEPER + key, default="<missing>") != "<missing>", key


def test_usage_names_the_command_the_user_typed():
    assert _help().startswith("usage: python -m experiments.run [")
    run = _command_help("run", "model=resnet18")
    assert run.startswith("usage: resnet-blocks run [") and "python -m" not in run.split("\nMore:")[0]
    assert "  resnet-blocks sweep quick " in run and "resnet-blocks describe model=NAME" in run
    assert _command_help("describe").startswith("usage: resnet-blocks describe [")
    assert _help("experiments.describe").startswith("usage: python -m experiments.describe [")


def test_each_command_lists_only_the_groups_it_uses():
    assert set(_groups(_help("experiments.describe"))) == {"model", "data"}
    assert set(_groups(_help())) == {"model", "data", "trainer", "tracking", "sweep"}
