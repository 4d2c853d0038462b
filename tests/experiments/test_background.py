"""experiments.background: ordered writes from a thread, held between epochs; the sweep job's
intermediate values written that way to a real SQLite study."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from experiments import background
from experiments.background import HoldWritesBetweenEpochs, OrderedWriter
from experiments.sweep.job import OptunaPruning


def test_writes_keep_their_order_and_flush_waits_for_them():
    done: list[int] = []
    writer = OrderedWriter("test")
    for i in range(50):
        writer.submit(lambda i=i: (time.sleep(0.001 * (i % 3)), done.append(i)))
    writer.flush()
    assert done == list(range(50))
    writer.close()
    assert not writer._thread.is_alive()


def test_a_failed_write_is_raised_on_the_callers_thread_and_drops_the_rest():
    done: list[int] = []
    writer = OrderedWriter("test")
    writer.submit(done.append, 1)
    writer.submit(lambda: 1 / 0)
    writer.submit(done.append, 3)  # after the failure: dropped
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    with pytest.raises(ZeroDivisionError):  # and the next write fails at once
        writer.submit(done.append, 4)
    with pytest.raises(ZeroDivisionError):
        writer.close()
    assert done == [1]


def test_writes_wait_while_the_training_thread_is_between_epochs():
    ran = threading.Event()
    gate = HoldWritesBetweenEpochs()
    writer = OrderedWriter("test")
    try:
        gate.on_epoch_end(0)
        writer.submit(ran.set)
        assert not ran.wait(0.2)  # held: the other callbacks run first
        gate.on_epoch_begin(1)
        assert ran.wait(5)
        # A hold is bounded: a writer never waits for long on a callback that takes its time.
        gate.on_epoch_end(1)
        started = time.monotonic()
        writer.submit(lambda: None)
        writer._queue.put((lambda: None, ()))  # (flush would release the hold itself)
        while writer._finished < 2:
            time.sleep(0.01)
        assert background.MAX_HOLD_S * 0.8 <= time.monotonic() - started < 5
    finally:
        background.release_writes()
        writer.close()


class _Model:  # what the pruning callback uses of its model
    stop_training = False


def _pruning(tmp_path, pruner):
    """A trial of a real SQLite study, and its pruning callback writing through a writer, as
    a sweep's job sets them up (training begun)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db", direction="maximize", pruner=pruner)
    trial = study.ask()
    writer = OrderedWriter("test")
    callback = OptunaPruning(trial, "val/accuracy", writer=writer)
    callback.set_model(_Model())
    callback.on_train_begin()
    return study, trial, writer, callback


def test_reports_reach_the_study_and_the_pruner_sees_them_at_once(tmp_path):
    study, trial, writer, callback = _pruning(tmp_path, optuna.pruners.ThresholdPruner(lower=0.5))
    background.hold_writes()  # as between epochs: the write waits, the pruner must not
    try:
        callback.on_epoch_end(0, {"val_accuracy": 0.9})
        callback.on_epoch_end(1, {"val_accuracy": 0.8})
    finally:
        background.release_writes()
    callback.on_train_end()  # flushed
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {1: 0.9, 2: 0.8}
    writer.close()


def test_a_pruned_trial_has_its_last_value_in_the_study_when_it_stops(tmp_path):
    # The sweeper tells a pruned trial once its job returns; Optuna then takes the last
    # reported value from the study, so it must be written by then.
    study, trial, writer, callback = _pruning(tmp_path, optuna.pruners.ThresholdPruner(lower=0.5))
    model = callback.model
    callback.on_epoch_end(0, {"val_accuracy": 0.9})
    background.hold_writes()
    try:
        callback.on_epoch_end(1, {"val_accuracy": 0.1})
        assert model.stop_training  # fit stops after this epoch's callbacks...
    finally:
        background.release_writes()
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        callback.on_train_end()  # ...and the trial ends pruned when it does
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {1: 0.9, 2: 0.1}
    writer.close()
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].value == pytest.approx(0.1)


def test_a_refused_report_fails_training(tmp_path):
    study, trial, writer, callback = _pruning(tmp_path, optuna.pruners.NopPruner())
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # e.g. failed as stale by another worker
    callback.on_epoch_end(0, {"val_accuracy": 0.9})
    with pytest.raises(RuntimeError, match="finished"):
        callback.on_train_end()


def test_inline_writes_run_at_once_on_the_callers_thread(monkeypatch):
    # RESNET_BLOCKS_WRITES=inline, the paired benchmark's other side.
    import threading

    from experiments import background

    monkeypatch.setattr(background, "INLINE", True)
    writer = background.OrderedWriter("inline")
    threads = []
    writer.submit(lambda: threads.append(threading.current_thread()))
    assert threads == [threading.current_thread()]
    writer.close()
