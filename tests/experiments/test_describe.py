"""``experiments.describe``: every preset in-process, the command line for a few cases."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.describe import describe
from resnet_blocks import SpecError

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted(p.stem for p in (REPO_ROOT / "conf" / "model").glob("*.yaml"))
IMAGENET_PRESETS = [p for p in PRESETS if p.startswith("resnet")]
KEYS = {"model", "input_shape", "num_classes", "trainable_params", "non_trainable_params", "macs", "stages",
        "activations"}  # fmt: skip


def preset_overrides(preset: str) -> list[str]:
    # ImageNet presets need ImageNet-sized input; the rest get CIFAR-10's signature (describe reads
    # only its shape and classes, it loads nothing). The same overrides as test_cost's pins, so
    # the session cache builds each preset once; the default data (digits) is covered below.
    return [f"model={preset}", "data=synthetic" if preset in IMAGENET_PRESETS else "data=cifar10"]


def compose_describe(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("describe", overrides=list(overrides))


def test_presets_discovered():
    assert len(PRESETS) >= 13
    assert {"cifar_resnet20", "resnet18", "resnet50", "resnet200", "wrn", "preact_resnet164"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_describes(preset, describe_overrides):
    result = describe_overrides(*preset_overrides(preset))
    assert set(result) == KEYS
    assert result["model"] == preset
    if preset in IMAGENET_PRESETS:
        assert (result["input_shape"], result["num_classes"]) == ([224, 224, 3], 1000)
    else:
        assert (result["input_shape"], result["num_classes"]) == ([32, 32, 3], 10)
    assert result["trainable_params"] > 0 and result["non_trainable_params"] > 0 and result["macs"] > 0
    names = [s["name"] for s in result["stages"]]
    assert names[0] == "stem" and names[-1] == "head"
    assert names[1:-1] == [f"stage{i}" for i in range(1, len(names) - 1)]
    for row in result["stages"]:
        assert set(row) == {"name", "output_shape", "params", "macs"}
        assert isinstance(row["output_shape"], list)
    assert result["stages"][-1]["output_shape"] == [result["num_classes"]]
    assert json.loads(json.dumps(result)) == result  # what format=json prints


@pytest.mark.parametrize("preset", IMAGENET_PRESETS)
def test_imagenet_preset_on_tiny_default_data_is_a_clear_error(preset):
    # digits is 8x8: after the 4x stem only one stride-2 stage fits.
    with pytest.raises(SpecError) as info:
        describe(compose_describe(f"model={preset}"))
    assert info.value.field == "model.strides[2]"
    assert "1x1" in info.value.allowed


def test_default_config_uses_digits(describe_overrides):
    result = describe_overrides()
    assert (result["model"], result["input_shape"], result["num_classes"]) == ("cifar_resnet20", [8, 8, 1], 10)
    assert [s["output_shape"] for s in result["stages"]] == [[8, 8, 16], [8, 8, 16], [4, 4, 32], [2, 2, 64], [10]]


def test_cifar_depth_override_changes_the_stage_depths(describe_overrides):
    r32 = describe_overrides("model=cifar_resnet20", "model.depth=32", "data=cifar10")
    preset = describe_overrides(*preset_overrides("cifar_resnet32"))
    assert (r32["trainable_params"], r32["macs"]) == (preset["trainable_params"], preset["macs"])
    assert r32["model"] == "cifar_resnet20"


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        (["model.depths=[0,1,1]"], "model.depths[0]", "an integer >= 1"),
        (["model=wrn", "model.depth=27"], "model.depth", "10, 16, 22, 28"),
        (["model=cifar_resnet20", "model.depth=21"], "model.depth", "8, 14, 20, 26"),
        (["model=preact_resnet164", "model.depth=100"], "model.depth", "11, 20, 29, 38"),
        (["model.strides=[1,2,3]"], "model.strides[2]", "1 or 2"),
        (["model.block=resnext"], "model.block", "a registered block"),
        (["model.shortcut=conv"], "model.shortcut", "'projection'"),
        (["model.width_multiplier=0"], "model.width_multiplier", "a number > 0"),
        (["format=xml"], "format", "'table' or 'json'"),
    ],
    ids=["depth0", "wrn-depth", "cifar-depth", "bottleneck-depth", "stride3", "block", "shortcut", "wm", "format"],
)
def test_bad_overrides_raise_spec_error(overrides, field, allowed):
    with pytest.raises(SpecError) as info:
        describe(compose_describe(*overrides))
    assert info.value.field == field
    assert allowed in info.value.allowed


# -- the command line (a fresh interpreter each: keep these few) ----------------------------
def test_cli_default_table(run_python):
    proc = run_python("-m", "experiments.describe")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("cifar_resnet20: input 8x8x1, 10 classes")
    for word in ("group", "stem", "stage1", "stage2", "stage3", "head", "trainable params:", "MACs (batch 1):"):
        assert word in out
    assert "Traceback" not in proc.stderr


def test_cli_json_resnet50_published_form(run_python):
    proc = run_python(
        "-m",
        "experiments.describe",
        "model=resnet50",
        "model.block=bottleneck_v1",
        "model.shortcut=projection",
        "model.num_classes=1000",
        "model.input_shape=[224,224,3]",
        "format=json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert set(result) == KEYS
    assert result["model"] == "resnet50"
    assert result["trainable_params"] == 25_557_032
    assert result["macs"] == pytest.approx(4.09e9, rel=0.01)
    assert [s["output_shape"] for s in result["stages"]][1:5] == [
        [56, 56, 256],
        [28, 28, 512],
        [14, 14, 1024],
        [7, 7, 2048],
    ]


@pytest.mark.parametrize(
    ("overrides", "prefix"),
    # One case only (each is a fresh interpreter); the in-process table above covers the rest.
    [(["model=wrn", "model.depth=27"], "error: model.depth: received 27; allowed: 10, 16, 22, 28, ")],
    ids=["wrn-depth"],
)
def test_cli_bad_override_is_one_line_without_traceback(run_python, overrides, prefix):
    proc = run_python("-m", "experiments.describe", *overrides)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(prefix)
