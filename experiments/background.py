"""Store writes made from a training loop, done by a background thread in their order.

Keras runs its callbacks between epochs on the training thread, and the next epoch waits for
them. A write to a store (an MLflow metric batch, an Optuna intermediate value: a few
milliseconds of SQLAlchemy each) is queued instead, and a writer thread does it. Done at once,
that write would still slow the callbacks that follow it, since the two threads share the
interpreter lock; so writers hold queued work while the training thread is between epochs
(:class:`HoldWritesBetweenEpochs`) and do it once the next epoch's steps run, when TensorFlow
has released the lock to execute its ops.

``RESNET_BLOCKS_WRITES=inline`` does every write at once on the caller's thread instead: the
paired benchmark in BENCHMARKS.md runs the quick sweep both ways, the measured reason for
this thread.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import keras

_STEPS_RUNNING = threading.Event()  # cleared while the training thread runs epoch-end callbacks
_STEPS_RUNNING.set()
MAX_HOLD_S = 0.5  # a slow callback between epochs holds writes no longer than this
INLINE = os.environ.get("RESNET_BLOCKS_WRITES", "background") == "inline"


def hold_writes() -> None:
    """Writers wait (at most ``MAX_HOLD_S``): the training thread has callbacks to run."""
    _STEPS_RUNNING.clear()


def release_writes() -> None:
    _STEPS_RUNNING.set()


class HoldWritesBetweenEpochs(keras.callbacks.Callback):
    """Holds writes from each epoch's end until the next epoch begins (or training ends).
    It must come first among the callbacks, so the hold starts before the others run."""

    def on_epoch_end(self, epoch, logs=None):
        hold_writes()

    def on_epoch_begin(self, epoch, logs=None):
        release_writes()

    def on_train_end(self, logs=None):
        release_writes()


class OrderedWriter:
    """Calls ``submit``-ted functions from one daemon thread, first in, first out.

    After a call fails the rest are dropped; ``flush`` and ``close`` raise that error on the
    caller's thread, so a refused write still fails the run that made it.
    """

    def __init__(self, name: str):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._done = threading.Condition()
        self._submitted = self._finished = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._error is not None:  # an earlier write failed: fail now, not at the end
            raise self._error
        if INLINE:
            fn(*args)
            return
        self._submitted += 1
        self._queue.put((fn, args))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args = item
            _STEPS_RUNNING.wait(MAX_HOLD_S)
            if self._error is None:
                try:
                    fn(*args)
                except BaseException as err:  # noqa: BLE001 - handed to the training thread
                    self._error = err
            with self._done:
                self._finished += 1
                self._done.notify_all()

    def flush(self) -> None:
        """Wait until everything submitted so far is written; raise the first error."""
        release_writes()  # the caller is the training thread: nothing to hold writes for
        target = self._submitted
        with self._done:
            self._done.wait_for(lambda: self._finished >= target)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """``flush``, then stop the thread."""
        try:
            self.flush()
        finally:
            self._queue.put(None)
            self._thread.join()
