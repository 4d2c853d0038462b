"""The model store: logging a run's serving model (Keras flavour and pyfunc), loading and
registering models, reading a model's run back."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

log = logging.getLogger("experiments.tracking")
MODEL_NAME = "model"  # the name each run's model is logged under


def model_uri(run_id: str) -> str:
    """The URI of the model run ``run_id`` logged (``runs:/<run id>/model``)."""
    return f"runs:/{run_id}/{MODEL_NAME}"


def log_model(tracker, model, example_input, *, metadata: Mapping[str, Any], registered_name: str | None = None) -> str:
    """Log ``model`` (a serving model of standard Keras layers) as ``tracker``'s run's MLflow
    Model named ``model``: keras flavour (``.keras`` file) and pyfunc, with its output signature
    and input example (images as the source gives them; ``metadata`` states the input);
    register it as a new version of ``registered_name`` if given. Returns the model's URI
    (``runs:/<run id>/model``), or, when the store is lost, the local folder it was saved to
    instead (``mlflow.pyfunc.load_model`` takes either)."""
    import keras
    import mlflow
    import mlflow.keras
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # A direct call, not predict(): predict traces one more function, and TensorFlow keeps
    # memory for every traced function for the life of the process.
    example = keras.ops.convert_to_numpy(example_input)
    probs = keras.ops.convert_to_numpy(model(example, training=False))
    # Outputs only: MLflow 3.17's pyfunc checks a tensor input schema for the exact dtype
    # and rank (float32 refuses float64 and uint8; (n, 8, 8, 1) refuses (n, 8, 8)), with an
    # error that prints the whole array. Without one, Keras casts any numeric dtype, adds a
    # missing channel axis and names the expected shape in one line on a wrong one.
    signature = ModelSignature(outputs=Schema([TensorSpec(probs.dtype, (-1, *probs.shape[1:]))]))
    # Pinned requirements given, not inferred: inferring them loads the model again in a
    # fresh interpreter that imports TensorFlow (seconds per run).
    requirements = [f"{pkg}=={version(pkg)}" for pkg in ("keras", "tensorflow", "mlflow") if _installed(pkg)]
    options = {"signature": signature, "input_example": example, "pip_requirements": requirements,
               "metadata": dict(metadata)}  # fmt: skip
    with _quiet_mlflow_model_logging():
        logged = tracker.remote(
            mlflow.models.Model.log,
            artifact_path=None,
            flavor=_KerasFlavour,
            model=model,
            name=MODEL_NAME,
            registered_model_name=registered_name,
            validate_serving_input=False,  # (reloads the model to predict the example: our tests do that)
            **options,
        )
        if logged is not None:
            return model_uri(tracker.run_id)
        path = tracker.local.dir / MODEL_NAME  # the store is gone: the model is kept here
        shutil.rmtree(path, ignore_errors=True)
        try:
            _KerasFlavour.save_model(path=str(path), model=model, **options)
        except BaseException:  # (a full disk): no half-written model is left to be taken for one
            shutil.rmtree(path, ignore_errors=True)
            raise
    return str(path.resolve())


class _KerasFlavour:
    """``mlflow.keras`` for :meth:`mlflow.models.Model.log`, with the model directory made
    before the flavour writes the input example into it: MLflow 3.17's ``mlflow.keras.save_model``
    writes the example first and fails (FileNotFoundError) when given one. A signature without
    inputs (which that function refuses: it reads their tensor specs) is set on the MLmodel it
    writes. ``tests/experiments/test_model_logging.py`` fails once MLflow no longer needs this."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path, validate_serving_input=None, signature=None, mlflow_model=None, **kwargs):
        import mlflow.keras
        from mlflow.models import Model

        os.makedirs(path, exist_ok=True)
        mlflow_model = mlflow_model if mlflow_model is not None else Model()
        if signature is None or signature.inputs is not None:
            mlflow.keras.save_model(path=path, signature=signature, mlflow_model=mlflow_model, **kwargs)
        else:
            mlflow_model.signature = signature
            # (it warns that the model has no signature: it has one, without inputs)
            save_log = logging.getLogger("mlflow.keras.save")
            level = save_log.level
            save_log.setLevel(logging.ERROR)
            try:
                mlflow.keras.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
            finally:
                save_log.setLevel(level)
        _load_through_input_check(path, mlflow_model)


def _load_through_input_check(path: str, mlflow_model) -> None:
    """Make the saved model's pyfunc flavour load through
    :mod:`~experiments.tracking.resnet_blocks_pyfunc` (copied into the model's ``code/``
    folder, which MLflow puts on ``sys.path``), which checks each input against the model's
    metadata and then predicts with the Keras flavour's model."""
    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.pyfunc import FLAVOR_NAME

    import experiments.tracking.resnet_blocks_pyfunc as resnet_blocks_pyfunc

    code = os.path.join(path, "code")
    os.makedirs(code, exist_ok=True)
    shutil.copyfile(resnet_blocks_pyfunc.__file__, os.path.join(code, f"{resnet_blocks_pyfunc.MODULE}.py"))
    conf = mlflow_model.flavors[FLAVOR_NAME]
    conf["loader_module"], conf["code"] = resnet_blocks_pyfunc.MODULE, "code"
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))


def _installed(pkg: str) -> bool:
    try:
        version(pkg)
        return True
    except PackageNotFoundError:
        return False


@contextmanager
def _quiet_mlflow_model_logging():
    """MLflow logs an INFO line per registered version and warns about the input example's
    serving payload; our own summary line says where the model is."""
    loggers = [logging.getLogger(n) for n in ("mlflow.models.model", "mlflow.tracking._model_registry.client")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def model_info(uri: str, tracking_uri: str):
    """MLflow's ``ModelInfo`` of ``uri`` (``runs:/...``, ``models:/...`` or a folder), or a
    UserError naming it."""
    import mlflow

    from experiments.cli import UserError

    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.models.get_model_info(uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises several kinds for "not there"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"model: cannot load {uri!r} from {tracking_uri}: {first}") from None


def run_config_text(run_id: str) -> str | None:
    """The resolved ``config.yaml`` a run logged, None for a run without one."""
    import mlflow

    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except Exception:  # noqa: BLE001 - a run without our config
        return None


def load_keras_model(uri: str):
    """The Keras model of a logged MLflow Model."""
    import mlflow.keras

    return mlflow.keras.load_model(uri)


def register_run_model(experiment_id: str, run_id: str, name: str) -> str:
    """Register the model logged by ``run_id`` as a new version of ``name``; its URI."""
    import mlflow

    (logged,) = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list"
    )
    version = mlflow.register_model(f"models:/{logged.model_id}", name)
    return f"models:/{name}/{version.version}"
