"""Keras training of one configuration: optimizer, schedule, callbacks, fit, evaluate."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras

from experiments import checkpoints
from experiments.background import HoldWritesBetweenEpochs, OrderedWriter, release_writes
from experiments.cli import RunFailure
from experiments.keras_internals import create_training_variables
from experiments.metrics import EPOCH_METRICS, best, direction, keras_logs_to_metrics, keras_name
from experiments.preprocessing import with_preprocessing
from experiments.signals import raise_pending, training
from experiments.trainer_config import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES, validate_trainer_config  # noqa: F401
from resnet_blocks import FusedSGD, ModelCost, ResNetSpec, build_resnet, model_cost

log = logging.getLogger(__name__)


class NonFiniteLossError(RunFailure):
    """Training produced a NaN or infinite loss."""


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    best: dict[str, float]
    test: dict[str, float]
    cost: ModelCost
    images_per_s: float
    wall_time_s: float
    train_time_s: float
    eval_time_s: float
    epochs_run: int  # epochs trained in all, by this attempt and those it resumed
    epochs_resumed: int = 0  # of which trained by an earlier attempt (restored from its checkpoint)
    steps_trained: int = 0  # batches trained by this attempt
    model: Any = field(repr=False, default=None)  # the network behind its preprocessing layers
    # The epoch (1-based) whose weights ``model`` holds: the best by ``selected_by``, restored
    # when training ends, so the model that is saved, evaluated and shipped is the one whose
    # validation metrics are reported. ``at_epoch``: every metric of that epoch.
    epoch: int = 0
    selected_by: str = "val/accuracy"
    at_epoch: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # seconds: build_compile_s, fit_s
    checkpoints: Any = field(repr=False, default=None)  # removed by the caller once the run is recorded

    def drop_checkpoints(self) -> None:
        """The run is recorded: its checkpoints (``trainer.checkpoint_dir``) are of no more use."""
        if self.checkpoints is not None:
            self.checkpoints.remove()


def _schedule(t, steps_per_epoch: int):
    from experiments.schedules import LinearWarmup

    total = max(1, t.epochs * steps_per_epoch)
    warmup = t.warmup_epochs * steps_per_epoch
    lr = t.learning_rate
    if t.schedule == "constant":
        base: Any = lr
    elif t.schedule == "cosine":
        base = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total - warmup))
    else:
        bounds = sorted({max(1, int(m * total) - warmup) for m in t.step_milestones})
        base = keras.optimizers.schedules.PiecewiseConstantDecay(
            bounds, [lr * t.step_gamma**i for i in range(len(bounds) + 1)]
        )
    return LinearWarmup(base, warmup_steps=warmup, target=lr) if warmup else base


def make_optimizer(t, steps_per_epoch: int):
    lr = _schedule(t, steps_per_epoch)
    if t.optimizer == "sgd":
        # Keras's SGD with fused per-variable updates: same weights, a shorter first (traced) step.
        opt = FusedSGD(lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay or None)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=t.weight_decay)
    # No weight decay on batch-norm scales/offsets or biases (standard ResNet practice).
    opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def selection_metric(cfg) -> str:
    """The metric that picks the epoch whose weights a run keeps: the first objective that is
    an epoch metric (what a sweep ranks by), else ``trainer.monitor``."""
    return next((o for o in cfg.get("objective") or () if o in EPOCH_METRICS), cfg.trainer.monitor)


class KeepBestEpoch(keras.callbacks.Callback):
    """Keeps a copy of the weights (batch-norm statistics included) of the epoch with the best
    ``metric`` and puts them back when training ends, however it ends (the last epoch, an early
    stop). The validation metrics of that epoch were measured on exactly these weights.

    Restoring the best epoch, rather than scoring the last one, is what users of Keras's
    ``EarlyStopping(restore_best_weights=True)`` and Keras Tuner expect, and it keeps a trial's
    value (its best epoch, which pruning and ranking already use) the value of its model."""

    def __init__(self, metric: str):
        super().__init__()
        self.metric, self.key = metric, keras_name(metric)
        self.maximize = direction(metric) == "maximize"
        self.best: float | None = None
        self.epoch = -1  # 0-based, -1 before any finite value
        self.last = -1
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        self.last = epoch
        value = (logs or {}).get(self.key)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best, self.epoch = value, epoch
            # (The last scheduled epoch's weights stay in the model: no copy needed.)
            last_scheduled = epoch + 1 >= (self.params or {}).get("epochs", float("inf"))
            self._weights = None if last_scheduled else self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None and self.epoch != self.last:
            self.model.set_weights(self._weights)
        self._weights = None

    def best_weights(self):
        """The copy of the best epoch's weights (None: the model holds them, or none yet)."""
        return self._weights

    def resume(self, ckpt, weights) -> None:
        """Carry on from a checkpoint: its best value and epoch, and (``weights``) the best
        epoch's weights where that is not the checkpoint's own epoch."""
        self.best, self.epoch, self.last = ckpt.best_value, ckpt.best_epoch, ckpt.epochs - 1
        self._weights = weights


def _callbacks(t, extra: Sequence[Any]):
    timing = EpochTiming()
    for cb in extra:  # callbacks that report per-epoch timing (the MLflow logger) get it here
        if hasattr(cb, "timing"):
            cb.timing = timing
    # Between epochs, store writes queued by the callbacks wait for the next epoch's steps.
    guard = FiniteLossGuard()
    cbs: list[Any] = [InterruptAtBatchEnd(), timing, HoldWritesBetweenEpochs(), guard]
    if t.early_stopping_patience:
        cbs.append(ResumableEarlyStopping(t.monitor, t.early_stopping_patience, t.monitor.endswith("accuracy")))
    return timing, guard, cbs + list(extra)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's ``EarlyStopping`` that goes on counting where a resumed run left off.

    Keras starts it over at each ``fit``: a run resumed from a checkpoint would forget how many
    epochs had passed without improvement and train up to ``patience`` epochs more than an
    uninterrupted run. Its best value and epochs since are replayed from the checkpoint's
    history instead (``on_resume``), as Keras would have counted them (min_delta 0)."""

    def __init__(self, metric: str, patience: int, maximize: bool):
        super().__init__(monitor=keras_name(metric), patience=patience, mode="max" if maximize else "min")
        self.metric, self.maximize = metric, maximize
        self._earlier: list[float | None] = []

    def on_resume(self, history: Sequence[dict[str, float]]) -> None:
        self._earlier = [epoch.get(self.metric) for epoch in history]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for epoch, value in enumerate(self._earlier):
            if value is None:
                continue
            self.wait += 1
            if self.best is None or (value > self.best if self.maximize else value < self.best):
                self.best, self.best_epoch, self.wait = value, epoch, 0


class InterruptAtBatchEnd(keras.callbacks.Callback):
    """Raises an interrupt (Ctrl-C, SIGTERM) that a garbage-collector callback dropped, at the
    next batch boundary (:func:`experiments.signals.raise_pending`)."""

    def on_train_batch_end(self, batch, logs=None):
        raise_pending()

    def on_test_batch_end(self, batch, logs=None):
        raise_pending()


class EpochTiming(keras.callbacks.Callback):
    """Seconds spent in training steps and in validation, per epoch (for throughput)."""

    def __init__(self):
        super().__init__()
        self.train_s: list[float] = []
        self.eval_s: list[float] = []
        self.phases: dict[str, float] = {}  # set by train(): build_compile_s before fit starts
        self._t0 = self._v0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._v0 = 0.0

    def on_test_begin(self, logs=None):
        if self._t0 and not self._v0:  # validation inside fit, not a separate evaluate()
            self._v0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        v0 = self._v0 or end
        self.train_s.append(v0 - self._t0)
        self.eval_s.append(end - v0)


class FiniteLossGuard(keras.callbacks.Callback):
    """Stops training with :class:`NonFiniteLossError` when an epoch's loss, or any weight
    (batch-norm moving statistics included), is NaN or infinite.

    Checked once per epoch: a per-batch check would force a device sync on every step. The
    weights are checked too because fused kernels (batch norm + ReLU, fused by TensorFlow's
    graph optimizer) turn NaN activations into zeros, so a diverged network can keep a finite
    loss while its statistics are already NaN. The loss is checked when the epoch ends. The
    weights are read by a thread while the next epoch trains (3.5 ms of every epoch's end
    otherwise: ~100 variables of a small ResNet); a non-finite weight (which stays so) stops
    training at a later epoch's end, and when training ends at the latest.
    """

    def __init__(self):
        super().__init__()
        self._checks: OrderedWriter | None = None
        self._reads: list = []

    def on_train_begin(self, logs=None):
        self.close(quiet=True)  # (left over from an interrupted fit)
        self._checks = OrderedWriter("finite-weights")
        self._checks.submit(self._make_readers)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"training diverged: non-finite training loss ({float(loss)}) at epoch {epoch + 1}"
            )
        if self._checks is not None:
            self._checks.submit(self._check_weights, epoch + 1)  # (raises what an earlier check found)

    def on_train_end(self, logs=None):
        self.close()  # waits for the last check

    def close(self, *, quiet: bool = False) -> None:
        """Wait for the checks queued so far and stop the thread; raise what they found
        (``quiet``: log it instead, when training already stops for another reason)."""
        checks, self._checks = self._checks, None
        if checks is None:
            return
        try:
            checks.close()
        except Exception as err:
            if not quiet:
                raise
            log.warning("weights check: %s", err)

    def _make_readers(self) -> None:
        self._reads = [(w.path, _value_reader(w)) for w in self.model.weights]

    def _check_weights(self, epoch: int) -> None:
        import numpy as np

        for path, read in self._reads:
            if not np.isfinite(read()).all():
                raise NonFiniteLossError(f"training diverged: non-finite values in weight {path!r} after epoch {epoch}")


class ReleaseSlotAfterLastEpoch(keras.callbacks.Callback):
    """Gives a sweep's training slot back once the last epoch's callbacks have run (``fit``
    ends there, or at an early stop), not when ``fit`` returns: what ``fit`` does after that
    (freeing its data iterators, which waits for tf.data's autotuning thread: at times 0.2-0.3
    s, measured in benchmarks/sweep_overhead.py) no longer holds up the next trial. A pruned or
    failed trial gives it back as its exception leaves the slot's ``with`` block."""

    def __init__(self, slot):
        super().__init__()
        self.slot = slot

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.params.get("epochs", float("inf")) or self.model.stop_training:
            self.slot.release()


def _value_reader(weight):
    """A function that reads ``weight``'s value into NumPy. A plain TensorFlow variable is
    read by one ``ReadVariableOp`` call: 3x faster than ``.numpy()`` (0.7 vs 2.1 ms for the
    ~100 variables of a small ResNet, every epoch); distributed variables keep ``.numpy()``."""
    import tensorflow as tf
    from tensorflow.python.ops.resource_variable_ops import ResourceVariable

    v = weight.value
    if type(v) is ResourceVariable:
        handle, dtype = v.handle, v.dtype
        return lambda: tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype).numpy()
    return v.numpy


@dataclass
class BuiltModel:
    """A model built as :func:`train` trains it, with the distribution strategy it lives in."""

    model: Any
    strategy: Any
    build_s: float


def build_model(cfg, spec: ResNetSpec) -> BuiltModel:
    """Build ``spec`` right after seeding every RNG with ``trainer.seed``, under
    ``trainer.mixed_precision``, in the scope of the ``trainer.distribute`` strategy."""
    import tensorflow as tf

    t = cfg.trainer
    t0 = time.perf_counter()
    with _seeded_precision(t):
        # One trial on several GPUs: variables are mirrored, each batch is split across them.
        strategy = tf.distribute.MirroredStrategy() if t.distribute == "mirrored" else tf.distribute.get_strategy()
        with strategy.scope():
            model = build_resnet(spec, name=str(cfg.model.name))
    return BuiltModel(model, strategy, time.perf_counter() - t0)


@contextlib.contextmanager
def _seeded_precision(t):
    """Every RNG seeded with ``trainer.seed`` (and op determinism, if asked), and the global
    precision policy ``trainer.mixed_precision`` for the block (the previous one after it)."""
    import tensorflow as tf

    keras.utils.set_random_seed(t.seed)
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(t.mixed_precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def train(
    cfg, model: ResNetSpec | BuiltModel, data, *, callbacks: Sequence[Any] = (), slot=None, on_built=None
) -> TrainResult:
    """Build ``model`` (a spec), fit it on ``data`` as ``cfg.trainer`` says and evaluate it.

    ``on_built(model, cost)``: called once the model is compiled, before training (a sweep's
    job logs its summary then, while another trial may still be training).

    ``slot``: a context manager entered right before fitting (a sweep's worker waits there
    for a training slot, its model already built and compiled).

    ``model`` may also be :func:`build_model`'s result, when the caller built it (a sweep's
    job builds it before anything is recorded, to vet it)."""
    import tensorflow as tf

    t = cfg.trainer
    started = time.perf_counter()
    precision = contextlib.ExitStack()  # (closed last, in the finally below)
    precision.enter_context(_seeded_precision(t))
    phases: dict[str, float] = {}
    guard = saved = epoch_checkpoints = None
    try:
        t0 = time.perf_counter()
        built = model if isinstance(model, BuiltModel) else None
        prebuilt_s = built.build_s if built is not None else 0.0
        if built is None:
            built = build_model(cfg, model)
        network, strategy = built.model, built.strategy
        if data.preprocessing is not None:  # the model takes raw pixels (what it will be shipped with)
            with strategy.scope():
                model = with_preprocessing(network, data.preprocessing)
        else:
            model = network
        steps = t.steps_per_epoch or math.ceil(data.num_train / t.batch_size)
        if t.label_smoothing > 0:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
            one_hot = lambda x, y: (x, tf.one_hot(y, data.num_classes))  # noqa: E731
            train_ds, val_ds = data.train.map(one_hot), data.val.map(one_hot)
            test_ds = data.test.map(one_hot) if data.test is not None else None
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
            train_ds, val_ds, test_ds = data.train, data.val, data.test
        if not t.evaluate_test:
            test_ds = None
        with strategy.scope():
            model.compile(
                optimizer=make_optimizer(t, steps), loss=loss, metrics=["accuracy"], jit_compile=t.jit_compile
            )
            # Create the optimizer's slot variables now, eagerly. Keras otherwise creates them
            # inside the first traced train step, where each costs far more (lifted out of the
            # graph one by one): about 0.6 s of a small ResNet's first step (benchmarks/sweep_overhead.py).
            model.optimizer.build(model.trainable_variables)
            create_training_variables(model, train_ds)
        timing, guard, cbs = _callbacks(t, callbacks)
        keep = KeepBestEpoch(selection_metric(cfg))
        cbs.insert(
            1, keep
        )  # after the epoch timer (its copy is not training time); the weights are back before the others' train end
        resumed = None
        if t.checkpoint_dir:
            saved = checkpoints.CheckpointDir(t.checkpoint_dir, run_fingerprint(cfg))
            resumed = _resume(saved, model, keep, cbs)
            epoch_checkpoints = checkpoints.EpochCheckpoints(
                saved, keep, resumed.history if resumed else [], lambda logs: keras_logs_to_metrics(logs, model), steps
            )
            cbs.insert(2, epoch_checkpoints)
        if slot is not None and hasattr(slot, "release") and test_ds is None:
            cbs.append(ReleaseSlotAfterLastEpoch(slot))  # last: after every other epoch-end callback
        phases["build_compile_s"] = time.perf_counter() - t0 + prebuilt_s
        cost = model_cost(network)
        if on_built is not None:
            on_built(network, cost)
        timing.phases = phases
        if t.steps_per_epoch:
            train_ds = train_ds.repeat()
        plan = _fits(train_ds, resumed, t, steps)
        t0 = time.perf_counter()
        with slot if slot is not None else contextlib.nullcontext():
            if slot is not None:
                phases["slot_wait_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            histories = []
            with training():
                for i, fit in enumerate(plan):
                    histories.append(
                        model.fit(
                            fit.data,
                            validation_data=val_ds,
                            epochs=fit.epochs,
                            initial_epoch=fit.initial_epoch,
                            steps_per_epoch=fit.steps_per_epoch,
                            callbacks=_spanning(cbs, i, len(plan), t.epochs, fit.first_callbacks),
                            verbose=t.verbose,
                            shuffle=False,  # the pipeline shuffles; Keras warns if asked to
                        )
                    )
                    if model.stop_training:  # (an early stop in a resumed epoch)
                        break
            phases["fit_s"] = time.perf_counter() - t0
            steps_trained = int(keras.ops.convert_to_numpy(model.optimizer.iterations)) - (
                resumed.steps if resumed else 0
            )
            test = {}
            if test_ds is not None:
                values = model.evaluate(test_ds, verbose=0, return_dict=True)
                test = {f"test/{k}": float(v) for k, v in values.items()}
        hist: dict[str, list[float]] = {}
        for metrics in resumed.history if resumed else ():  # the epochs an earlier attempt trained
            for k, v in metrics.items():
                if k != "lr":
                    hist.setdefault(k, []).append(v)
        for history in histories:
            for i in range(len(history.epoch)):
                for k, v in keras_logs_to_metrics({k: vals[i] for k, vals in history.history.items()}).items():
                    hist.setdefault(k, []).append(v)
    # Ctrl-C, SIGTERM, and submitit's preemption or time-out (its SIGUSR2 handler requeues the
    # job by raising SystemExit wherever training is): the checkpoints stay for the next attempt.
    except (KeyboardInterrupt, SystemExit):
        if epoch_checkpoints is not None:
            epoch_checkpoints.save_stopped()  # (mid-epoch: where it stopped; else the last epoch's serves)
        raise
    except BaseException:  # pruned, diverged, failed: the run is over, its checkpoints of no use
        if epoch_checkpoints is not None and not t.keep_checkpoints:
            with contextlib.suppress(Exception):
                epoch_checkpoints.close()
            saved.remove()
        raise
    finally:
        release_writes()  # fit may have stopped between epochs (pruned, diverged, interrupted)
        if guard is not None:
            guard.close(quiet=True)  # (after an exception: its thread stops; what it found is logged)
        precision.close()
    # Throughput from steady-state epochs: the first one includes tracing the graph.
    images = (t.steps_per_epoch * t.batch_size) if t.steps_per_epoch else data.num_train
    steady = timing.train_s[1:] or timing.train_s
    ips = images / (sum(steady) / len(steady)) if steady and sum(steady) > 0 else float("nan")
    epochs_run = sum(len(h.epoch) for h in histories) + (resumed.epochs if resumed else 0)
    chosen = keep.epoch if keep.epoch >= 0 else epochs_run - 1
    return TrainResult(
        epoch=chosen + 1,
        selected_by=keep.metric,
        at_epoch={k: v[chosen] for k, v in hist.items() if len(v) > chosen >= 0},
        history=hist,
        best={k: best(v, k) for k, v in hist.items() if not k.startswith("perf/")},
        test=test,
        cost=cost,
        images_per_s=ips,
        wall_time_s=time.perf_counter() - started - phases.get("slot_wait_s", 0.0),
        train_time_s=sum(timing.train_s),
        eval_time_s=sum(timing.eval_s),
        epochs_run=epochs_run,
        epochs_resumed=resumed.epochs if resumed else 0,
        steps_trained=steps_trained,
        model=model,
        phases=phases,
        checkpoints=saved if not t.keep_checkpoints else None,
    )


def run_fingerprint(cfg) -> str:
    """What a checkpoint must have been written for: the model, the data and the trainer
    settings that shape training (not where checkpoints go, verbosity, or the test evaluation)."""
    from omegaconf import OmegaConf

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in ("checkpoint_dir", "keep_checkpoints", "verbose", "evaluate_test"):
        trainer.pop(key, None)
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "data") if k in cfg}
    return checkpoints.fingerprint({**parts, "trainer": trainer})


def _resume(saved, model, keep: KeepBestEpoch, callbacks: Sequence[Any]):
    """Restore the newest valid checkpoint in ``saved`` into ``model`` and ``keep``; tell the
    callbacks that replay earlier epochs (``on_resume(history)``: the tracker's logger, early stopping)."""
    resumed = saved.latest()
    if resumed is None:
        return None
    try:
        checkpoints.restore(model, resumed)
    except ValueError as err:
        log.warning("checkpoint ignored: %s", err)
        return None
    own = resumed.arrays[checkpoints.ARRAYS][: len(model.weights)]
    keep.resume(resumed, resumed.arrays.get(checkpoints.BEST, own))
    log.info("resumed from %s: %d epoch(s) trained before, %d step(s)", resumed.path, resumed.epochs, resumed.steps)
    for cb in callbacks:
        if hasattr(cb, "on_resume"):
            cb.on_resume(resumed.history)
    return resumed


@dataclass
class _Fit:
    data: Any
    initial_epoch: int
    epochs: int
    steps_per_epoch: int | None
    first_callbacks: tuple = ()  # this fit's own, before the run's (a resumed epoch's metrics)


def _fits(train_ds, resumed, t, steps: int) -> list[_Fit]:
    """The ``fit`` calls that train what remains: one, or, resuming from a stop checkpoint in
    epoch e after b batches, two: the rest of epoch e (its data past those b batches, its
    training metrics' totals restored), then epochs e+1 on. Keras's ``fit`` cannot start
    inside an epoch; its callbacks see the two as one (:func:`_spanning`)."""
    start = resumed.epochs if resumed else 0
    spe = t.steps_per_epoch
    if resumed is None or not resumed.batch:
        return [_Fit(_past_trained_epochs(train_ds, resumed, spe), start, t.epochs, spe)]
    b = resumed.batch
    metrics = resumed.arrays.get(checkpoints.METRICS)
    first = (_RestoreMetricTotals(metrics),) if metrics is not None else ()
    if spe:  # one repeated stream: skip what was trained
        rest = _Fit(train_ds.skip(resumed.steps), start, start + 1, spe - b, first)
        later = _Fit(train_ds.skip(resumed.steps + spe - b), start + 1, t.epochs, spe)
    else:
        data = _past_trained_epochs(train_ds, resumed, None)
        rest = _Fit(data.skip(b), start, start + 1, None, first)
        later = _Fit(data, start + 1, t.epochs, None)
    return [rest] + ([later] if start + 1 < t.epochs else [])


class _RestoreMetricTotals(keras.callbacks.Callback):
    """At the resumed epoch's start (after ``fit`` reset the metrics): the totals of its
    batches trained before the stop."""

    def __init__(self, arrays):
        super().__init__()
        self.arrays = arrays

    def on_epoch_begin(self, epoch, logs=None):
        checkpoints.restore_metrics(self.model, self.arrays)


def _spanning(cbs: list, i: int, n: int, epochs: int, first: Sequence[Any] = ()) -> list:
    """Callbacks for fit ``i`` of ``n`` that train one run: each sees one training, begun in
    the first fit and ended in the last, of ``epochs`` epochs."""
    if n == 1:
        return [*first, *cbs]
    return [*first, *(_Spanned(cb, begins=i == 0, ends=i == n - 1, epochs=epochs) for cb in cbs)]


class _Spanned(keras.callbacks.Callback):
    """``callback`` inside one of several ``fit`` calls of one run: its training begins and
    ends once, and its ``params["epochs"]`` is the run's."""

    def __init__(self, callback, *, begins: bool, ends: bool, epochs: int):
        super().__init__()
        self.callback, self.begins, self.ends, self.epochs = callback, begins, ends, epochs

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params({**params, "epochs": self.epochs})

    def on_train_begin(self, logs=None):
        if self.begins:
            self.callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self.ends:
            self.callback.on_train_end(logs)

    def __getattribute__(self, name):
        # Every other hook (epochs, batches, validation) goes straight to the callback.
        if name.startswith("on_") and name not in ("on_train_begin", "on_train_end"):
            return getattr(object.__getattribute__(self, "callback"), name)
        return object.__getattribute__(self, name)


def _past_trained_epochs(train_ds, resumed, steps_per_epoch):
    """``train_ds`` advanced past what was trained before the checkpoint: its shuffle and
    augmentation draws depend on how many times it was iterated (``fit`` iterates it
    :data:`~experiments.keras_internals.FIT_ITERATIONS_PER_EPOCH` times per epoch), or, repeated
    with ``steps_per_epoch``, on how many batches were taken."""
    from experiments.keras_internals import FIT_ITERATIONS_PER_EPOCH

    if resumed is None:
        return train_ds
    if steps_per_epoch:
        return train_ds.skip(resumed.steps)
    for _ in range(resumed.epochs * FIT_ITERATIONS_PER_EPOCH):
        iterator = iter(train_ds)  # (creating it draws the seeds; nothing is trained)
        del iterator
    return train_ds


def measure_latency_ms(model, input_shape, *, repeats: int = 20) -> float:
    """Median single-image inference latency on this machine, in milliseconds."""
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.zeros((1, *input_shape), dtype="float32"))
    fn = tf.function(lambda v: model(v, training=False))
    fn(x)  # trace
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x).numpy()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))
