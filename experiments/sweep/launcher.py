"""A Hydra launcher that runs jobs in worker processes which are recycled as they grow.

TensorFlow keeps some memory for every model it traces, even after ``clear_session``
(measured: 10-35 MB per small trial), so a long sweep in one process grows without bound.
Here the workers are replaced once one of them has grown by ``max_worker_growth_mb`` since
its first trial (and, if set, after ``max_trials_per_process`` jobs). That bounds memory
while paying TensorFlow's import (seconds) only when needed: small models leak little, so
their workers live long. ``n_jobs`` worker processes run jobs in parallel.

With ``prefetch`` (set by the sweeper), that many extra workers set up the next trials
(config, MLflow run, data, model build and compile) while the others train: a job waits
for one of the ``n_jobs`` training slots only right before ``fit``, so a trial's set-up is
off the critical path. ``submit`` starts one job and returns a future, for a sweeper that
keeps jobs in flight; ``launch`` is Hydra's run-a-batch API on top of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import open_dict

from experiments.signals import stop_at_batch_end, worker_job
from experiments.sweep import gc_policy
from experiments.sweep.forkserver import PRELOAD, die_with_parent, worker_context
from experiments.sweep.ticket import JobServices

log = logging.getLogger(__name__)


STOP_GRACE_S = 30  # a stopped sweep waits this long for its training jobs' stop checkpoints (SLURM: 30-90 s)
_SLOTS = None  # in a worker: the pool's semaphore of training slots (None: no gate)
_RELEASES = None  # in a worker: the pool's ring of trials that gave a slot back (see training_slot)
_DATA_LOCK = None  # in a worker: held while a worker warms its data up (one at a time)
_TRAINED_BEFORE: tuple[int, ...] = ()  # in a worker: trials that trained before this job's trial
_IN_WORKER = False  # this process is one of the launcher's workers
_CLEANUP = []  # in a worker: clean-up deferred from the running job (see defer_cleanup)
_CLEANER: threading.Thread | None = None  # in a worker: the last job's clean-up, running


def _init_worker(slots, releases=None, data_lock=None, placement=None) -> None:
    """Worker initializer: remember the training slots; claim a device slot (``placement``:
    see experiments.devices); on Linux, end this worker when the sweeper process dies
    (even by kill -9), so an orphan never keeps training a trial that has been failed and
    retried; collect garbage between jobs only."""
    global _SLOTS, _RELEASES, _DATA_LOCK, _IN_WORKER
    _SLOTS, _RELEASES, _DATA_LOCK, _IN_WORKER = slots, releases, data_lock, True
    if placement is not None:
        from experiments.devices import claim

        claim(*placement)
    die_with_parent()
    stop_at_batch_end()  # SIGTERM/SIGHUP (to the group, or from the sweeper): the sweeper ends the trials
    # A trial's cyclic garbage is its model and traced graphs: about 28,000-37,000 objects
    # for a small ResNet on digits whether it trains 2 or 30 epochs (measured), none per
    # step. So a worker collects once per job (its clean-up after the result, or at the next
    # job's start), off the critical path, instead of Python collecting at arbitrary points
    # of a trial.
    gc_policy.collect_between_jobs_only()


class TrainingSlot:
    """Train inside one of the launcher's training slots (in a worker with prefetching;
    elsewhere a no-op): jobs set up in parallel, but only ``n_jobs`` of them train at a time.

    The slot goes to the next trial as soon as this one's training ends (``release``, which
    training calls after its last epoch; at the latest when the ``with`` block ends), before
    its job has logged its last figures and the sweeper has told the study its result (some
    30 ms per trial). So that the next trial's pruner still compares with every trial that
    trained before it, as with one worker, :func:`trained_before` lists those trials (noted
    here as they give their slot back) and the pruning callback waits until the study knows them
    (:meth:`WorkerServices.trained_before`)."""

    def __init__(self, trial_number: int | None = None):
        self.trial_number = trial_number
        self._held = False

    def __enter__(self) -> TrainingSlot:
        global _TRAINED_BEFORE
        if _SLOTS is not None:
            _SLOTS.acquire()
            self._held = True
            _TRAINED_BEFORE = _recent_releases()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Give the slot back now (once; later calls do nothing)."""
        if not self._held:
            return
        self._held = False
        if self.trial_number is not None and _RELEASES is not None:
            with _RELEASES.get_lock():  # noted before the slot is free: the next trial reads it
                count = _RELEASES[0]
                _RELEASES[1 + count % (len(_RELEASES) - 1)] = self.trial_number
                _RELEASES[0] = count + 1
        _SLOTS.release()


def _recent_releases() -> tuple[int, ...]:
    if _RELEASES is None:
        return ()
    with _RELEASES.get_lock():
        count, ring = _RELEASES[0], list(_RELEASES[1:])
    return tuple(ring[i % len(ring)] for i in range(max(0, count - len(ring)), count))


class WorkerServices(JobServices):
    """What a worker offers the job it runs (see :class:`~experiments.sweep.ticket.JobServices`);
    the sweep's executor hands this to each trial function with its ticket."""

    def training_slot(self, number: int) -> TrainingSlot:
        return TrainingSlot(number)

    def trained_before(self) -> tuple[int, ...]:
        """In a worker: the trials (numbers) whose training ended before this job's trial got
        its slot, the most recent ones (at least every trial that may still be in flight)."""
        return _TRAINED_BEFORE

    def defer_cleanup(self, cleanup) -> bool:
        """In a worker, run ``cleanup`` once the job's result has gone back to the sweeper, from
        a thread, while the worker waits for its next job (which waits for it, if need be): a
        trial's clean-up (``clear_session`` and its garbage: about 0.05 s for a small ResNet,
        with the worker's long-lived objects frozen; more for larger models) then delays neither
        the sweeper nor the next trial's set-up. False (not deferred) elsewhere."""
        if _IN_WORKER:
            _CLEANUP.append(cleanup)
        return _IN_WORKER


WORKER_SERVICES = WorkerServices()


def _execute(payload: bytes) -> tuple[JobReturn, int, float]:
    """Runs in the worker process: one Hydra job, exactly as Hydra's own launchers do.
    Returns the job's result with this worker's pid and its resident memory afterwards."""
    global _TRAINED_BEFORE, _CLEANER
    _TRAINED_BEFORE = ()
    if _CLEANER is not None:  # the last job's clean-up, which collects its garbage
        _CLEANER.join()
        _CLEANER = None
    else:
        gc_policy.collect_between_jobs()
    idx, overrides, hydra_context, config, task_function, singleton_state, composed = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    # The sweeper composed this job's config already (to vet it): composing again costs ~0.1 s.
    sweep_config = (
        composed if composed is not None else hydra_context.config_loader.load_sweep_config(config, list(overrides))
    )
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    with worker_job():
        ret = run_job(
            hydra_context=hydra_context,
            config=sweep_config,
            task_function=task_function,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    from experiments.memory import rss_mb

    rss = rss_mb()
    if _CLEANUP:
        cleanups = list(_CLEANUP)
        _CLEANUP.clear()
        # Started a moment later: first this thread sends the result back (a collection
        # holds the interpreter lock while it runs).
        _CLEANER = threading.Timer(0.02, lambda: [cleanup() for cleanup in cleanups])
        _CLEANER.daemon = True
        _CLEANER.start()
    return ret, os.getpid(), rss


def _warm_up(tracking_uri: str | None = None, storage_url: str | None = None, data: dict | None = None) -> int:
    """Runs in a new worker before its first job: whatever every job needs once per process,
    done while the sweeper sets up, so the first trial does not wait for it: the imports (in
    the fork server already, on Linux), TensorFlow's runtime and Keras's first build and
    compile, the tracking store and the study's storage, and the sweep's base ``data`` config
    (``{"data": ..., "batch_size": ...}``: an image folder is decoded once per process)."""
    import importlib

    for name in PRELOAD[1:]:  # (already imported where the fork server preloaded them)
        importlib.import_module(name)
    try:
        _warm_keras()
        if tracking_uri:
            from experiments.tracking import warm_up

            warm_up(tracking_uri)
        if storage_url:
            from experiments.sweep.study import shared_storage

            shared_storage(storage_url)
        if data and _loads_locally(data["data"]):
            from omegaconf import OmegaConf

            from experiments.data import load_data

            # One worker at a time: the first gets the machine to itself and takes the first
            # trial sooner (10,000 CIFAR-10 JPEGs decoded in both workers at once: the first
            # trial trained after 12.1 s instead of about 9 s).
            with _DATA_LOCK if _DATA_LOCK is not None else contextlib.nullcontext():
                # (as the trials load it: without the test split, which they never evaluate)
                load_data(OmegaConf.create(data["data"]), batch_size=data["batch_size"], with_test=False)
    except Exception as err:  # noqa: BLE001 - only a head start: the job meets any real problem itself
        log.debug("worker warm-up incomplete: %s", err)
    # What exists now lives as long as the worker: keep it out of every later collection.
    gc_policy.freeze_survivors()
    return os.getpid()


def _loads_locally(data: dict) -> bool:
    """The data loads without a download (CIFAR-10 not yet in Keras's cache would download:
    every worker at once, into the same files)."""
    from experiments.data import cifar10_cached

    return data.get("source") != "cifar10" or cifar10_cached()


def _warm_keras() -> None:
    """Start TensorFlow's runtime and run Keras's first build, compile and data pipeline once
    (the first of each costs more than any later one), then forget the model."""
    import keras
    import numpy as np
    import tensorflow as tf

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    for _ in tf.data.Dataset.from_tensor_slices(np.zeros((2, 1), "float32")).batch(2):
        pass
    keras.backend.clear_session(free_memory=False)


class ProcessLauncherImpl:
    def __init__(
        self, n_jobs: int = 1, max_trials_per_process: int | None = None, max_worker_growth_mb: float | None = 400
    ) -> None:
        if n_jobs < 1:
            raise ValueError(f"hydra.launcher.n_jobs: received {n_jobs}; allowed: an integer >= 1")
        if max_trials_per_process is not None and max_trials_per_process < 1:
            raise ValueError(
                f"hydra.launcher.max_trials_per_process: received {max_trials_per_process}; "
                "allowed: null or an integer >= 1"
            )
        if max_worker_growth_mb is not None and not max_worker_growth_mb > 0:
            raise ValueError(
                f"hydra.launcher.max_worker_growth_mb: received {max_worker_growth_mb}; allowed: null or a number > 0"
            )
        self.n_jobs, self.max_trials, self.max_growth = n_jobs, max_trials_per_process, max_worker_growth_mb
        self.prefetch = 0  # extra workers that set up the next jobs (see ``set_prefetch``)
        self.config = self.task_function = self.hydra_context = None
        self._pool: ProcessPoolExecutor | None = None
        self._first_rss: dict[int, float] = {}  # worker pid -> RSS after its first trial
        self._slots = None  # the current pool's training slots (with prefetch)
        self._grown: list[str] = []  # workers over the growth limit since the last recycling
        self._broken = False  # a worker died: the pool must be replaced
        self._configured = False  # Hydra's logging and the sweep directory are set up
        self.recycled = 0  # times the workers were replaced for growing (for logs and tests)
        self._retired: list = []  # pools shut down without waiting (see close)
        self._placement: list[str] | None = None  # device slots the workers claim (see place)
        self._jobs: set[Future] = set()  # the pool's futures of the jobs not done yet

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def place(self, slots: list[str]) -> None:
        """Put the workers on devices: one per slot (``experiments.devices``), no
        prefetching (a worker set up ahead would hold a device it does not train on)."""
        self._placement, self.n_jobs, self.prefetch = list(slots), len(slots), 0

    def set_prefetch(self, prefetch: int) -> None:
        """Run ``prefetch`` more workers than training slots, so that the next jobs are set up
        while ``n_jobs`` others train (takes effect for the next pool of workers)."""
        self.prefetch = max(0, int(prefetch))

    def preload(self) -> None:
        """Start the fork server's imports (seconds: TensorFlow) now, without any worker: if
        the sweep stops at its start (a service unreachable), nothing has to be stopped."""
        worker_context()

    def warm_up(
        self, tracking_uri: str | None = None, storage_url: str | None = None, data: dict | None = None
    ) -> None:
        """Start the workers now, so their start-up (see ``_warm_up``) overlaps the sweeper's
        own set-up (study, tracking store, first sample and model check). ``tracking_uri``,
        ``storage_url`` and ``data``: what the jobs will open and load, done once per worker ahead."""
        pool = self._executor()

        def start() -> None:
            # Starting a worker waits until the fork server has imported everything: seconds
            # the sweeper spends on its own set-up meanwhile, so start them from a thread.
            for _ in range(self.n_jobs + self.prefetch):
                pool.submit(_warm_up, tracking_uri, storage_url, data)

        threading.Thread(target=start, name="start-workers", daemon=True).start()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = worker_context()
            # Without prefetching every worker trains as soon as it has a job: no gate needed.
            slots = self._slots = context.BoundedSemaphore(self.n_jobs) if self.prefetch else None
            # Trials that gave a slot back, newest last: enough for every job in flight.
            releases = context.Array("i", 1 + self.n_jobs + self.prefetch + 1) if self.prefetch else None
            placement = None
            if self._placement:  # each worker claims one device slot for its life
                placement = (list(self._placement), context.Array("i", len(self._placement)), context.Lock())
            self._pool = ProcessPoolExecutor(
                max_workers=self.n_jobs + self.prefetch,
                mp_context=context,
                max_tasks_per_child=self.max_trials,  # None: no count limit
                initializer=_init_worker,
                initargs=(slots, releases, context.Lock(), placement),
            )
            self._broken = False
        return self._pool

    def submit(self, overrides: Sequence[str], job_idx: int, task_function=None, composed=None) -> Future:
        """Start job ``job_idx``; the future gives its ``JobReturn`` (FAILED if the job raised
        or its worker died). Call ``recycle`` when ``recycle_due()`` and no job is running.
        ``task_function``: this job's own (default: the one given at set-up); ``composed``: its
        config if the caller composed it already (``load_sweep_config(overrides)``: ~0.1 s saved)."""
        if not self._configured:
            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            self._configured = True
        if self._broken:  # a worker died: every job on that pool failed; start fresh workers
            self.close()
        log.info("#%d : %s", job_idx, " ".join(filter_overrides(overrides)))
        payload = cloudpickle.dumps(
            (
                job_idx,
                list(overrides),
                self.hydra_context,
                self.config,
                task_function or self.task_function,
                Singleton.get_state(),
                composed,
            )
        )
        outcome: Future = Future()

        def finished(job: Future) -> None:  # runs in the pool's management thread
            try:
                ret, pid, rss = job.result()
                first = self._first_rss.setdefault(pid, rss)
                if self.max_growth is not None and rss - first > self.max_growth:
                    self._grown.append(f"worker {pid}: {first:.0f} -> {rss:.0f} MB")
            except BrokenProcessPool as err:  # the worker died (e.g. killed, out of memory)
                self._broken = True
                ret = _failed(overrides, RuntimeError(f"worker process died: {err}"))
            except BaseException as err:  # noqa: BLE001 - report, don't crash the sweep
                self._broken = True  # unknown whether the worker is sound: start fresh ones
                ret = _failed(overrides, err)
            outcome.set_result(ret)

        try:
            job = self._executor().submit(_execute, payload)
        except BrokenProcessPool:  # a worker died since the last check: replace them once
            self.close()
            job = self._executor().submit(_execute, payload)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        job.add_done_callback(finished)
        return outcome

    def recycle_due(self) -> bool:
        """A worker grew past the limit or died: replace the workers once no job runs."""
        return bool(self._grown) or self._broken

    def recycle(self) -> None:
        """Replace the workers with fresh ones (call between jobs)."""
        if self._grown:
            log.info("replacing worker processes (grew > %s MB): %s", self.max_growth, "; ".join(self._grown))
            self.recycled += 1
        self.close()

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's launcher API: run a batch of jobs and wait for all of them."""
        futures = [self.submit(overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)]
        wait(futures)
        if self.recycle_due():  # between batches no job runs
            self.recycle()
        return [f.result() for f in futures]

    def close(self, *, kill: bool = False, wait: bool = True) -> None:
        """Shut the workers down; ``kill`` ends running jobs too (the sweep was stopped).
        ``wait=False``: return while they exit (the process waits for them when it ends)."""
        if self._pool is not None:
            if kill:
                processes = list(getattr(self._pool, "_processes", {}).values())
                self._stop_jobs(processes)
                for process in processes:
                    process.kill()
            self._pool.shutdown(wait=wait, cancel_futures=True)
            if not wait:
                # Workers may still be starting: each rebuilds the pool's semaphores from their
                # names, which the parent unlinks once the pool object is collected (a
                # FileNotFoundError traceback from the fork server). Keep it while we live.
                self._retired.append(self._pool)
            self._pool = None
        self._slots = None
        self._first_rss.clear()
        self._grown.clear()
        self._broken = False

    def _stop_jobs(self, processes) -> None:
        """Ask the workers to stop (SIGTERM): a training job stops at its next batch boundary
        and writes a stop checkpoint, others at once; wait for them up to ``STOP_GRACE_S``."""
        running = [job for job in list(self._jobs) if job.running()]
        if not running:
            return
        for process in processes:
            with contextlib.suppress(ProcessLookupError, AttributeError, TypeError):
                os.kill(process.pid, signal.SIGTERM)
        done, left = wait(running, timeout=STOP_GRACE_S)
        if left:
            log.warning("%d job(s) still running %d s after being asked to stop: killed", len(left), STOP_GRACE_S)


def _failed(overrides: Sequence[str], err: BaseException) -> JobReturn:
    from experiments.sweep.internals import failed_job

    return failed_job(JobReturn(overrides=list(overrides)), err)
