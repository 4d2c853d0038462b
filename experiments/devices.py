"""Device placement for a sweep's workers: one slot per (device, share); each worker process
claims a free slot when it starts and keeps it for its life, its ``CUDA_VISIBLE_DEVICES`` set
before TensorFlow initialises CUDA (the fork server imported TensorFlow but ran no op).

A slot is free when its owner process is gone (however it ended, even by kill -9), so a
worker that replaces a recycled or dead one takes that one's device. Our pool keeps the
owners in shared memory (:func:`claim`); the workers of other launchers (joblib's, a local
submitit's) find the slots in their environment (:data:`SLOTS_ENV`, set by the sweeper before
they start) and claim one by locking its file (:func:`claim_from_environment`): the kernel
releases the lock when its process ends.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
import time
from typing import Any

from resnet_blocks import SpecError

DEVICE_ENV = "RESNET_BLOCKS_DEVICES"  # a worker's devices, as its runs record them ("cpu" or "0", ...)
SLOTS_ENV = "RESNET_BLOCKS_DEVICE_SLOTS"  # {"slots": [...], "folder": ...}: for other launchers' workers
_held: dict[str, Any] = {}  # this process's claimed slot: its devices and its lock file, held for its life


def visible_gpus() -> list[str]:
    """GPU indices ``nvidia-smi`` lists (none without it): no TensorFlow or CUDA in this process."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def device_slots(devices: Any, trials_per_device: int, n_jobs: int, devices_per_trial: int = 1) -> list[str] | None:
    """The slots the workers claim (GPU indices such as "0" or "0,1", or "cpu"), or None: no
    placement (``null``, or ``auto`` on a machine without GPUs). ``devices_per_trial``
    consecutive devices make one slot (a trial with ``trainer.distribute=mirrored``)."""
    for name, value in (("trials_per_device", trials_per_device), ("devices_per_trial", devices_per_trial)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SpecError(f"hydra.sweeper.{name}", value, "an integer >= 1")
    if devices is None:
        return None
    if devices == "cpu":  # every worker hides the GPUs; as many as n_jobs says
        return ["cpu"] * n_jobs
    given = inherited_gpus()  # (SLURM, a container: the GPUs this job was given, by its own names)
    if devices == "auto":
        items = list(range(len(given))) if given is not None else [int(d) for d in visible_gpus()]
        if not items:
            return None
    else:
        items = list(devices) if not isinstance(devices, (str, bytes)) and hasattr(devices, "__iter__") else []
        if (not items or len(set(items)) != len(items)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in items)):  # fmt: skip
            raise SpecError(
                "hydra.sweeper.devices", devices, "null, auto, cpu or a list of distinct GPU indices, e.g. [0,1,2,3]"
            )
        if given is not None and max(items) >= len(given):
            raise SpecError("hydra.sweeper.devices", devices, f"indices into the {len(given)} GPU(s) this process was "
                            f"given (CUDA_VISIBLE_DEVICES={','.join(given)!r}): 0 to {len(given) - 1}")  # fmt: skip
    if len(items) % devices_per_trial:
        raise SpecError("hydra.sweeper.devices_per_trial", devices_per_trial,
                        f"a divisor of the number of devices ({len(items)}: {items})")  # fmt: skip
    names = [given[d] if given is not None else str(d) for d in items]
    groups = [",".join(names[i : i + devices_per_trial]) for i in range(0, len(names), devices_per_trial)]
    return [g for g in groups for _ in range(trials_per_device)]


def check_trial_devices(distribute: str, devices: Any, devices_per_trial: int) -> None:
    """A mirrored trial (``trainer.distribute=mirrored``) placed on GPUs mirrors over the
    devices of its slot: with one device per slot it would train on one GPU, silently."""
    if distribute == "mirrored" and devices not in (None, "cpu") and devices_per_trial < 2:
        raise SpecError("hydra.sweeper.devices_per_trial", devices_per_trial, ">= 2 with trainer.distribute=mirrored "
                        "(the GPUs each trial mirrors over, e.g. 2), or trainer.distribute=none")  # fmt: skip


def inherited_gpus() -> list[str] | None:
    """The GPUs this process was given through ``CUDA_VISIBLE_DEVICES`` (indices, UUIDs or MIG
    names, in its order; empty: none), or None where it is not set. ``devices`` indices are
    positions in this list, as CUDA numbers them inside the process: ``nvidia-smi`` lists
    every GPU of the machine, also those another job was given."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [d.strip() for d in value.split(",") if d.strip()]


def claim(slots: list[str], owners, lock) -> str:
    """Claim a free slot for this process (waiting while a replaced worker is still exiting);
    set its devices in the environment; return them."""
    deadline = time.monotonic() + 60
    while True:
        with lock:
            for i in range(len(slots)):
                if owners[i] == 0 or not _alive(owners[i]):
                    owners[i] = os.getpid()
                    return place(slots[i])
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free device slot among {slots} for worker {os.getpid()}")
        time.sleep(0.2)


def place(devices: str) -> str:
    """This process trains on ``devices`` ("cpu": no GPU), memory allocated as it grows."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if devices == "cpu" else devices
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    os.environ[DEVICE_ENV] = devices
    return devices


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def offer_slots(slots: list[str], folder: str | os.PathLike) -> None:
    """Let the workers a launcher starts from now on claim ``slots`` (lock files in ``folder``)."""
    os.makedirs(folder, exist_ok=True)
    os.environ[SLOTS_ENV] = json.dumps({"slots": slots, "folder": os.fspath(folder)})


def claim_from_environment(timeout_s: float = 60) -> str | None:
    """In a launcher's worker: claim a free slot of :data:`SLOTS_ENV` (once per process: a worker
    keeps its devices for its life) and place this process on it; None without slots."""
    offered = os.environ.get(SLOTS_ENV)
    if not offered:
        return None
    if "devices" in _held:
        return _held["devices"]
    spec = json.loads(offered)
    deadline = time.monotonic() + timeout_s
    while True:
        for i, devices in enumerate(spec["slots"]):
            f = open(os.path.join(spec["folder"], f"slot-{i}.lock"), "a+")  # (held open: the lock lasts the process)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            _held.update(devices=devices, lock=f)
            return place(devices)
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free device slot among {spec['slots']} for worker {os.getpid()}")
        time.sleep(0.2)


def placed(task):
    """``task`` run on the devices this process claims from :data:`SLOTS_ENV` (if offered)."""
    return functools.partial(_run_placed, task)


def _run_placed(task, *args, **kwargs):
    claim_from_environment()
    return task(*args, **kwargs)
