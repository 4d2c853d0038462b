"""Typed schemas for every config group, and the conversion of ``model`` into a spec.

The schemas are registered with Hydra's ConfigStore as the base of ``conf/config.yaml``, so a
misspelt key or a wrong type fails at composition with the key's name, before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from resnet_blocks import ResNetSpec, SpecError, load_plugins


@dataclass
class ModelConfig:
    """A ResNet as per-stage lists (see ``resnet_blocks.ResNetSpec.from_lists``)."""

    name: str = "custom"
    block: str = "regular"
    stage_blocks: list[str] | None = None  # one block per stage; overrides ``block``
    depth: int | None = None  # total layer count, for presets that derive ``depths`` from it
    depths: list[int] = MISSING
    widths: list[int] = MISSING
    strides: list[int] = MISSING
    shortcut: str = "projection"
    stem: str = "cifar"
    stem_width: int = 16
    width_multiplier: float = 1.0
    widen_factor: float | None = None  # wide ResNets: k in WRN-depth-k (presets feed width_multiplier)
    num_classes: int | None = None  # null: from the data
    input_shape: list[int] | None = None  # [height, width, channels]; null: from the data
    final_norm_act: bool | None = None  # null: when the last block is pre-activation
    data_format: str = "channels_last"
    block_args: dict[str, Any] = field(default_factory=dict)
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dropout: float = 0.0
    stride_position: str = "first"  # first | last (the stride on each stage's last block: Keras/TF-slim V2)
    fused_norm: bool = True  # TensorFlow's fused batch-norm kernel (false: keras.layers.BatchNormalization)
    plugins: list[str] = field(default_factory=list)  # modules that register user blocks


@dataclass
class DataConfig:
    source: str = "digits"  # digits | cifar10 | image_folder | synthetic
    path: str | None = None  # image_folder: a directory of class/xxx.jpg or a .tar.gz of one
    test_path: str | None = None  # image_folder: the test images (same class folders), a directory or .tar.gz
    test_split: float = 0.0  # held out as the test split (fixed seed) before subsampling; not cifar10
    subdir: str | None = None  # image_folder: folder inside path/archive holding the classes
    cache_dir: str | None = None  # where archives are extracted (default ~/.cache/resnet_blocks)
    image_size: list[int] | None = None  # resize to [height, width]; null: native size
    channels: int = 3  # synthetic / image_folder
    num_classes: int = 10  # synthetic
    num_samples: int = 1024  # synthetic: training samples
    max_samples: int | None = None  # subsample the training data (benchmarks, quick sweeps)
    validation_split: float = 0.2
    seed: int = 0  # fixes the validation split and the shuffling
    augment: bool = False  # random crop with padding plus flip, training only
    crop_padding: int = 4
    flip: bool = True
    normalize: bool = True  # per-channel mean/std of the training split, a layer of the model
    cache: bool = True
    skip_bad_images: bool = (
        False  # image_folder: leave out (and count) files that cannot be decoded; false: an error naming them
    )
    shuffle_buffer: int = 10000


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adamw
    learning_rate: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "cosine"  # constant | step | cosine
    warmup_epochs: int = 0  # linear warm-up before the schedule
    step_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of epochs
    step_gamma: float = 0.1
    mixed_precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    jit_compile: bool = False  # XLA halves training speed on CPU; turn on for GPUs
    distribute: str = "none"  # none | mirrored (tf.distribute.MirroredStrategy over this machine's GPUs)
    seed: int = 0
    deterministic: bool = False  # tf op determinism (slower)
    checkpoint_dir: str | None = None  # a checkpoint each epoch; the same command resumes an interrupted run
    keep_checkpoints: bool = False  # keep them once the run has ended (removed otherwise)
    early_stopping_patience: int | None = None
    monitor: str = "val/accuracy"  # metric for early stopping and the objective
    steps_per_epoch: int | None = None
    verbose: int = 2  # Keras fit verbosity: 2 = one line per epoch
    evaluate_test: bool = True  # evaluate the test split once training ends (a sweep's trials never do)
    max_memory_gb: float | None = None  # refuse models estimated to need more; null: 80% of the available memory


@dataclass
class TrackingConfig:
    enabled: bool = True
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "resnet-blocks"
    run_name: str | None = None
    log_model: bool = True  # an MLflow Model (keras flavour) that takes raw images
    register_model: str | None = None  # also register it as a new version of this Model Registry name
    retry_s: float = 30.0  # how long a request to an unresponsive tracking server is retried
    system_metrics: bool = False  # CPU, memory, disk, network (and GPU with nvidia-ml-py) as system/* metrics
    log_summary: bool = True
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    objective: list[str] = field(default_factory=lambda: ["val/accuracy"])


@dataclass
class DescribeConfig(Config):
    format: str = "table"  # table | json


def _stage_depths(total: int, layers_per_block: int, num_stages: int, extra_layers: int) -> list[int]:
    """Per-stage depths of a uniform network with ``total`` layers (``${rb_depths:...}``).

    CIFAR ResNets: ``6n + 2`` (basic blocks, 3 stages, stem + classifier); pre-activation
    bottlenecks: ``9n + 2``; wide ResNets: ``6n + 4``.
    """
    per_stage, rest = divmod(int(total) - int(extra_layers), int(layers_per_block) * int(num_stages))
    if rest or per_stage < 1:
        allowed = ", ".join(str(int(extra_layers) + k * int(layers_per_block) * int(num_stages)) for k in range(1, 6))
        raise SpecError("model.depth", total, f"{allowed}, ... (= {extra_layers} + {layers_per_block * num_stages}n)")
    return [per_stage] * int(num_stages)


def _find_cause(err: BaseException, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in ``err``'s cause/context chain (OmegaConf re-wraps)."""
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, kind):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def register_configs() -> None:
    """Register the schemas and resolvers with Hydra (idempotent)."""
    if not OmegaConf.has_resolver("rb_depths"):
        OmegaConf.register_new_resolver("rb_depths", _stage_depths)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(name="base_describe", node=DescribeConfig)


def model_spec(model: DictConfig | ModelConfig, *, input_shape=None, num_classes=None) -> ResNetSpec:
    """Turn the ``model`` config node into a validated spec.

    ``input_shape`` / ``num_classes`` fill the model's null fields (they come from the data).
    Plugins are imported first so their blocks can be named. Errors name ``model.<field>``.
    """
    try:
        m = OmegaConf.to_container(model, resolve=True) if isinstance(model, DictConfig) else dict(vars(model))
    except InterpolationResolutionError as err:  # a resolver (rb_depths) rejected a value
        cause = _find_cause(err, SpecError)
        if cause is not None:
            raise cause from None
        raise
    load_plugins(m.get("plugins") or [], field_prefix="model.")
    shape = m.get("input_shape") if m.get("input_shape") is not None else input_shape
    classes = m.get("num_classes") if m.get("num_classes") is not None else num_classes
    if shape is None:
        raise SpecError("model.input_shape", None, "[height, width, channels] (or a data source that provides it)")
    if classes is None:
        raise SpecError("model.num_classes", None, "an integer >= 2 (or a data source that provides it)")
    return ResNetSpec.from_lists(
        block=m["block"],
        stage_blocks=m.get("stage_blocks"),
        depths=m["depths"],
        widths=m["widths"],
        strides=m["strides"],
        stem=m["stem"],
        stem_width=m["stem_width"],
        shortcut=m["shortcut"],
        width_multiplier=m["width_multiplier"],
        num_classes=classes,
        input_shape=tuple(shape),
        final_norm_act=m.get("final_norm_act"),
        data_format=m["data_format"],
        block_args=m.get("block_args") or {},
        bn_momentum=m["bn_momentum"],
        bn_epsilon=m["bn_epsilon"],
        dropout=m["dropout"],
        stride_position=m.get("stride_position", "first"),
        fused_norm=m.get("fused_norm", True),
        field_prefix="model.",
    )


register_configs()
