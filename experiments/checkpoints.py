"""Resumable training: a checkpoint at the end of every epoch, restored by the next attempt.

A run with ``trainer.checkpoint_dir`` (a sweep gives each trial one, shared by its retries)
writes, at each epoch's end, everything the rest of the run depends on: the weights, the
optimizer's variables (its step count, so the learning-rate schedule goes on where it was),
the layers' seed states (dropout draws on),
the epochs trained, every epoch's metrics so far (what the tracker logged and the pruner was
told), and the best epoch's value, number and weights (the model a run keeps). A later
attempt restores the newest valid checkpoint and trains only the remaining epochs; the data
pipeline is advanced past the epochs already trained, so each epoch sees the batches, in the
order and with the augmentation draws, it would have seen uninterrupted: on CPU the final
weights equal an uninterrupted run's.

Each checkpoint is a folder ``epoch-NNNN`` written under a temporary name and renamed when
complete, with a ``state.json`` that holds the SHA-256 of its arrays, written last. A folder
whose state or digests do not check out (a kill mid-write, a truncated file), or one written
for another configuration, is ignored with a warning, never loaded; the previous checkpoint
is kept for that case. Checkpoints are written by a background thread (the next epoch does not
wait for the disk); an epoch is lost to a kill only if the kill lands within that write.

A run stopped by a signal (SIGTERM from SLURM's preemption, Ctrl-C) mid-epoch also writes a
*stop checkpoint*, ``epoch-NNNN-batch-BBBBBB``, at the batch boundary it stopped at: the same
state, plus the batches of the epoch already trained and the training metrics' running totals,
so the next attempt trains only that epoch's remaining batches (and its metrics cover all of
them). A kill -9 mid-epoch costs that epoch's steps (at most one epoch per kill).

Not restored: Keras's global seed generator (a user block's dropout).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from experiments.background import OrderedWriter

log = logging.getLogger(__name__)

FORMAT = 2  # 2: the layers' seed states follow the optimizer's variables
KEEP = 2  # the newest two: a damaged newest one falls back to the one before
ARRAYS = "arrays.npz"  # the model's weights, then the optimizer's variables
METRICS = "metrics.npz"  # a stop checkpoint's training metrics so far (their variables)
BEST = "best.npz"  # the best epoch's weights, where that is not the checkpoint's own epoch
STATE = "state.json"


@dataclass
class Checkpoint:
    """What a checkpoint restores: ``epochs`` trained, their metrics, and the best epoch."""

    path: Path
    epochs: int
    history: list[dict[str, float]]  # one dict of metrics per epoch trained (step = index + 1)
    best_value: float | None
    best_epoch: int  # 0-based; -1 before any finite value
    steps: int = 0  # the optimizer's step count (batches trained)
    batch: int = 0  # a stop checkpoint: the batches of epoch ``epochs`` (0-based) trained too
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)


def fingerprint(parts: dict[str, Any]) -> str:
    """A digest of what decides a run's trajectory (model, data, trainer settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_npz(path: Path, arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, *arrays)
        f.flush()
        os.fsync(f.fileno())


def _read_npz(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


class CheckpointDir:
    """The checkpoints of one run (one trial and its retries) in ``path``."""

    def __init__(self, path: str | os.PathLike, config_digest: str):
        self.path = Path(path)
        self.digest = config_digest

    def _folders(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        # (Names sort by age: epoch-0003 < epoch-0003-batch-000045 < epoch-0004.)
        return sorted((p for p in self.path.glob("epoch-*") if p.is_dir()), reverse=True)

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that checks out; damaged or foreign ones are skipped with a warning."""
        for folder in self._folders():
            try:
                return self._read(folder)
            except _Unusable as err:
                log.warning("checkpoint %s ignored: %s", folder, err)
        return None

    def _read(self, folder: Path) -> Checkpoint:
        try:
            state = json.loads((folder / STATE).read_text())
        except (OSError, ValueError) as err:
            raise _Unusable(f"its {STATE} is missing or unreadable ({type(err).__name__})") from None
        if state.get("format") != FORMAT:
            raise _Unusable(f"format {state.get('format')!r}, expected {FORMAT}")
        if state.get("config") != self.digest:
            raise _Unusable("it was written for another configuration (model, data or trainer settings differ)")
        arrays = {}
        for name, digest in state.get("files", {}).items():
            file = folder / name
            try:
                if _sha256(file) != digest:
                    raise _Unusable(f"{name} does not match its SHA-256 (truncated or changed)")
                arrays[name] = _read_npz(file)
            except (OSError, ValueError, EOFError) as err:
                raise _Unusable(f"{name} is unreadable ({type(err).__name__}: {err})") from None
        if ARRAYS not in arrays:
            raise _Unusable(f"it has no {ARRAYS}")
        return Checkpoint(
            path=folder,
            epochs=int(state["epochs"]),
            history=list(state["history"]),
            best_value=state["best_value"],
            best_epoch=int(state["best_epoch"]),
            steps=int(state.get("steps", 0)),
            batch=int(state.get("batch", 0)),
            arrays=arrays,
        )

    def save(self, snapshot: _Snapshot) -> None:
        """Write ``snapshot`` as ``epoch-NNNN`` (atomically), then drop all but the newest ``KEEP``."""
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / (
            f"epoch-{snapshot.epochs:04d}" + (f"-batch-{snapshot.batch:06d}" if snapshot.batch else "")
        )
        tmp = self.path / f".{final.name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_npz(tmp / ARRAYS, snapshot.arrays)
        files = {ARRAYS: _sha256(tmp / ARRAYS)}
        if snapshot.best_arrays is not None:  # the best epoch is an earlier one
            previous = self.path / f"epoch-{snapshot.epochs - 1:04d}" / BEST
            if snapshot.best_reused and previous.exists():
                os.link(previous, tmp / BEST)  # unchanged since the last checkpoint: no copy
            else:
                _write_npz(tmp / BEST, snapshot.best_arrays)
            files[BEST] = _sha256(tmp / BEST)
        if snapshot.metric_arrays is not None:
            _write_npz(tmp / METRICS, snapshot.metric_arrays)
            files[METRICS] = _sha256(tmp / METRICS)
        state = {
            "format": FORMAT,
            "config": self.digest,
            "epochs": snapshot.epochs,
            "history": snapshot.history,
            "best_value": snapshot.best_value,
            "best_epoch": snapshot.best_epoch,
            "steps": snapshot.steps,
            "batch": snapshot.batch,
            "files": files,
            "written": time.time(),
        }
        with open(tmp / STATE, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # (an attempt that stopped right after writing it, redone)
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self._folders()[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)

    def remove(self) -> None:
        """The run ended (finished, pruned or failed on its own): its checkpoints are of no more use."""
        shutil.rmtree(self.path, ignore_errors=True)


class _Unusable(Exception):
    pass


@dataclass
class _Snapshot:
    epochs: int
    arrays: list[np.ndarray]
    history: list[dict[str, float]]
    best_value: float | None
    best_epoch: int
    steps: int
    best_arrays: list[np.ndarray] | None
    best_reused: bool
    batch: int = 0
    metric_arrays: list[np.ndarray] | None = None


def model_arrays(model) -> list[np.ndarray]:
    """The model's weights, its optimizer's variables (iterations included), then the states
    of its layers' random seed generators (dropout's: a resumed run draws what it would have)."""
    return [np.asarray(v) for v in model.get_weights()] + [
        np.asarray(keras.ops.convert_to_numpy(v)) for v in (*model.optimizer.variables, *_seed_states(model))
    ]


def _seed_states(model) -> list:
    """The model's variables that are not weights: its layers' ``SeedGenerator`` states."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def metric_arrays(model) -> list[np.ndarray]:
    """The running totals of the model's compiled loss and metrics (mid-epoch: the epoch so far)."""
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.metrics_variables]


def restore_metrics(model, arrays: list[np.ndarray]) -> None:
    for var, value in zip(model.metrics_variables, arrays, strict=True):
        var.assign(value)


def restore(model, ckpt: Checkpoint) -> None:
    """Put ``ckpt``'s weights, optimizer state and seed states into ``model`` (compiled,
    optimizer built)."""
    arrays = ckpt.arrays[ARRAYS]
    n_weights = len(model.weights)
    states = [*model.optimizer.variables, *_seed_states(model)]
    if len(arrays) != n_weights + len(states):
        raise ValueError(
            f"checkpoint {ckpt.path} holds {len(arrays)} arrays; this model and optimizer have "
            f"{n_weights} + {len(states)}"
        )
    model.set_weights(arrays[:n_weights])
    for var, value in zip(states, arrays[n_weights:], strict=True):
        var.assign(value)


class EpochCheckpoints(keras.callbacks.Callback):
    """Writes a checkpoint at each epoch's end (the arrays are copied on the training thread,
    written by a background one); goes after :class:`~experiments.train.KeepBestEpoch`."""

    def __init__(self, folder: CheckpointDir, keep, history: list[dict[str, float]], metrics_of, steps_per_epoch: int):
        super().__init__()
        self.folder, self.keep, self.metrics_of = folder, keep, metrics_of
        self.steps_per_epoch = steps_per_epoch
        self.history = list(history)  # the epochs restored, then each one trained here
        self._best_saved_for: int | None = None
        self._writer: OrderedWriter | None = None
        self._epoch: int | None = None  # the epoch training is in (0-based), between its begin and end

    def on_train_begin(self, logs=None):
        self._writer = OrderedWriter("checkpoints")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = None
        self.history.append(self.metrics_of(logs or {}))
        keep = self.keep
        earlier_best = 0 <= keep.epoch < epoch
        best_arrays = None
        if earlier_best:
            best_arrays = keep.best_weights()
        snapshot = _Snapshot(
            epochs=epoch + 1,
            arrays=model_arrays(self.model),
            history=list(self.history),
            best_value=keep.best,
            best_epoch=keep.epoch,
            steps=int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
            best_arrays=best_arrays,
            best_reused=earlier_best and self._best_saved_for == keep.epoch,
        )
        self._best_saved_for = keep.epoch if earlier_best else None
        assert self._writer is not None
        self._writer.submit(self.folder.save, snapshot)

    def on_train_end(self, logs=None):
        self.close()

    def save_stopped(self) -> Path | None:
        """Training was stopped by a signal: write a stop checkpoint of where it is, now, if that
        is inside an epoch's training batches (at an epoch's end the checkpoint of that epoch
        serves; during validation all its batches were trained and the epoch is done again)."""
        self.close()
        if self._epoch is None or self.model is None:
            return None
        steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        batch = steps - self._epoch * self.steps_per_epoch
        if not 0 < batch < self.steps_per_epoch:
            return None
        keep = self.keep
        snapshot = _Snapshot(
            epochs=self._epoch,
            arrays=model_arrays(self.model),
            history=list(self.history),
            best_value=keep.best,
            best_epoch=keep.epoch,
            steps=steps,
            best_arrays=keep.best_weights() if keep.epoch >= 0 else None,
            best_reused=False,
            batch=batch,
            metric_arrays=metric_arrays(self.model),
        )
        self.folder.save(snapshot)
        log.info("stopped in epoch %d after %d of its %d batches: checkpoint written", self._epoch + 1, batch,
                 self.steps_per_epoch)  # fmt: skip
        return self.folder.path

    def close(self) -> None:
        """Wait for the checkpoints queued so far (an interrupted run keeps its last one)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
