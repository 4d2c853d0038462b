"""The process launcher's fork server, started as a fork of the sweeper where that is safe.

Everything here leans on multiprocessing's private ``ForkServer`` state, for a measured
reason (``_start_fork_server``); ``_same_fork_server`` checks that state is the one this
was written against and falls back to multiprocessing's own start otherwise, and
``tests/experiments/sweep/test_launcher.py`` fails when that fallback is taken on Linux.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import socket
import sys
import threading
from collections.abc import Sequence

from experiments.tracking import PRELOAD_MODULES


def ignore_stop_signals() -> None:
    """In the fork server: SIGTERM and SIGHUP do nothing. SLURM and ``kill`` signal the whole
    process group; a fork server that ended on them would take its workers with it (each dies
    with it, see :func:`die_with_parent`) before their training jobs reach the batch boundary
    where they write a stop checkpoint. It ends with the sweeper instead."""
    import signal

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


def die_with_parent() -> None:
    """On Linux, have this process killed when the thread that started it ends (its parent's
    main thread here: the sweeper's for the fork server, the fork server's for a worker)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# What every worker imports. On Linux a fork server holds it and forks each worker from it, so
# a worker starts at once instead of importing TensorFlow (seconds): the first workers, and
# each worker that replaces one that grew (with fresh workers every 3 trials of the quick
# sweep: 1.3 s without training instead of 9.6 s, benchmarks/sweep_overhead.py). Only imports
# happen in the fork server, no TensorFlow op, so TensorFlow's runtime and its threads start
# in each worker.
PRELOAD = [
    "experiments.sweep.forkserver_guard",  # first: the fork server dies with the sweeper
    "experiments.run",
    "experiments.sweep.job",
    *PRELOAD_MODULES,  # the job's tracking, which imports MLflow lazily
    "sklearn.datasets",  # the embedded dataset and the validation split
    "sklearn.model_selection",
]


def worker_context():
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        # Started here, from the caller's thread (the sweeper's main thread), not from the
        # thread that starts the workers: a process dies with the thread that started it
        # (die_with_parent), and that thread ends once the workers are up.
        _start_fork_server()
        return context
    return multiprocessing.get_context("spawn")  # elsewhere forking is unsafe or unavailable


def _start_fork_server() -> None:
    """Start multiprocessing's fork server, as a fork of this process where that is safe.

    multiprocessing starts it as a new interpreter, which imports TensorFlow, Keras and MLflow
    again: 4-5 s on 2 cores, competing with the sweeper's own set-up, before any trial can
    start. The sweeper has imported TensorFlow already but run no op of it (the same state
    the fork server keeps), so a fork of it is a fork server that only has MLflow left to
    import. Falls back to multiprocessing's own start when this process already runs
    TensorFlow's runtime or other threads (their state would not survive the fork) or when
    this Python's fork server differs from the one this was written against (3.11-3.13)."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # noqa: SLF001 - the module's one ForkServer
    if not _fork_safe() or not _same_fork_server(server):
        forkserver.ensure_running()
        return
    with server._lock:  # noqa: SLF001 - as ForkServer.ensure_running, with os.fork for spawnv
        from multiprocessing import connection, resource_tracker, spawn, util

        resource_tracker.ensure_running()
        if server._forkserver_pid is not None:  # noqa: SLF001
            if not os.waitpid(server._forkserver_pid, os.WNOHANG)[0]:  # noqa: SLF001
                return  # still running
            os.close(server._forkserver_alive_fd)  # noqa: SLF001
            server._forkserver_address = server._forkserver_alive_fd = server._forkserver_pid = None  # noqa: SLF001
        data = {k: v for k, v in spawn.get_preparation_data("ignore").items() if k in ("main_path", "sys_path")}
        preload = list(server._preload_modules)  # noqa: SLF001
        with socket.socket(socket.AF_UNIX) as listener:
            address = connection.arbitrary_address("AF_UNIX")
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()  # every client holds the write end; EOF: all gone
            sys.stdout.flush()  # else the workers would print what this process had buffered
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the fork server: serve until the sweeper is gone, never return
                try:
                    ignore_stop_signals()  # (a fork of the sweeper: its handlers would end this)
                    os.close(alive_w)
                    _preload_and_freeze(preload)
                    forkserver.main(listener.fileno(), alive_r, [], **data)
                finally:
                    os._exit(0)
            os.close(alive_r)
        server._forkserver_address = address  # noqa: SLF001
        server._forkserver_alive_fd = alive_w  # noqa: SLF001
        server._forkserver_pid = pid  # noqa: SLF001


def _preload_and_freeze(modules: Sequence[str]) -> None:
    """In the fork server: import ``modules`` (as multiprocessing's does), then collect garbage
    once and freeze what is left, so no worker spends the ~0.4 s of that collection again."""
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            pass
    from experiments.sweep import gc_policy

    gc_policy.freeze_survivors()


def _fork_safe() -> bool:
    """No thread but this one and no TensorFlow runtime (its thread pools) in this process."""
    if threading.active_count() > 1:
        return False
    if "tensorflow" in sys.modules:
        try:
            from tensorflow.python.eager import context

            return not context.context()._initialized  # noqa: SLF001
        except (ImportError, AttributeError):
            return False
    return True


def _same_fork_server(server) -> bool:
    """This Python's fork server is the one ``_start_fork_server`` mirrors (no auth key)."""
    from multiprocessing import forkserver

    params = list(inspect.signature(forkserver.main).parameters)
    expected = ["listener_fd", "alive_r", "preload", "main_path", "sys_path"]
    return params == expected and set(vars(server)) == {
        "_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid", "_inherited_fds", "_lock",
        "_preload_modules",
    }  # fmt: skip
