"""The sweep's garbage-collector policy, in one place.

A sweep's processes hold many long-lived objects (TensorFlow, Keras, Hydra, MLflow, the study)
and make a burst of short-lived ones per trial (a model and its traced graphs: some
28,000-37,000 objects for a small ResNet, none per step). Python's collector, left alone,
rescans the long-lived ones at arbitrary points of a trial. So:

- after start-up, what survives a collection is frozen (``freeze_survivors``): the fork
  server, each worker after its warm-up and after each trial's clean-up, the sweeper before
  its loop;
- workers collect only between jobs (``collect_between_jobs_only`` at start, then
  ``collect_between_jobs``).

``RESNET_BLOCKS_GC=python`` leaves Python's collector as it is, everywhere: the paired
benchmark in BENCHMARKS.md runs the quick sweep both ways, which is the measured reason for
keeping this module (or removing it).
"""

from __future__ import annotations

import gc
import os

TUNED = os.environ.get("RESNET_BLOCKS_GC", "tuned") != "python"


def freeze_survivors() -> None:
    """Collect once, then keep what is left out of every later collection."""
    if TUNED:
        gc.collect()
        gc.freeze()


def freeze() -> None:
    """Keep what exists now out of later collections (a collection has just run)."""
    if TUNED:
        gc.freeze()


def collect_between_jobs_only() -> None:
    """In a worker: no automatic collection; ``collect_between_jobs`` runs one per job."""
    if TUNED:
        gc.disable()


def collect_between_jobs() -> None:
    if TUNED:
        gc.collect()
