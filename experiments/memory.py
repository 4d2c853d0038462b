"""Training memory, estimated from a model's cost before any weight is allocated.

A model that cannot fit (``model=resnet50 'model.widths=[4096,8192,16384,32768]'``) would
otherwise take the machine's memory while its weights are created, long before training
fails. The estimate counts float32 weights with their gradients and optimizer slots, and
every layer's output for each image of a batch twice (kept for the backward pass, and its
gradient). It is an estimate of what the model needs, not of TensorFlow's own overhead.
"""

from __future__ import annotations

import os

from resnet_blocks import ModelCost, SpecError

DEFAULT_SHARE = 0.8  # of the memory available when the run starts (the GPUs' where training uses them)
OPTIMIZER_SLOTS = {"sgd": 1, "adamw": 2}  # per weight: momentum; first and second moments


class MemoryBudgetError(SpecError):
    """The model's estimated training memory is over ``trainer.max_memory_gb``; ``excess`` is
    the relative excess (a sweep records it as a constraint violation)."""

    def __init__(self, estimate_gb: float, limit_gb: float, how: str):
        super().__init__(
            "trainer.max_memory_gb",
            float(f"{limit_gb:.3g}"),
            f"at least {estimate_gb:.3g} (the estimated training memory of this model at this batch size, GB; "
            f"the limit is {how}): lower trainer.batch_size or the model's widths, or raise trainer.max_memory_gb",
        )
        self.excess = estimate_gb / limit_gb - 1.0


def gpu_free_gb() -> float | None:
    """The least free memory of the GPUs TensorFlow trains on (``nvidia-smi``), None without GPUs."""
    import shutil
    import subprocess

    # nvidia-smi first: without it (no NVIDIA driver) TensorFlow need not be imported to know.
    if shutil.which("nvidia-smi") is None or not _visible_gpus():
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        return min(float(v) for v in out.split()) / 1024  # MiB
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _visible_gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def available_gb() -> tuple[float | None, str]:
    """Memory available to the model's training: the GPUs' free memory where TensorFlow trains
    on GPUs, else the host's (Linux ``MemAvailable``); None where unknown; and which it is."""
    gpu = gpu_free_gb()
    if gpu is not None:
        return gpu, "GPU memory free"
    return host_available_gb(), "memory available"


def host_available_gb() -> float | None:
    """Memory available to new allocations (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError):
        return None


def training_memory_gb(cost: ModelCost, trainer) -> float:
    """Estimated memory (GB) to train a model of ``cost`` with ``trainer``'s batch size,
    precision and optimizer."""
    slots = OPTIMIZER_SLOTS.get(trainer.optimizer, 2) if trainer.momentum or trainer.optimizer != "sgd" else 0
    weights = cost.params * 4 * (2 + slots)  # weights, gradients, optimizer slots (float32)
    act_bytes = 4 if trainer.mixed_precision == "float32" else 2
    activations = cost.activations * trainer.batch_size * act_bytes * 2
    return (weights + activations) / 2**30


def check_training_memory(cost: ModelCost, trainer) -> None:
    """Raise :class:`MemoryBudgetError` when ``cost`` cannot be trained within the limit."""
    limit, how = trainer.max_memory_gb, "trainer.max_memory_gb"
    if limit is None:
        available, kind = available_gb()
        if available is None:
            return
        limit, how = DEFAULT_SHARE * available, f"{DEFAULT_SHARE:.0%} of the {available:.1f} GB of {kind}"
    estimate = training_memory_gb(cost, trainer)
    if estimate > limit:
        raise MemoryBudgetError(estimate, limit, how)


def rss_mb() -> float:
    """This process's resident memory in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0
