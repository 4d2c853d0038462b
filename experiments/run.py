"""``python -m experiments.run [overrides]``: train one configuration, tracked in MLflow.

Everything is validated before any work starts (config types by Hydra's schema; values by
the spec, data and trainer checks; the tracking store by a probe), so a bad override exits
with one clear line and creates no MLflow run. The task returns the configured objective(s)
for sweepers.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from experiments.cli import user_errors
from experiments.code_tags import current_hook_tags, plugin_tags, refuse_targets
from experiments.config import model_spec
from experiments.data import data_signature, load_data, validate_data_config
from experiments.memory import check_training_memory
from experiments.metrics import COST_OBJECTIVES, EPOCH_METRICS
from experiments.trainer_config import validate_trainer_config
from resnet_blocks import ModelCost, ResNetSpec, SpecError, model_cost
from resnet_blocks.spec_cost import spec_cost

if TYPE_CHECKING:
    from experiments.train import BuiltModel

log = logging.getLogger("experiments.run")


@dataclass
class RunPlan:
    """What a run will do, worked out (and validated) before anything is trained or logged."""

    spec: ResNetSpec
    objectives: list[str]
    cost: ModelCost | None  # None when the dry build was skipped


def arch_label(model: DictConfig) -> str:
    """A short architecture label: ``bottleneck d3-4-6-3 w64 s1222``."""
    blocks = model.stage_blocks if model.get("stage_blocks") else [model.block]
    depths = "-".join(str(d) for d in model.depths)
    strides = "".join(str(s) for s in model.strides)
    width = model.widths[0]
    mult = f"x{model.width_multiplier:g}" if model.width_multiplier != 1 else ""
    last = "-last" if model.get("stride_position") == "last" else ""
    return f"{'+'.join(dict.fromkeys(blocks))} d{depths} w{width}{mult} s{strides}{last}"


def plan_run(cfg: DictConfig, *, build: bool = True) -> RunPlan:
    """Validate the whole config and resolve the architecture; raises SpecError.

    ``build=False`` skips the dry build (a sweep's trial is vetted by the sweeper's dry build or
    by its job, which builds the model before it records anything).
    """
    refuse_targets(cfg)
    validate_data_config(cfg.data)
    validate_trainer_config(cfg.trainer)
    retry_s = cfg.tracking.retry_s
    if not (isinstance(retry_s, (int, float)) and math.isfinite(retry_s) and retry_s > 0):
        raise SpecError("tracking.retry_s", retry_s, "a number of seconds > 0 (how long a request is retried)")
    allowed = (*EPOCH_METRICS, *COST_OBJECTIVES)
    if not cfg.objective:
        raise SpecError("objective", list(cfg.objective), "at least one of " + ", ".join(allowed))
    for i, name in enumerate(cfg.objective):
        if name not in allowed:
            raise SpecError(f"objective[{i}]", name, "one of " + ", ".join(allowed))
    input_shape, num_classes = data_signature(cfg.data)
    spec = model_spec(cfg.model, input_shape=input_shape, num_classes=num_classes)
    if tuple(spec.input_shape) != tuple(input_shape):
        raise SpecError(
            "model.input_shape",
            list(spec.input_shape),
            f"null or the data's shape {list(input_shape)} (resize images with data.image_size=[h,w])",
        )
    if spec.num_classes != num_classes:
        raise SpecError("model.num_classes", spec.num_classes, f"null or the data's class count ({num_classes})")
    cost = dry_build(spec) if build else None
    if cost is not None:
        check_training_memory(cost, cfg.trainer)  # before a weight is allocated
    return RunPlan(spec=spec, objectives=list(cfg.objective), cost=cost)


def build_model_for_config(spec: ResNetSpec):
    """``build_resnet`` with errors named as config fields (``model.shortcut``).

    Some mistakes only the blocks can see (a zero-pad shortcut asked to reduce channels, a
    block argument out of range); they surface here, before any training.
    """
    from resnet_blocks import build_resnet

    with _named_as_config_fields():
        return build_resnet(spec)


def build_for_training(cfg: DictConfig, spec: ResNetSpec) -> BuiltModel:
    """The model as training builds it (seeded, precision, strategy), errors named as in
    :func:`build_model_for_config`."""
    from experiments.train import build_model

    with _named_as_config_fields():
        return build_model(cfg, spec)


@contextmanager
def _named_as_config_fields():
    try:
        yield
    except SpecError as err:
        field = err.field if err.field.startswith("model.") else f"model.{err.field}"
        raise SpecError(field, err.value, err.allowed) from None


_DRY_BUILDS: dict[str, ModelCost] = {}  # spec repr -> cost: a sweep samples the same architectures again


def dry_build(spec: ResNetSpec, *, build: bool = True) -> ModelCost | None:
    """The cost that budgets and memory are checked against, and the checks only the blocks
    can make (e.g. a zero-pad shortcut asked to reduce channels), before any training.

    Counted from the spec, no model built (:func:`resnet_blocks.spec_cost.spec_cost`),
    where its blocks and shortcut have cost functions (the shipped ones do); otherwise the
    model is built once without training, or with ``build=False`` None is returned (a sweep's
    job builds it). ``channels_first`` is built too, when ``build``: the build checks that this
    device runs it. Built costs are remembered per spec for this process."""
    if spec.data_format == "channels_last" or not build:
        with _named_as_config_fields():
            counted = spec_cost(spec)
        if counted is not None or not build:
            return counted
    import keras

    key = repr(spec)
    if key not in _DRY_BUILDS:
        try:
            # Declared, not created: in Keras's StatelessScope no weight is allocated, and
            # with initialize_variables=False none is initialised when the scope ends (the
            # model is dropped by clear_session below). A model too large for this machine
            # is measured without taking its memory (experiments/memory.py).
            with keras.StatelessScope(initialize_variables=False):
                cost = model_cost(build_model_for_config(spec))
        except SpecError:
            raise
        except Exception:  # noqa: BLE001 - e.g. a plugin block that reads a weight while it is built
            cost = model_cost(build_model_for_config(spec))  # a real build (raises the real error)
        _DRY_BUILDS[key] = cost
        keras.backend.clear_session(free_memory=True)  # the model was only for checking and counting
    return _DRY_BUILDS[key]


def _device_tags() -> dict[str, str]:
    """The devices a sweep's worker was placed on (``hydra.sweeper.devices``), where it was."""
    from experiments.devices import DEVICE_ENV

    placed = os.environ.get(DEVICE_ENV)
    return {"devices": placed} if placed else {}


def _check_tracking_server(cfg: DictConfig) -> bool:
    """Probe the tracking store if it is a server (a probe writes nothing there); True if probed."""
    from experiments.tracking import check_tracking_uri, is_local_store

    if not cfg.tracking.enabled or is_local_store(cfg.tracking.tracking_uri):
        return False
    check_tracking_uri(cfg.tracking.tracking_uri)
    return True


def _tracker(cfg: DictConfig, store_checked: bool = False, server_checked: bool = False):
    from experiments.tracking import NullTracker, RunTracker, check_tracking_uri, reap_dead_runs

    if not cfg.tracking.enabled:
        return NullTracker()
    if not store_checked:  # (a sweep's jobs: the sweeper checked the store already)
        if not server_checked:
            check_tracking_uri(cfg.tracking.tracking_uri)
        reaped = reap_dead_runs(cfg.tracking.tracking_uri)
        if reaped:
            log.warning("marked KILLED %d run(s) left RUNNING by processes that are gone: %s", len(reaped), reaped)
    t = cfg.tracking
    return RunTracker(t.tracking_uri, t.experiment_name, retry_s=t.retry_s, system_metrics=t.system_metrics)


@dataclass
class RunHooks:
    """What a caller (a sweep's job) adds to a run, all optional.

    ``slot``: entered right before fitting (see :func:`experiments.train.train`).
    ``vet(plan)``: called before anything is recorded; builds the model (returns
    :func:`build_for_training`'s result) and raises if it must not be trained: a sweep's job
    checks its trial's model this way (the run then skips its own dry build).
    ``on_tracker(tracker)``: called once the MLflow run is open.
    ``ended_ok``: exceptions that end the run FINISHED (a pruned trial) and are re-raised.
    ``store_checked``: the tracking store was checked and reaped by the caller (a sweeper).
    ``on_result(result)``: called with the :class:`~experiments.train.TrainResult` once the
    run's metrics (and model) are logged (finalize compares its runs with it).
    ``on_store_lost(err)``: the tracking store failed (even before the run started) and the run
    finished, recorded locally: called with the StoreLost, and the run returns its values
    (a sweep's trial keeps its result) instead of raising."""

    callbacks: tuple = ()
    parent_run_id: str | None = None
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    on_tracker: Any = None
    ended_ok: tuple[type[BaseException], ...] = ()
    slot: Any = None
    vet: Any = None
    store_checked: bool = False
    on_result: Any = None
    on_store_lost: Any = None


def run_task(cfg: DictConfig, hooks: RunHooks | None = None) -> float | tuple[float, ...]:
    """Train ``cfg`` and return its objective value(s) (one float, or a tuple for several)."""
    h = hooks or RunHooks()
    callbacks, parent_run_id, run_name, tags = h.callbacks, h.parent_run_id, h.run_name, h.tags
    on_tracker, ended_ok, slot, vet = h.on_tracker, h.ended_ok, h.slot, h.vet
    plan = plan_run(cfg, build=vet is None)  # refusals come before TensorFlow is imported
    built = vet(plan) if vet is not None else None
    # A tracking server is probed first (quickly, without TensorFlow); a local store only once
    # the data has loaded: unreadable data is refused before a store or run is written.
    server_checked = h.store_checked or _check_tracking_server(cfg)
    t0 = time.perf_counter()
    data = seeded_data(cfg)
    data_s = time.perf_counter() - t0
    tracker = _tracker(cfg, h.store_checked, server_checked)
    from experiments.train import measure_latency_ms, train

    label = arch_label(cfg.model)
    name = run_name or cfg.tracking.run_name or f"{cfg.model.name} {label}"
    all_tags = {"data.source": cfg.data.source, "model.arch": label, **plugin_tags(cfg.model.plugins),
                **current_hook_tags(), **_device_tags(), **dict(cfg.tracking.tags), **(tags or {})}  # fmt: skip
    from experiments.tracking import StoreLost

    values = model_uri = None
    try:
        with tracker.open(run_name=name, tags=all_tags, parent_run_id=parent_run_id, ended_ok=ended_ok,
                          local_at_start=h.on_store_lost is not None) as tr:  # fmt: skip
            if on_tracker is not None:
                on_tracker(tr)
            tr.log_config(OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_yaml(cfg, resolve=True))
            tr.log_metrics({"perf/data_s": data_s})  # now: a pruned trial never reaches the final metrics
            tr.log_dict({"class_names": list(data.class_names), **data.preprocessing.to_dict()}, "preprocessing.json")
            tr.log_dataset(data)
            log.info(
                "%s on %s: %d train / %d val%s images of %s, %d classes",
                name, cfg.data.source, data.num_train, data.num_val,
                f" / {data.num_test} test{'' if data.test is not None else ' (held out, not loaded)'}" if data.num_test else "",
                "x".join(map(str, data.input_shape)), data.num_classes,
            )  # fmt: skip
            # The cost (and summary) are logged before training: pruned and failed trials have them too.
            log_summary = functools.partial(_log_built_model, tr, summary=cfg.tracking.log_summary)
            result = train(
                cfg,
                built if built is not None else plan.spec,
                data,
                callbacks=(tr.epoch_callback(), *callbacks),
                slot=slot,
                on_built=log_summary,
            )
            # (best/* went to MLflow with each epoch: logged again here, without a step, its chart
            # would start at the final value.)
            finals = {
                "model/epoch": result.epoch,  # the epoch whose weights the model holds (the best by result.selected_by)
                **result.test,
                "perf/train_images_per_s": result.images_per_s,
                "perf/wall_time_s": result.wall_time_s,
                "perf/train_time_s": result.train_time_s,
                "perf/eval_time_s": result.eval_time_s,
                "train/epochs_run": result.epochs_run,
                "train/epochs_resumed": result.epochs_resumed,  # restored from a checkpoint, not trained here
                "train/steps_trained": result.steps_trained,
                "perf/fit_s": result.phases["fit_s"],  # build_compile_s went out when fit() began
            }
            values, model_uri = [], None
            for objective in plan.objectives:
                if objective == "macs":
                    values.append(float(result.cost.macs))
                elif objective == "params":
                    values.append(float(result.cost.trainable_params))
                elif objective == "latency_ms":
                    finals["perf/latency_ms"] = measure_latency_ms(result.model, plan.spec.input_shape)
                    values.append(finals["perf/latency_ms"])
                else:  # the kept model's (for result.selected_by: its best, best/<metric> in MLflow)
                    values.append(result.at_epoch.get(objective, float("nan")))
            finals.update({"data/num_train": data.num_train, "data/num_val": data.num_val, "data/num_test": data.num_test,
                           "data/num_skipped": data.num_skipped})  # fmt: skip
            tr.log_metrics(finals)
            if cfg.tracking.log_model:
                model_uri = log_serving_model(tr, result.model, data, cfg.tracking.register_model)
            if h.on_result is not None:
                h.on_result(result)
            result.drop_checkpoints()  # (recorded: a later attempt has nothing to resume)
    except StoreLost as err:  # the run finished; only the store failed
        if h.on_store_lost is None or values is None:
            raise
        h.on_store_lost(err)
        log.warning("%s", err)
    kept = result.at_epoch.get(result.selected_by)
    summary = (
        f"done: {name} | "
        + (f"best/{result.selected_by}={kept:.4f} " if kept is not None else "")
        + f"(epoch {result.epoch}/{result.epochs_run}, the model kept)"
        + "".join(f" {k}={v:.4f}" for k, v in result.test.items())
        + f" | {result.cost.trainable_params:,} params, {result.cost.macs / 1e6:,.1f} M MACs"
        + f" | {result.images_per_s:,.0f} img/s, {result.wall_time_s:.1f} s"
        + (f" | mlflow run {tracker.run_id}" if tracker.run_id else "")
        + (f" | {tracker.page}" if tracker.run_id and tracker.page else "")
        + (f" | model {model_uri}" if model_uri else "")
    )
    log.info(summary)
    return values[0] if len(values) == 1 else tuple(values)


def log_serving_model(tracker, trained, data, register_as: str | None = None) -> str | None:
    """Log ``trained`` as the MLflow Model users take away: images as the source gives them
    in (its own values: digits 0-16, pixels 0-255; uint8 or any float), its preprocessing and
    the training statistics inside, standard Keras layers only (see
    :mod:`experiments.preprocessing`). Its metadata states that input (``input``: shape, dtype,
    value range, one line saying them). Returns its URI (None without tracking)."""
    from experiments.preprocessing import input_metadata, serving_model

    prep = data.preprocessing
    metadata = {"class_names": list(data.class_names), "preprocessing": prep.to_dict(), "input": input_metadata(prep)}
    return tracker.log_model(serving_model(trained, prep), data.example, metadata=metadata, registered_name=register_as)


def _log_built_model(tracker, model, cost, *, summary: bool) -> None:
    tracker.log_metrics(
        {
            "model/trainable_params": cost.trainable_params,
            "model/non_trainable_params": cost.non_trainable_params,
            "model/macs": cost.macs,
        }
    )
    if not summary:
        return
    lines: list[str] = []
    model.summary(print_fn=lambda s, **_: lines.append(s))
    tracker.log_text("\n".join(lines), "model_summary.txt")
    tracker.log_dict(cost.to_dict(), "cost.json")


def seeded_data(cfg: DictConfig):
    """The data pipelines, built right after seeding every RNG with ``trainer.seed``.

    The shuffle and augmentation ops take their seeds from TensorFlow's global seed when they
    are created; seeding first makes a trial's batch order the same in a fresh worker process
    and in one that has already run other trials.
    """
    import keras

    keras.utils.set_random_seed(cfg.trainer.seed)
    # A run that does not evaluate its test split (a sweep's trials never do) does not load it.
    return load_data(cfg.data, batch_size=cfg.trainer.batch_size, with_test=cfg.trainer.evaluate_test)


@user_errors
def _single_run(cfg: DictConfig) -> Any:
    return run_task(cfg)


def task(cfg: DictConfig) -> Any:
    """One training run. A sweep (``hydra/sweeper=resnet_blocks``) finds this task's trial
    function in the attribute below and runs each trial through it (with the trial's ticket),
    which calls :func:`run_task`: this module knows nothing of sweeps."""
    return _single_run(cfg)


# (experiments.sweep.ticket.TRIAL_FUNCTION_ATTR; named, not imported: the sweep imports this module)
task.sweep_trial_function = "experiments.sweep.job:run_trial"
_hydra_main = hydra.main(config_path="../conf", config_name="config", version_base="1.3")(task)


@user_errors
def _check_command_line(config_name: str = "config", app: str = "run") -> bool:
    """Our help, or configuration errors in one line (exit 2), before Hydra; False: help shown."""
    import sys

    from experiments import help as app_help
    from experiments.config_check import check_command_line, is_single_run

    argv = sys.argv[1:]
    if app_help.wants_help(argv):
        check_command_line([a for a in argv if a not in ("--help", "-h")], config_name)
        app_help.print_help(app, argv)
        return False
    cfg = check_command_line(argv, config_name)
    if cfg is not None and app == "run" and is_single_run(argv):
        plan_run(cfg, build=False)  # refused values too, before Hydra makes the run's folder
    return True


def main() -> None:
    """``python -m experiments.run``: our help and one-line configuration errors, then Hydra."""
    if _check_command_line():
        _hydra_main()


if __name__ == "__main__":
    main()
