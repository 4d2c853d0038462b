"""Training throughput of our models against plain Keras, and against the machine's peak.

Pairs, measured alternately in one process on synthetic data (same input, batch, classes,
loss and SGD with momentum on both sides). Each side is what its users get: ours builds batch
norm with ``FusedBatchNormalization`` and trains with ``FusedSGD`` (``--keras-norm`` and
``--keras-optimizer`` switch ours to Keras's layer and optimizer, to see what each adds):

- ``resnet50``: our ResNet-50 v2 (pre-activation bottlenecks, projection shortcuts, ImageNet
  stem, final BN-ReLU) with ``stride_position='last'``, which is exactly
  ``keras.applications.ResNet50V2``'s network (same MACs; Keras adds conv biases), against
  ``keras.applications.ResNet50V2``, 224x224x3, 1000 classes; ``--stride-first`` measures our
  default stride placement instead (15% more MACs);
- ``resnet20``: our CIFAR ResNet-20 (post-activation basic blocks, projection shortcuts) vs a
  hand-written Keras ResNet-20 of the same architecture, 32x32x3, 10 classes.

Also measures the float32 matmul peak of this machine and reports each model's achieved
training FLOP/s (3 x 2 x MACs per image x images/s: forward plus backward) as a fraction of it.

    python benchmarks/throughput.py --models resnet20 resnet50 --json throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import experiments  # noqa: F401  (quiet TensorFlow import)
from resnet_blocks import FusedSGD, ResNetSpec, build_resnet, model_cost


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 FLOP/s of an n x n matmul chain (a practical peak for this machine)."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def chain(a, b):
        x = a
        for _ in range(8):
            x = tf.matmul(x, b) * 1e-3
        return x

    chain(a, b).numpy()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        chain(a, b).numpy()
        best = max(best, 8 * 2 * n**3 / (time.perf_counter() - t0))
    return best


def handwritten_resnet20(input_shape=(32, 32, 3), classes=10) -> keras.Model:
    """A plain Keras ResNet-20 (He et al. 2015) with projection shortcuts, written by hand."""
    layers = keras.layers

    def block(x, filters, stride):
        shortcut = x
        y = layers.ZeroPadding2D(1)(x) if stride > 1 else x
        y = layers.Conv2D(filters, 3, strides=stride, padding="valid" if stride > 1 else "same", use_bias=False)(y)
        y = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(y)
        y = layers.Activation("relu")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(y)
        if stride > 1 or x.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
            shortcut = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(shortcut)
        return layers.Activation("relu")(layers.Add()([shortcut, y]))

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.Activation("relu")(layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            x = block(x, filters, stride if i == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(classes)(x)
    return keras.Model(inputs, layers.Activation("softmax", dtype="float32")(x))


def pair(name: str, stride_first: bool = False, fused_norm: bool = True):
    if name == "resnet50":
        placement = dict(strides=[1, 2, 2, 2]) if stride_first else dict(strides=[2, 2, 2, 1], stride_position="last")
        spec = ResNetSpec.from_lists(block="bottleneck", depths=[3, 4, 6, 3], widths=[64, 128, 256, 512],
                                     shortcut="projection", stem="imagenet", stem_width=64,
                                     num_classes=1000, input_shape=(224, 224, 3), fused_norm=fused_norm,
                                     **placement)  # fmt: skip
        theirs = keras.applications.ResNet50V2(weights=None, input_shape=(224, 224, 3), classes=1000)
        return build_resnet(spec), theirs, (224, 224, 3), 1000
    spec = ResNetSpec.from_lists(block="regular_v1", depths=[3, 3, 3], widths=[16, 32, 64], strides=[1, 2, 2],
                                 shortcut="projection", stem="cifar", stem_width=16, num_classes=10,
                                 input_shape=(32, 32, 3), fused_norm=fused_norm)  # fmt: skip
    return build_resnet(spec), handwritten_resnet20(), (32, 32, 3), 10


class _StepClock(keras.callbacks.Callback):
    """Wall-clock time at the end of every training batch."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def images_per_s(model, x, y, steps: int) -> float:
    """Steady-state training images/s over ``steps`` train steps after a warm-up (traced) step.

    Timed from the first to the last batch end inside one ``fit``, so ``fit``'s own set-up and
    tear-down (iterator creation, callbacks, a variable stretch of up to a few seconds on this
    shared machine) do not count: what is left is the train steps alone.
    """
    ds = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)  # trace + warm up
    clock = _StepClock()
    model.fit(ds, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    return steps * x.shape[0] / (clock.times[-1] - clock.times[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet50"], choices=["resnet20", "resnet50"])
    p.add_argument("--batch", type=int, nargs="+", default=None, help="batch size per model (default 128 / 32)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default 30 / 6)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, theirs)")
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--jit", action="store_true", help="XLA (jit_compile=True)")
    p.add_argument("--stride-first", action="store_true", help="resnet50: our default stride placement")
    p.add_argument(
        "--keras-norm",
        action="store_true",
        help="ours with keras.layers.BatchNormalization (model.fused_norm=false) instead of the fused kernel",
    )
    p.add_argument("--keras-optimizer", action="store_true", help="ours with keras.optimizers.SGD instead of FusedSGD")
    p.add_argument("--intra-op", type=int, default=0, help="TensorFlow intra-op threads (0: TensorFlow's default)")
    p.add_argument("--inter-op", type=int, default=0, help="TensorFlow inter-op threads (0: TensorFlow's default)")
    p.add_argument("--json")
    args = p.parse_args()
    # Thread pools are fixed at TensorFlow's first op: set them before anything runs.
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    keras.mixed_precision.set_global_policy(args.precision)
    peak = matmul_peak()
    print(f"float32 matmul peak: {peak / 1e9:.1f} GFLOP/s   (precision {args.precision}, jit {args.jit}, "
          f"our batch norm {'keras' if args.keras_norm else 'fused'}, our SGD {'keras' if args.keras_optimizer else 'fused'}, "
          f"threads intra {args.intra_op or 'default'} inter {args.inter_op or 'default'})")  # fmt: skip
    results = []
    for i, name in enumerate(args.models):
        batch = args.batch[i] if args.batch else (128 if name == "resnet20" else 32)
        steps = args.steps or (30 if name == "resnet20" else 6)
        ours, theirs, shape, classes = pair(name, args.stride_first, fused_norm=not args.keras_norm)
        macs = model_cost(ours).macs
        theirs_macs = model_cost(theirs).macs
        rng = np.random.default_rng(0)
        x = tf.constant(rng.random((batch, *shape), dtype=np.float32))
        y = tf.constant(rng.integers(0, classes, batch))
        # Ours trains with the trainer's optimizer (FusedSGD: Keras's SGD, fused updates), theirs with Keras's.
        our_sgd = keras.optimizers.SGD if args.keras_optimizer else FusedSGD
        for m, sgd in ((ours, our_sgd), (theirs, keras.optimizers.SGD)):
            m.compile(optimizer=sgd(0.01, momentum=0.9), loss="sparse_categorical_crossentropy", jit_compile=args.jit)
        a, b = [], []
        for _ in range(args.rounds):
            a.append(images_per_s(ours, x, y, steps))
            b.append(images_per_s(theirs, x, y, steps))
        ips_a, ips_b = statistics.median(a), statistics.median(b)
        util = 6 * macs * ips_a / peak
        row = {"model": name, "batch": batch, "ours_images_per_s": ips_a, "keras_images_per_s": ips_b, "ratio": ips_a / ips_b,
               "ours_macs": macs, "keras_macs": theirs_macs, "utilisation": util,
               "keras_utilisation": 6 * theirs_macs * ips_b / peak}  # fmt: skip
        results.append(row)
        print(f"{name:<9} batch {batch:>3}: ours {ips_a:8.1f} img/s, keras {ips_b:8.1f} img/s, ratio {ips_a / ips_b:.3f}; "
              f"utilisation ours {util:.2f}, keras {row['keras_utilisation']:.2f} of the matmul peak")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_flops": peak, "args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
