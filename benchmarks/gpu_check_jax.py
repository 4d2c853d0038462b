"""GPU check on Keras's JAX backend, for machines where TensorFlow cannot be installed.

Needs only JAX (with CUDA), Keras and this repository's ``resnet_blocks`` and
``experiments.devices`` (the placement the sweeper uses: standard library only; no TensorFlow,
Optuna or MLflow): the wheels to bring are Keras and its small pure dependencies. Measures, in
bfloat16 (``mixed_bfloat16``) on synthetic data, the training images/s of

- our ResNet-50 v2 with ``stride_position='last'`` (exactly ``keras.applications.ResNet50V2``'s
  network) against ``keras.applications.ResNet50V2``, 224x224x3, 1000 classes;
- our CIFAR ResNet-20, 32x32x3, 10 classes;

and each as a share of the GPU's dense bfloat16 peak (training FLOP/s = 3 x 2 x MACs x
images/s). Then a short sweep of small CIFAR ResNets sampled from a seeded space, each trial
a process of its own placed on one device by ``experiments.devices`` (as the sweeper's
``hydra.sweeper.devices=auto`` places workers: one per GPU, ``CUDA_VISIBLE_DEVICES`` set
before JAX starts); each trial reports the devices it saw and its images/s. Prints tables and
writes JSON; a full run takes under 10 minutes (``--budget-s``, default 540: the sweep starts
no trial past it and says how many it left out).

    KERAS_BACKEND=jax python benchmarks/gpu_check_jax.py --json gpu_check_jax.json
    KERAS_BACKEND=jax python benchmarks/gpu_check_jax.py --allow-cpu --quick   # a dry run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # resnet_blocks from this checkout

# Dense bfloat16 tensor-core peaks (FLOP/s) by JAX's device_kind, from the vendors' data sheets.
BF16_PEAK = {
    "NVIDIA H200": 989e12, "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100 PCIe": 756e12,
    "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100-SXM4-40GB": 312e12, "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA L4": 121e12, "NVIDIA A10G": 70e12,
}  # fmt: skip


def models(name: str):
    import keras

    from resnet_blocks import ResNetSpec, build_resnet

    if name == "resnet50":
        spec = ResNetSpec.from_lists(block="bottleneck", depths=[3, 4, 6, 3], widths=[64, 128, 256, 512],
                                     strides=[2, 2, 2, 1], stride_position="last", shortcut="projection",
                                     stem="imagenet", stem_width=64, num_classes=1000, input_shape=(224, 224, 3))  # fmt: skip
        theirs = keras.applications.ResNet50V2(weights=None, input_shape=(224, 224, 3), classes=1000)
        return build_resnet(spec), theirs, (224, 224, 3), 1000
    spec = ResNetSpec.from_lists(block="regular_v1", depths=[3, 3, 3], widths=[16, 32, 64], strides=[1, 2, 2],
                                 shortcut="projection", stem="cifar", stem_width=16, num_classes=10,
                                 input_shape=(32, 32, 3))  # fmt: skip
    return build_resnet(spec), None, (32, 32, 3), 10


def images_per_s(model, shape, classes: int, batch: int, steps: int) -> float:
    """Steady-state training images/s: ``steps`` train steps on one device-resident batch,
    after two warm-up steps (the first compiles)."""
    import jax
    import keras
    import numpy as np

    from resnet_blocks import FusedSGD

    model.compile(optimizer=FusedSGD(learning_rate=0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.random((batch, *shape), dtype="float32"))
    y = jax.device_put(rng.integers(0, classes, batch))
    for _ in range(2):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    keras.ops.convert_to_numpy(loss)  # (waits for the last step)
    return steps * batch / (time.perf_counter() - t0)


def sample_specs(n: int, seed: int = 0) -> list[dict]:
    """``n`` small CIFAR ResNets from a seeded space (depths, widths, block, shortcut)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = int(rng.choice([16, 32]))
        out.append({"block": str(rng.choice(["regular", "bottleneck"])), "depths": [int(d) for d in rng.integers(1, 4, 3)],
                    "widths": [base, 2 * base, 4 * base], "shortcut": str(rng.choice(["projection", "zero_pad"]))})  # fmt: skip
    return out


def run_trial(spec: dict, batch: int, steps: int) -> dict:
    """One sweep trial in this process: what it sees and how fast it trains (bf16)."""
    import jax
    import keras

    from resnet_blocks import ResNetSpec, build_resnet, model_cost

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    widths = spec["widths"] if spec["block"] != "bottleneck" else [w * 4 for w in spec["widths"]]
    built = build_resnet(ResNetSpec.from_lists(block=spec["block"], depths=spec["depths"], widths=widths,
                                               strides=[1, 2, 2], shortcut=spec["shortcut"], stem="cifar", stem_width=16,
                                               num_classes=10, input_shape=(32, 32, 3)))  # fmt: skip
    devices = jax.devices()
    return {"spec": spec, "devices_seen": [str(d) for d in devices], "platform": devices[0].platform,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "macs": model_cost(built).macs,
            "images_per_s": images_per_s(built, (32, 32, 3), 10, batch, steps)}  # fmt: skip


def placed_sweep(n: int, batch: int, steps: int, on_gpu: bool, deadline: float = float("inf")) -> list[dict]:
    """``n`` trials, each a process on one device slot (one slot per GPU; two CPU slots in a
    dry run), the slots working in parallel; none starts after ``deadline`` (monotonic s)."""
    from concurrent.futures import ThreadPoolExecutor

    from experiments.devices import device_slots

    slots = (device_slots("auto", 1, 1) if on_gpu else None) or ["cpu", "cpu"]
    todo = list(enumerate(sample_specs(n)))

    def work(slot: str) -> list[dict]:
        done = []
        while todo and time.monotonic() < deadline:
            number, spec = todo.pop(0)
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "" if slot == "cpu" else slot, "KERAS_BACKEND": "jax"}
            if slot == "cpu":
                env["JAX_PLATFORMS"] = "cpu"
            out = subprocess.run([sys.executable, __file__, "--trial", json.dumps(spec), "--batch", str(batch),
                                  "--steps", str(steps)], env=env, capture_output=True, text=True,
                                 timeout=max(60.0, deadline - time.monotonic() + 60))  # fmt: skip
            if out.returncode != 0:
                raise RuntimeError(f"trial {number} on slot {slot} failed: {out.stderr[-2000:]}")
            done.append({"trial": number, "slot": slot, **json.loads(out.stdout.strip().splitlines()[-1])})
        return done

    with ThreadPoolExecutor(len(slots)) as pool:  # (threads only wait on the trials' processes)
        rows = [r for part in pool.map(work, slots) for r in part]
    return sorted(rows, key=lambda r: r["trial"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--allow-cpu", action="store_true", help="run without a GPU (a dry run)")
    p.add_argument("--quick", action="store_true", help="a few small steps (dry runs)")
    p.add_argument("--json")
    p.add_argument("--sweep-trials", type=int, default=8, help="trials of the placed sweep (0: none)")
    p.add_argument("--budget-s", type=float, default=540, help="start no sweep trial after this many seconds")
    p.add_argument("--trial", help=argparse.SUPPRESS)  # (a sweep trial's process: its spec as JSON)
    p.add_argument("--batch", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=30, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    started = time.monotonic()
    if args.trial:
        print(json.dumps(run_trial(json.loads(args.trial), args.batch, args.steps)))
        return 0
    import jax
    import keras

    from resnet_blocks import model_cost

    device = jax.devices()[0]
    print(f"JAX {jax.__version__}, Keras {keras.__version__} ({keras.backend.backend()}), device {device.device_kind}")
    if device.platform != "gpu" and not args.allow_cpu:
        print("ERROR: JAX sees no GPU (install jax[cuda12] or jax[cuda13]); --allow-cpu for a dry run", file=sys.stderr)
        return 1
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    plan = {"resnet50": (8, 2), "resnet20": (32, 2)} if args.quick else {"resnet50": (256, 30), "resnet20": (1024, 50)}
    peak = BF16_PEAK.get(device.device_kind)
    results = []
    for name, (batch, steps) in plan.items():
        ours, theirs, shape, classes = models(name)
        macs = model_cost(ours).macs
        row = {
            "model": name,
            "batch": batch,
            "macs": macs,
            "ours_images_per_s": images_per_s(ours, shape, classes, batch, steps),
        }
        if theirs is not None:
            row["keras_images_per_s"] = images_per_s(theirs, shape, classes, batch, steps)
            row["ratio"] = row["ours_images_per_s"] / row["keras_images_per_s"]
        if peak:
            row["bf16_peak_share"] = 6 * macs * row["ours_images_per_s"] / peak
        results.append(row)
        keras.backend.clear_session()
        print(f"  {name} batch {batch}: ours {row['ours_images_per_s']:,.0f} img/s"
              + (f", keras.applications {row['keras_images_per_s']:,.0f}, ratio {row['ratio']:.3f}" if "ratio" in row else "")
              + (f", {row['bf16_peak_share']:.1%} of the bf16 peak" if peak else ", bf16 peak unknown for this device"))  # fmt: skip
    sweep = []
    if args.sweep_trials:
        batch, steps = (16, 2) if args.quick else (512, 30)
        sweep = placed_sweep(args.sweep_trials, batch, steps, on_gpu=device.platform == "gpu",
                             deadline=started + args.budget_s)  # fmt: skip
        left = args.sweep_trials - len(sweep)
        print(f"placed sweep: {len(sweep)} trials, batch {batch}, bf16"
              + (f" ({left} left out: --budget-s {args.budget_s:g} reached)" if left else ""))  # fmt: skip
        for r in sweep:
            share = f", {6 * r['macs'] * r['images_per_s'] / peak:.1%} of the bf16 peak" if peak else ""
            print(f"  t{r['trial']:02d} slot {r['slot']}: saw {len(r['devices_seen'])} device(s) "
                  f"({r['platform']}), {r['spec']['block']} d{'-'.join(map(str, r['spec']['depths']))} "
                  f"w{r['spec']['widths'][0]}: {r['images_per_s']:,.0f} img/s{share}")  # fmt: skip
        alone = bool(sweep) and all(len(r["devices_seen"]) == 1 for r in sweep)
        print(f"  every trial saw exactly one device: {alone}" + ("" if sweep else " (no trial ran)"))
        if not alone:
            return 1
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device.device_kind, "jax": jax.__version__,
                                               "keras": keras.__version__, "results": results, "sweep": sweep},
                                              indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
