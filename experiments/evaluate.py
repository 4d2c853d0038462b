"""``python -m experiments.evaluate MODEL [overrides]``: a logged model on a test split.

``MODEL`` is a run id (its logged model) or a model URI (``runs:/<id>/model``,
``models:/<name>/<version>``, a local MLflow Model folder). The data are the model's own
run's data config unless overrides say otherwise (``data.test_path=...``, or ``data=...``
for another source); the test split is used (``split=val`` for the validation split). The
model gets the images as a user's would: the source's own values (digits 0-16, pixels
0-255); a shape or value range it does not take is one line naming what it takes. Accuracy, loss, per-class accuracy and a confusion
matrix are printed and logged to a new MLflow run tagged with the model it evaluated.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.cli import UserError, quiet_tensorflow, user_errors

log = logging.getLogger("experiments.evaluate")
SPLITS = ("test", "val")


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    num_images: int
    class_names: list[str]
    class_accuracy: list[float]
    confusion: np.ndarray  # rows: true class, columns: predicted class

    def metrics(self, prefix: str) -> dict[str, float]:
        out = {
            f"{prefix}/accuracy": self.accuracy,
            f"{prefix}/loss": self.loss,
            f"{prefix}/num_images": self.num_images,
        }
        for name, acc in zip(self.class_names, self.class_accuracy):
            if not np.isnan(acc):
                out[f"{prefix}/class_accuracy/{_metric_safe(name)}"] = acc
        return out


def _metric_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def evaluate_predictions(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Evaluation:
    """Accuracy, cross-entropy, per-class accuracy (recall) and the confusion matrix."""
    from sklearn.metrics import confusion_matrix

    k = len(class_names)
    pred = probs.argmax(axis=1)
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)).mean())
    confusion = confusion_matrix(labels, pred, labels=list(range(k)))
    per_class = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_accuracy = np.where(per_class > 0, confusion.diagonal() / per_class, np.nan)
    return Evaluation(
        accuracy=float((pred == labels).mean()),
        loss=loss,
        num_images=len(labels),
        class_names=list(class_names),
        class_accuracy=[float(a) for a in class_accuracy],
        confusion=confusion,
    )


def confusion_png(ev: Evaluation, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(5.0, 0.45 * len(ev.class_names) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(ev.confusion, display_labels=ev.class_names).plot(
        ax=ax, colorbar=False, xticks_rotation=45, values_format="d"
    )
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# -- the command --------------------------------------------------------------------------
def model_uri_of(model: str) -> str:
    """A run id (32 hex digits) means that run's logged model."""
    if len(model) == 32 and all(c in "0123456789abcdef" for c in model):
        from experiments.tracking import model_uri

        return model_uri(model)
    return model


def _model_info(uri: str, tracking_uri: str):
    from experiments.tracking import model_info

    return model_info(uri, tracking_uri)


def _run_data_overrides(run_id: str | None, tracking_uri: str) -> list[str]:
    """The data settings the model's run trained with, as overrides."""
    if not run_id:
        return []
    from omegaconf import OmegaConf

    from experiments.overrides import format_override
    from experiments.tracking import run_config_text

    text = run_config_text(run_id)
    if text is None:  # a run without our config: the user must name the data
        return []
    data = OmegaConf.to_container(OmegaConf.create(text).get("data") or {}, resolve=False)
    if not data:
        return []
    return [f"data={data['source']}", *(format_override(f"data.{k}", v) for k, v in data.items())]


def compose_config(overrides: list[str]):
    from experiments.overrides import CONF_DIR, config_composer

    return config_composer(str(CONF_DIR))(overrides)


def evaluate_model(model: str, overrides: list[str], *, split: str = "test") -> tuple[Evaluation, str | None]:
    """Evaluate ``model`` on the ``split`` of the data config; log it; return it with the
    evaluation run's id."""
    from experiments.data import load_data, validate_data_config
    from experiments.preprocessing import from_pixels
    from experiments.tracking import check_tracking_uri
    from experiments.tracking.resnet_blocks_pyfunc import input_problem

    if split not in SPLITS:
        raise UserError(f"--split: received {split!r}; allowed: {', '.join(SPLITS)}")
    base = compose_config([o for o in overrides if not o.lstrip("+~").startswith("data")])
    tracking_uri = base.tracking.tracking_uri
    check_tracking_uri(tracking_uri)
    uri = model_uri_of(model)
    info = _model_info(uri, tracking_uri)
    user_data = any(o.lstrip("+~").split("=")[0].split(".")[0] == "data" for o in overrides)
    user_group = any(o.lstrip("+~").split("=")[0] == "data" for o in overrides)
    run_data = [] if user_group else _run_data_overrides(info.run_id, tracking_uri)
    if not run_data and not user_data:
        raise UserError(
            f"data: {uri!r} has no run config to take its data from; give them, e.g. data=image_folder data.path=..."
        )
    cfg = compose_config([*run_data, *overrides])
    validate_data_config(cfg.data)
    metadata = info.metadata or {}
    names = metadata.get("class_names")
    data = load_data(cfg.data, batch_size=cfg.trainer.batch_size, native=True)
    if names is not None and list(names) != list(data.class_names):
        raise UserError(
            f"data: the model's classes {list(names)} differ from the data's {list(data.class_names)} "
            f"(data.source={cfg.data.source}{', data.test_path=' + str(cfg.data.test_path) if cfg.data.test_path else ''})"
        )
    dataset = data.test if split == "test" else data.val
    if dataset is None:
        raise UserError(
            f"data: data.source={cfg.data.source} has no test split here; "
            "give one with data.test_path (image folders) or data.test_split (a held-out fraction)"
        )
    from experiments.tracking import load_keras_model

    try:
        keras_model = load_keras_model(uri)
    except ValueError as err:
        if "safe_mode" not in str(err):
            raise
        raise UserError(
            f"RUN_ID|MODEL_URI: received {uri!r}; allowed: a model of standard or registered Keras layers "
            "(this one holds a Lambda layer's Python code, which Keras's safe mode will not run on load: "
            "register the layer with keras.saving.register_keras_serializable, or, if you trust the model, "
            "load it yourself with safe_mode=False)"
        ) from None
    spec = metadata.get("input") or _input_of(keras_model)
    probs, labels = [], []
    for x, y in dataset:
        images = from_pixels(x.numpy(), float(spec["value_range"][1]))  # the values the model takes
        problem = input_problem(images, spec)
        if problem:
            raise UserError(problem)
        probs.append(np.asarray(keras_model.predict_on_batch(images)))
        labels.append(y.numpy())
    ev = evaluate_predictions(np.concatenate(probs), np.concatenate(labels), list(data.class_names))
    run_id = _log_evaluation(ev, cfg, uri, info.run_id, split)
    return ev, run_id


def _input_of(keras_model) -> dict:
    """The input of a model logged without ``input`` metadata: its Keras input, 0-255 pixels."""
    from experiments.preprocessing import Preprocessing, input_metadata

    raw_shape = tuple(keras_model.input_shape[1:])
    return input_metadata(Preprocessing(raw_shape, raw_shape[:2], None, None))


def _log_evaluation(ev: Evaluation, cfg, uri: str, source_run: str | None, split: str) -> str | None:
    from omegaconf import OmegaConf

    from experiments.tracking import RunTracker

    if not cfg.tracking.enabled:
        return None
    tracker = RunTracker(cfg.tracking.tracking_uri, cfg.tracking.experiment_name)
    name = f"evaluate {source_run[:8] if source_run else uri} on {cfg.data.source} {split}"
    tags = {"evaluation.model": uri, "evaluation.split": split, "data.source": cfg.data.source}
    if source_run:
        tags["evaluation.run_id"] = source_run
    with tracker.open(run_name=name, tags=tags) as tr:
        tr.log_config({"data": OmegaConf.to_container(cfg.data, resolve=True)}, OmegaConf.to_yaml(cfg.data))
        tr.log_metrics(ev.metrics(split))
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "confusion_matrix.png"
            png.write_bytes(confusion_png(ev, f"{uri} on {cfg.data.source} ({split}, {ev.num_images} images)"))
            tr.log_artifact(png)
            table = Path(tmp) / "per_class.csv"
            with table.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["class", "images", "accuracy", *(f"pred_{n}" for n in ev.class_names)])
                for i, name_ in enumerate(ev.class_names):
                    w.writerow([name_, int(ev.confusion[i].sum()), ev.class_accuracy[i], *ev.confusion[i].tolist()])
            tr.log_artifact(table)
    return tracker.run_id


def format_evaluation(ev: Evaluation, split: str) -> str:
    lines = [f"{split}: accuracy {ev.accuracy:.4f}, loss {ev.loss:.4f} on {ev.num_images} images", "per class:"]
    width = max(len(n) for n in ev.class_names)
    for name, acc, row in zip(ev.class_names, ev.class_accuracy, ev.confusion):
        lines.append(f"  {name:<{width}}  {acc:6.3f}  ({int(row.sum())} images)")
    return "\n".join(lines)


@user_errors
def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow()
    p = argparse.ArgumentParser(
        prog="python -m experiments.evaluate",
        description="Evaluate a logged model on a test split: accuracy, loss, per-class accuracy, confusion matrix.",
        epilog="Overrides are Hydra's (data=..., data.test_path=..., tracking.tracking_uri=...). Without data "
        "overrides the model's run's own data config is used.",
    )
    p.add_argument("model", help="a run id, or a model URI (runs:/<id>/model, models:/<name>/<version>, a folder)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for data and tracking")
    p.add_argument("--split", default="test", choices=SPLITS, help="which split to evaluate (default: test)")
    args = p.parse_args(argv)
    ev, run_id = evaluate_model(args.model, list(args.overrides), split=args.split)
    print(format_evaluation(ev, args.split))
    if run_id:
        print(f"logged to MLflow run {run_id} (confusion_matrix.png, per_class.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
