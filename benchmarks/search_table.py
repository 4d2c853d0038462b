"""A tabular benchmark of our search space (the NAS-Bench / HPOBench method): train every
configuration of a discrete space once per seed, record its learning curves, and let search
strategies be replayed against the table (``benchmarks/replay.py``) at almost no cost.

Every configuration trains with the shipped trainer (SGD, cosine schedule) on a fixed subset
of the CIFAR-10 training images in ``../shared/data``, resized to 16 x 16 pixels (as
NAS-Bench-201 does with ImageNet16: a quarter of the compute, the same space): a stratified test part held out first
(``data.test_split``), then ``--samples`` images split into training and validation.
Each run appends its rows (one per epoch) to ``--out`` in one write, so an interruption loses
at most the run in progress; a rerun skips the runs already in the table.

    taskset -c 1 python benchmarks/search_table.py --threads 1 --out benchmarks/results/search_table.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"

# The space: the shipped ``blocks`` sweep's architecture choices, cut to what 2 cores can
# train in a couple of hours (see BENCHMARKS.md, "A tabular benchmark of the search space").
SPACE = {
    "model.block": ["regular", "regular_v1", "bottleneck"],
    "model.depths": [[1, 1, 1], [2, 2, 2], [1, 2, 3]],
    "model.widths": [[16, 32, 64], [32, 64, 128]],
    "model.strides": [[1, 2, 2], [1, 1, 2], [2, 2, 2]],
}
KEYS = list(SPACE)
RUN_COLUMNS = ["block", "depths", "widths", "strides", "seed"]
EPOCH_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_s"]
RESULT_COLUMNS = ["test_loss", "test_accuracy", "params", "macs", "status"]
COLUMNS = RUN_COLUMNS + EPOCH_COLUMNS + RESULT_COLUMNS


def label(value) -> str:
    """A table cell for a config value: lists as ``1-2-2``."""
    return "-".join(map(str, value)) if isinstance(value, list) else str(value)


def configurations() -> list[dict]:
    return [dict(zip(KEYS, values)) for values in itertools.product(*(SPACE[k] for k in KEYS))]


def done_runs(path: Path, epochs: int) -> set[tuple[str, ...]]:
    """Runs already complete in the table (all their epoch rows, or a recorded failure)."""
    if not path.exists():
        return set()
    counts: dict[tuple[str, ...], int] = {}
    failed = set()
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            key = tuple(row[c] for c in RUN_COLUMNS)
            counts[key] = counts.get(key, 0) + 1
            if row["status"] != "ok":
                failed.add(key)
    return {k for k, n in counts.items() if n >= epochs} | failed


class EpochClock:
    """Wall seconds of each epoch (training and validation), as a Keras callback."""

    def __new__(cls):
        import keras

        class _Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t0)

        return _Clock()


def compose(args, config: dict, seed: int):
    from experiments.overrides import CONF_DIR, config_composer, format_override

    overrides = [
        "data=image_folder", f"data.path={args.data}", f"data.cache_dir={args.cache_dir}",
        f"data.max_samples={args.samples}", f"data.test_split={args.test_split}",
        f"data.validation_split={args.validation_split}", f"data.image_size=[{args.image_size},{args.image_size}]",
        f"trainer.epochs={args.epochs}", f"trainer.seed={seed}", "trainer.verbose=0",
        "trainer.evaluate_test=true", "model.shortcut=projection", "model.stem_width=16",
        "tracking.log_model=false",
        *(format_override(k, v) for k, v in config.items()),
    ]  # fmt: skip
    return config_composer(str(CONF_DIR))(overrides)


def train_one(args, config: dict, seed: int, data_cache: dict) -> list[dict]:
    from experiments.cli import RunFailure
    from experiments.run import plan_run, seeded_data
    from experiments.train import train

    cfg = compose(args, config, seed)
    spec = plan_run(cfg, build=False).spec
    if seed not in data_cache:
        data_cache.clear()  # one seed's pipelines at a time
        data_cache[seed] = seeded_data(cfg)
    clock = EpochClock()
    base = {"block": config["model.block"], "depths": label(config["model.depths"]),
            "widths": label(config["model.widths"]), "strides": label(config["model.strides"]), "seed": seed}  # fmt: skip
    try:
        result = train(cfg, spec, data_cache[seed], callbacks=[clock])
    except RunFailure as err:  # diverged: recorded, so a rerun does not train it again
        print(f"  failed: {err}", file=sys.stderr)
        return [{**base, "epoch": 0, "status": f"failed: {type(err).__name__}"}]
    h = result.history
    rows = []
    for i in range(result.epochs_run):
        rows.append({
            **base, "epoch": i + 1,
            "train_loss": h["train/loss"][i], "train_accuracy": h["train/accuracy"][i],
            "val_loss": h["val/loss"][i], "val_accuracy": h["val/accuracy"][i], "epoch_s": clock.seconds[i],
            "test_loss": result.test.get("test/loss"), "test_accuracy": result.test.get("test/accuracy"),
            "params": result.cost.params, "macs": result.cost.macs, "status": "ok",
        })  # fmt: skip
    return rows


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append one run's rows in a single write (a crash cannot leave half a run)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    new = not path.exists() or path.stat().st_size == 0
    if new:
        writer.writeheader()
    writer.writerows(rows)
    with path.open("a", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def machine() -> dict:
    import keras
    import tensorflow as tf

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "resnet_blocks"))
    p.add_argument("--image-size", type=int, default=16, help="images resized to this square size")
    p.add_argument("--samples", type=int, default=3200, help="training + validation images")
    p.add_argument("--validation-split", type=float, default=0.25)
    p.add_argument("--test-split", type=float, default=0.04, help="held-out test part of all 50,000 images")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=0, help="TensorFlow intra- and inter-op threads (0: default)")
    p.add_argument("--limit", type=int, default=None, help="train at most this many runs (timing)")
    p.add_argument("--shard", default="0/1", help="I/N: train only runs I, I+N, ... (N processes, one core each)")
    p.add_argument("--reverse", action="store_true", help="from the last run backwards (a second process's tail)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search_table.csv")
    args = p.parse_args(argv)
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join(["python", "benchmarks/search_table.py", *(argv or sys.argv[1:])]),
            "machine": machine(), "space": SPACE, "image_size": args.image_size, "samples": args.samples, "validation_split": args.validation_split,
            "test_split": args.test_split, "epochs": args.epochs, "seeds": args.seeds, "threads": args.threads,
            "fixed": {"model.shortcut": "projection", "model.stem_width": 16, "trainer": "conf/trainer/default.yaml"}}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    done = done_runs(args.out, args.epochs)
    shard, shards = (int(v) for v in args.shard.split("/"))
    todo = [(seed, c) for seed in args.seeds for c in configurations()]
    data_cache: dict = {}
    trained = 0
    order = list(enumerate(todo))
    for i, (seed, config) in reversed(order) if args.reverse else order:
        key = (config["model.block"], *(label(config[k]) for k in KEYS[1:]), str(seed))
        done = done_runs(args.out, args.epochs)  # (again: another process may have trained it)
        if key in done or i % shards != shard:
            continue
        if args.limit is not None and trained >= args.limit:
            break
        t0 = time.perf_counter()
        rows = train_one(args, config, seed, data_cache)
        append_rows(args.out, rows)
        trained += 1
        last = rows[-1]
        print(f"[{i + 1}/{len(todo)}] {' '.join(key)}: val {last.get('val_accuracy')} "
              f"test {last.get('test_accuracy')} in {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
