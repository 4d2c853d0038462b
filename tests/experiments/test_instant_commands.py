"""Commands that never train import neither TensorFlow nor Keras: help, config composition and
validation, refusals, ``--cfg``, dry runs, listing blocks, cleanup, reports. (Importing
TensorFlow alone takes seconds, 20 on a loaded 2-core machine; benchmarks/instant_commands.py
measures the commands.) And TensorFlow, once training imports it, starts without its C++
chatter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.experiments.conftest import REPO

# Runs a module as ``python -m`` would, then prints which of TensorFlow and Keras it loaded.
PROBE = """
import json, runpy, sys
module, sys.argv = sys.argv[1], sys.argv[1:]
code = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
print("PROBE" + json.dumps({"loaded": [m for m in ("tensorflow", "keras") if m in sys.modules], "code": code}))
"""

CASES = {
    "run --help": (["experiments.run", "--help"], 0),
    "a misspelt key": (["experiments.run", "trainer.epoch=3"], None),
    "a refused value": (["experiments.run", "model.strides=[1,3,2]"], 2),
    "an unknown preset": (["experiments.run", "model=resnet51"], None),
    "an unreachable tracking store": (["experiments.run", "tracking.tracking_uri=http://127.0.0.1:9"], 2),
    "--cfg job": (["experiments.run", "--cfg", "job"], 0),
    "a sweep's refused key": (["experiments.run", "+sweep=quick", "model.widht=choice(1,2)"], 2),
    "a sweep's refused searched value": (
        ["experiments.run", "+sweep=quick", "model=choice(cifar_resnet20,cifar_resnet3)"],
        2,
    ),
    "cleanup": (["experiments.cleanup"], 0),
    "report of a study that is not there": (
        ["experiments.sweep.report", "--storage", "sqlite:///none.db", "--study", "x"],
        2,
    ),
    "a sweep's dry run": (["experiments.run", "+sweep=blocks", "hydra.sweeper.dry_run=3"], 0),
    "resnet-blocks --help": (["experiments.command", "--help"], 0),
    "sweep quick --help": (["experiments.command", "sweep", "quick", "--help"], 0),
    "describe --help": (["experiments.describe", "--help"], 0),
    "blocks": (["experiments.blocks"], 0),
    "cleanup --help": (["experiments.cleanup", "--help"], 0),
    "report --help": (["experiments.sweep.report", "--help"], 0),
    "finalize --help": (["experiments.sweep.finalize", "--help"], 0),
    "evaluate --help": (["experiments.evaluate", "--help"], 0),
}


def _call(args, cwd) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    return {"args": [sys.executable, "-c", PROBE, *args], "cwd": cwd, "env": env}


def _result(proc) -> dict:
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line[len("PROBE") :])


def test_commands_that_never_train_import_no_tensorflow(tmp_path):
    from tests.parallel import run_together

    calls = []
    for i, (args, _) in enumerate(CASES.values()):
        (cwd := tmp_path / str(i)).mkdir()
        calls.append(_call(args, cwd))
    for (name, (_, code)), proc in zip(CASES.items(), run_together(calls)):
        result = _result(proc)
        assert result["loaded"] == [], f"{name}: {result['loaded']} imported\n{proc.stderr[-2000:]}"
        if code is not None:
            assert result["code"] == code, f"{name}: exit {result['code']}\n{proc.stderr[-2000:]}"
        else:
            assert result["code"] != 0, name


def test_resnet_blocks_validates_and_counts_specs_without_a_keras_backend(tmp_path):
    code = (
        "import sys, resnet_blocks as rb\n"
        "spec = rb.ResNetSpec.from_lists(block='bottleneck', depths=[2,2], widths=[16,32], strides=[1,2],"
        " num_classes=10, input_shape=(32,32,3))\n"
        "cost = rb.spec_cost(spec)\n"
        "try:\n"
        "    rb.ResNetSpec.from_lists(block='nope', depths=[1], widths=[8], strides=[1], num_classes=2,"
        " input_shape=(8,8,1))\n"
        "except rb.SpecError as e:\n"
        "    print('refused:', e)\n"
        "print(cost.macs > 0, [m for m in ('tensorflow', 'keras') if m in sys.modules])\n"
        "rb.build_resnet\n"  # a Keras name: loaded on use
        "print([m for m in ('keras',) if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("refused: block: received 'nope'")
    assert lines[1:] == ["True []", "['keras']"]


@pytest.mark.slow
def test_tensorflow_starts_quietly_once_training_imports_it(tmp_path):
    # The reason for experiments/quiet_tensorflow.py still holds: TensorFlow talks on stderr
    # before it reads TF_CPP_MIN_LOG_LEVEL. (This fails once it no longer does: drop the hook.)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    env.pop("RESNET_BLOCKS_VERBOSE_TF", None)
    bare = subprocess.run([sys.executable, "-c", "import tensorflow"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert bare.returncode == 0 and "absl::InitializeLog" in bare.stderr, bare.stderr[-2000:]
    # Through Keras, as training imports it, after the package: nothing on stderr, and the
    # hook is gone once it has served.
    quiet = subprocess.run(
        [sys.executable, "-c", "import sys, experiments, keras; print(sum(type(f).__name__ == '_QuietTensorFlow'"
         " for f in sys.meta_path), 'tensorflow' in sys.modules)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.split() == ["0", "True"] and quiet.stderr == "", quiet.stderr[-2000:]
