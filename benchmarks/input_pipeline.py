"""Input-pipeline images/s of each data source against the training images/s it has to feed.

For each case the real config is composed from ``conf/`` (Hydra compose API, model
``cifar_resnet20``: the default model, also the CIFAR ResNet-20 for the 32x32 sources) and the
real pipelines are built by ``experiments.data.load_data``. Then, in one process:

- pipeline only: the training dataset is iterated for one cold epoch (decoding, filling the
  cache) and ``--epochs`` warm epochs; images/s of each is reported;
- training: ``experiments.train.train`` fits the model on the same pipeline for
  ``--train-epochs`` epochs and reports steady-state training images/s (epochs after the first,
  validation excluded), as every run logs it (``perf/train_images_per_s``);
- training on one in-memory batch repeated (same steps and model): what training consumes when
  no pipeline work runs beside it; the gap to the previous figure is the pipeline's cost.

Ratio = pipeline img/s / training img/s (target >= 5: the pipeline never limits training).

    python benchmarks/input_pipeline.py --json input_pipeline.json
    python benchmarks/input_pipeline.py --cases folder_aug --batch 512 --precision mixed_float16 --jit
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import experiments  # noqa: F401  (quiet TensorFlow import)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"

# Per-case overrides of conf/config.yaml; {data}, {samples} and {train} are filled from the flags.
CASES = {
    "digits": ["data=digits"],
    "folder": ["data=image_folder", "data.path={data}", "data.max_samples={samples}", "data.augment=false"],
    "folder_aug": ["data=image_folder", "data.path={data}", "data.max_samples={samples}", "data.augment=true"],
    "synthetic": ["data=synthetic", "data.image_size=[32,32]", "data.num_classes=10", "data.num_samples={train}"],
    "cifar10": ["data=cifar10", "data.max_samples={samples}"],  # needs the Keras download or its cache
}
DEFAULT_CASES = ["digits", "folder", "folder_aug", "synthetic"]


def compose_config(case: str, args):
    from hydra import compose, initialize_config_dir

    import experiments.config  # noqa: F401  (registers the schemas conf/config.yaml builds on)

    fill = {"data": args.data, "samples": args.samples, "train": int(args.samples * 0.9)}
    overrides = [o.format(**fill) for o in CASES[case]] + [
        "model=cifar_resnet20",
        f"trainer.batch_size={args.batch}",
        f"trainer.epochs={args.train_epochs}",
        f"trainer.mixed_precision={args.precision}",
        f"trainer.jit_compile={str(args.jit).lower()}",
        "trainer.verbose=0",
        "tracking.enabled=false",
        *([f"data.cache_dir={args.cache_dir}"] if args.cache_dir else []),
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def pipeline_epochs(ds, epochs: int) -> tuple[int, list[float]]:
    """Images per epoch and the seconds of each of ``1 + epochs`` full passes over ``ds``."""
    times, images = [], 0
    for _ in range(1 + epochs):
        t0, images = time.perf_counter(), 0
        for _, y in ds:
            images += y.shape[0]
        times.append(time.perf_counter() - t0)
    return images, times


def in_memory(data, batch_size: int):
    """The same splits, with training on one real batch repeated for as many steps as an epoch."""
    import tensorflow as tf

    x, y = next(iter(data.train))
    x, y = x[:batch_size], y[:batch_size]
    steps = math.ceil(data.num_train / batch_size)
    train = tf.data.Dataset.from_tensors((x, y)).repeat(steps).prefetch(2)
    return dataclasses.replace(data, train=train, num_train=steps * int(y.shape[0]))


def measure(case: str, args) -> dict:
    import keras

    from experiments.data import load_data
    from experiments.run import plan_run
    from experiments.train import train

    cfg = compose_config(case, args)
    spec = plan_run(cfg, build=False).spec
    t0 = time.perf_counter()
    data = load_data(cfg.data, batch_size=cfg.trainer.batch_size)
    load_s = time.perf_counter() - t0
    images, times = pipeline_epochs(data.train, args.epochs)
    cold, warm = images / times[0], images * args.epochs / sum(times[1:])
    trained = train(cfg, spec, data).images_per_s
    keras.backend.clear_session()
    row = {"case": case, "source": data.source, "input_shape": list(data.input_shape), "augment": cfg.data.augment,
           "train_images": data.num_train, "batch": cfg.trainer.batch_size, "load_s": load_s,
           "cold_images_per_s": cold, "pipeline_images_per_s": warm, "train_images_per_s": trained,
           "ratio": warm / trained, "cold_ratio": cold / trained}  # fmt: skip
    if not args.no_in_memory:
        row["train_in_memory_images_per_s"] = train(cfg, spec, in_memory(data, cfg.trainer.batch_size)).images_per_s
        row["ratio_in_memory"] = warm / row["train_in_memory_images_per_s"]
        keras.backend.clear_session()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(CASES))
    p.add_argument("--data", default=str(DEFAULT_DATA), help="image-folder archive or directory")
    p.add_argument("--samples", type=int, default=5000, help="data.max_samples (before the validation split)")
    p.add_argument("--cache-dir", help="data.cache_dir for the extracted archive")
    p.add_argument("--batch", type=int, default=64, help="trainer.batch_size (the shipped default is 64)")
    p.add_argument("--epochs", type=int, default=3, help="warm pipeline epochs timed after the cold one")
    p.add_argument("--train-epochs", type=int, default=3, help="training epochs (the first one is not timed)")
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_float16", "mixed_bfloat16"])
    p.add_argument("--jit", action="store_true", help="XLA (trainer.jit_compile=true)")
    p.add_argument("--no-in-memory", action="store_true", help="skip training on an in-memory batch")
    p.add_argument("--json")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every case")
    args = p.parse_args()
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    print(f"{os.cpu_count()} CPUs, GPUs: {gpus or 'none'}; TensorFlow {tf.__version__}; model cifar_resnet20, "
          f"batch {args.batch}, precision {args.precision}, jit {args.jit}")  # fmt: skip
    meta = {"cpus": os.cpu_count(), "gpus": gpus, "tensorflow": tf.__version__, "batch": args.batch,
            "precision": args.precision, "jit": args.jit, "epochs": args.epochs, "train_epochs": args.train_epochs}  # fmt: skip
    rows = []
    for case in args.cases:
        rows.append(measure(case, args))
        r = rows[-1]
        print(f"  {case}: {r['train_images']} images, cold {r['cold_images_per_s']:,.0f} img/s, "
              f"warm {r['pipeline_images_per_s']:,.0f} img/s, training {r['train_images_per_s']:,.0f} img/s", flush=True)  # fmt: skip
        if args.json:  # after every case: a run cut short by a time limit keeps what it measured
            Path(args.json).write_text(json.dumps({**meta, "results": rows}, indent=2))
    head = ["case", "shape", "train imgs", "load s", "first epoch (cold) img/s", "pipeline img/s", "training img/s",
            "training img/s, in-memory batch", "ratio (target >= 5)", "cold ratio"]  # fmt: skip
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        mem = r.get("train_in_memory_images_per_s")
        cells = [r["case"] + (" (augment)" if r["augment"] else ""), "x".join(map(str, r["input_shape"])),
                 f"{r['train_images']:,}", f"{r['load_s']:.1f}", f"{r['cold_images_per_s']:,.0f}",
                 f"{r['pipeline_images_per_s']:,.0f}", f"{r['train_images_per_s']:,.0f}",
                 "-" if mem is None else f"{mem:,.0f}", f"{r['ratio']:.1f}", f"{r['cold_ratio']:.1f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    low = [r["case"] for r in rows if r["ratio"] < 5]
    print(f"\npipeline >= 5x training: {'yes, every case' if not low else 'NO: ' + ', '.join(low)}")


if __name__ == "__main__":
    main()
