"""The process launcher's fork server: what it imports must leave TensorFlow's runtime alone."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest

from tests.experiments.conftest import REPO

PROBE = """
import importlib
from experiments.sweep.forkserver import PRELOAD
for name in PRELOAD:
    importlib.import_module(name)
from tensorflow.python.eager import context
print("runtime started:", context.context()._initialized)
import tensorflow as tf
tf.constant(1.0) + 1  # the probe itself can tell a started runtime
print("runtime started:", context.context()._initialized)
"""


def test_fork_server_preload_starts_no_tensorflow_runtime():
    # Workers are forked from the fork server; a TensorFlow runtime (thread pools) started
    # there would not survive the fork. So its imports must not run any TensorFlow op.
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-2:] == ["runtime started: False", "runtime started: True"], proc.stdout


def test_fork_server_guard_is_imported_first():
    from experiments.sweep.forkserver import PRELOAD

    assert PRELOAD[0] == "experiments.sweep.forkserver_guard"


FORKED = """
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
import experiments  # TensorFlow imported, its runtime not started
{before}
from experiments.sweep.forkserver import worker_context
from experiments.sweep.launcher import _warm_up
context = worker_context()
server = forkserver._forkserver._forkserver_pid
cmdline = lambda pid: open(f"/proc/{{pid}}/cmdline").read()
print("server is a fork of this process:", cmdline(server) == cmdline(os.getpid()))
with ProcessPoolExecutor(1, mp_context=context) as pool:
    worker = pool.submit(_warm_up).result()  # runs TensorFlow ops and a Keras build in the worker
    print("worker forked from the server:", open(f"/proc/{{worker}}/stat").read().split()[3] == str(server))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only (spawn elsewhere)")
def test_fork_server_is_a_fork_of_the_sweeper_and_its_workers_run_tensorflow():
    # The sweeper has imported TensorFlow but run none of it: a fork of it needs no new
    # interpreter importing TensorFlow again (4-5 s before the first trial could start).
    proc = subprocess.run(
        [sys.executable, "-c", FORKED.format(before="")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "server is a fork of this process: True" in proc.stdout, proc.stdout
    assert "worker forked from the server: True" in proc.stdout, proc.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only (spawn elsewhere)")
def test_fork_server_is_a_new_interpreter_once_tensorflow_runs_here():
    # TensorFlow's thread pools would not survive a fork: then multiprocessing's own start.
    before = "import tensorflow as tf; tf.constant(1.0) + 1"
    proc = subprocess.run(
        [sys.executable, "-c", FORKED.format(before=before)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "server is a fork of this process: False" in proc.stdout, proc.stdout
    assert "worker forked from the server: True" in proc.stdout, proc.stdout


@pytest.mark.parametrize(("policy", "automatic"), [("tuned", False), ("python", True)])
def test_workers_collect_garbage_between_jobs_only(monkeypatch, policy, automatic):
    # (RESNET_BLOCKS_GC=python: Python's own collector, for the paired benchmark.)
    import gc
    from concurrent.futures import ProcessPoolExecutor

    from experiments.sweep.launcher import _init_worker

    monkeypatch.setenv("RESNET_BLOCKS_GC", policy)  # (a spawned worker imports the policy afresh)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(None,)) as pool:  # fmt: skip
        assert pool.submit(gc.isenabled).result() is automatic


def test_each_trial_knows_the_trials_that_trained_before_it(monkeypatch):
    # With prefetching, a trial gives its training slot back when its training ends, before
    # the sweeper has told the study its result; the next trial learns which trials those were.
    from experiments.sweep import launcher

    context = multiprocessing.get_context("spawn")  # (only its synchronisation primitives)
    monkeypatch.setattr(launcher, "_SLOTS", context.BoundedSemaphore(1))
    monkeypatch.setattr(launcher, "_RELEASES", context.Array("i", 1 + 3))  # the 3 most recent
    seen = []
    for number in range(5):
        with launcher.WORKER_SERVICES.training_slot(number):
            seen.append(launcher.WORKER_SERVICES.trained_before())
    assert seen == [(), (0,), (0, 1), (0, 1, 2), (1, 2, 3)]


def test_a_training_slot_given_back_early_is_given_back_once(monkeypatch):
    from experiments.sweep import launcher

    context = multiprocessing.get_context("spawn")
    slots = context.BoundedSemaphore(1)  # (releasing it twice would raise ValueError)
    monkeypatch.setattr(launcher, "_SLOTS", slots)
    monkeypatch.setattr(launcher, "_RELEASES", context.Array("i", 1 + 3))
    with launcher.WORKER_SERVICES.training_slot(7) as slot:
        assert not slots.acquire(block=False)  # held
        slot.release()  # training ended: the next trial may train
        assert slots.acquire(block=False)
        slots.release()
        slot.release()
    with launcher.WORKER_SERVICES.training_slot(8):
        assert launcher.WORKER_SERVICES.trained_before() == (7,)  # noted once


def test_pruning_waits_until_the_study_knows_the_trials_that_trained_before(tmp_path, caplog):
    import threading
    import time

    import optuna

    from experiments.sweep.job import wait_until_told

    url = f"sqlite:///{tmp_path}/study.db"
    sweeper_side = optuna.create_study(study_name="s", storage=url)
    earlier, running = sweeper_side.ask(), sweeper_side.ask()
    worker_side = optuna.load_study(study_name="s", storage=url)  # as a job sees the study
    threading.Timer(0.3, lambda: sweeper_side.tell(earlier, 1.0)).start()
    started = time.monotonic()
    wait_until_told(worker_side, (earlier.number,))
    assert time.monotonic() - started >= 0.25
    assert worker_side.trials[earlier.number].state == optuna.trial.TrialState.COMPLETE
    # A trial the sweeper never tells (it died): pruning goes on after the timeout, and says so.
    started = time.monotonic()
    wait_until_told(worker_side, (running.number,), timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 5
    assert "pruning without trial(s) (1,)" in caplog.text
