"""How long commands that never train take, against importing TensorFlow, in one run.

Alternating rounds (so a loaded machine slows every command alike): ``python -c "import
tensorflow"``, ``resnet-blocks --help``, a refused override (``trainer.epoch=3``), an unknown
preset (``model=resnet51``), a refused value (``model.strides=[1,3,2]``), ``--cfg job``, a
sweep's help and a sweep refused for a value in its search space (every value is composed).
Prints min and median wall seconds per command and its median as a share of TensorFlow's
import (goal: at most 20%).

    python benchmarks/instant_commands.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {
    "import tensorflow": ["-c", "import tensorflow"],
    "resnet-blocks --help": ["-m", "experiments.command", "--help"],
    "run trainer.epoch=3 (misspelt key)": ["-m", "experiments.run", "trainer.epoch=3"],
    "run model=resnet51 (unknown preset)": ["-m", "experiments.run", "model=resnet51"],
    "run model.strides=[1,3,2] (refused value)": ["-m", "experiments.run", "model.strides=[1,3,2]"],
    "run --cfg job": ["-m", "experiments.run", "--cfg", "job"],
    "sweep blocks --help": ["-m", "experiments.command", "sweep", "blocks", "--help"],
    "sweep quick, a refused searched value": [
        "-m",
        "experiments.run",
        "+sweep=quick",
        "model=choice(cifar_resnet20,cifar_resnet3)",
    ],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", help="write the timings here")
    args = p.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as cwd:
        env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/m.db"}
        for _ in range(args.rounds):
            for name, cmd in COMMANDS.items():
                t0 = time.perf_counter()
                subprocess.run([sys.executable, *cmd], cwd=cwd, env=env, capture_output=True)
                times[name].append(time.perf_counter() - t0)
    tf = statistics.median(times["import tensorflow"])
    print(f"{'command':<44} {'min s':>7} {'median s':>9} {'vs TF import':>13}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<44} {min(ts):>7.2f} {med:>9.2f} {med / tf:>12.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(times, indent=2))


if __name__ == "__main__":
    main()
