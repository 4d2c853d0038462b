"""Data sources: each gives ``tf.data`` pipelines for train / validation (/ test).

Sources: ``digits`` (scikit-learn, embedded, the default), ``cifar10`` (the Keras loader and
its cache), ``image_folder`` (``class/xxx.jpg`` directory or a ``.tar.gz`` of one, extracted
once into a cache) and ``synthetic`` (random tensors, for benchmarks). Every pipeline caches,
shuffles, augments (optional, training only), batches and prefetches raw pixels (0-255, as
float32): rescaling and normalisation are layers of the model (:mod:`experiments.preprocessing`),
with the training split's statistics, so a saved model takes raw images.

Test splits: CIFAR-10's own test batch, ``data.test_path`` (an image folder or archive with
the same classes), or ``data.test_split``, a part held out from the source's images with a
fixed seed before any subsampling or validation split (digits holds out 15% by default).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.preprocessing import Preprocessing
from resnet_blocks import SpecError

log = logging.getLogger(__name__)

SOURCES = ("digits", "cifar10", "image_folder", "synthetic")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TEST_SEED = 0  # the held-out test part never depends on data.seed or data.max_samples
CIFAR10_TEST = 10_000  # images in CIFAR-10's test batch
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class DataSplits:
    """The pipelines plus what the model and the logs need to know about them."""

    train: object  # tf.data.Dataset of (image float32 in 0-255, label int32), batched
    val: object
    test: object | None
    input_shape: tuple[int, int, int]
    num_classes: int
    num_train: int
    num_val: int
    num_test: int  # the test images the source holds out (also where with_test=False left them unloaded)
    class_names: list[str]
    source: str
    preprocessing: Preprocessing | None = None  # what the model does to raw images, with the statistics
    example: np.ndarray | None = None  # a few images as the source gives them (its own values): a model's input example
    origin: str = ""  # where the images come from: a path, a URL, a loader
    digest: str = ""  # a fingerprint of the images and labels of every split (MLflow's dataset digest)
    num_skipped: int = 0  # unreadable images left out (data.skip_bad_images)


# -- validation, before any work ---------------------------------------------------------
def validate_data_config(cfg) -> None:
    """Reject bad data settings with the field, the value and what is allowed."""
    if cfg.source not in SOURCES:
        raise SpecError("data.source", cfg.source, "one of " + ", ".join(SOURCES))
    if cfg.source == "image_folder":
        if not cfg.path:
            raise SpecError("data.path", cfg.path, "a directory of class/xxx.jpg or a .tar.gz of one")
        if not Path(cfg.path).expanduser().exists():
            raise SpecError("data.path", cfg.path, "an existing directory or .tar.gz file (not found)")
    if not (0.0 < cfg.validation_split < 1.0):
        raise SpecError("data.validation_split", cfg.validation_split, "a fraction in (0, 1)")
    if cfg.image_size is not None and (len(cfg.image_size) != 2 or min(cfg.image_size) < 1):
        raise SpecError("data.image_size", list(cfg.image_size), "null or [height, width], each >= 1")
    if cfg.max_samples is not None and cfg.max_samples < 2:
        raise SpecError("data.max_samples", cfg.max_samples, "null or an integer >= 2")
    for key in ("channels", "num_samples"):
        if getattr(cfg, key) < 1:
            raise SpecError(f"data.{key}", getattr(cfg, key), "an integer >= 1")
    if cfg.num_classes < 2:
        raise SpecError("data.num_classes", cfg.num_classes, "an integer >= 2")
    if cfg.crop_padding < 0:
        raise SpecError("data.crop_padding", cfg.crop_padding, "an integer >= 0")
    if not (0.0 <= cfg.test_split < 1.0) or cfg.test_split + cfg.validation_split >= 1.0:
        raise SpecError(
            "data.test_split", cfg.test_split, f"a fraction in [0, 1 - validation_split={cfg.validation_split})"
        )
    if cfg.test_path is not None:
        if cfg.source != "image_folder":
            raise SpecError("data.test_path", cfg.test_path, f"null for data.source={cfg.source} (image_folder only)")
        if not Path(cfg.test_path).expanduser().exists():
            raise SpecError("data.test_path", cfg.test_path, "an existing directory or .tar.gz file (not found)")
        if cfg.test_split:
            raise SpecError("data.test_split", cfg.test_split, "0 when data.test_path gives the test images")
    if cfg.source == "cifar10" and cfg.test_split:
        raise SpecError(
            "data.test_split", cfg.test_split, "0 for cifar10 (its own 10,000 test images are the test split)"
        )


def data_signature(cfg) -> tuple[tuple[int, int, int], int]:
    """(input_shape, num_classes) of a source without loading its images."""
    validate_data_config(cfg)
    if cfg.source == "digits":
        native, channels, classes = (8, 8), 1, 10
    elif cfg.source == "cifar10":
        native, channels, classes = (32, 32), 3, 10
    elif cfg.source == "synthetic":
        native, channels, classes = (32, 32), cfg.channels, cfg.num_classes
    else:
        names = [p.name for p in _class_dirs(_image_folder_root(cfg))]
        if cfg.test_path is not None:
            test_names = [p.name for p in _class_dirs(_image_folder_root(cfg, "test_path"))]
            if test_names != names:
                raise SpecError(
                    "data.test_path", cfg.test_path, f"a folder with the training classes {names} (it has {test_names})"
                )
        native, channels, classes = (32, 32), cfg.channels, len(names)
    h, w = cfg.image_size if cfg.image_size is not None else native
    return (int(h), int(w), int(channels)), int(classes)


# -- loading ------------------------------------------------------------------------------
def load_data(cfg, *, batch_size: int, native: bool = False, with_test: bool = True) -> DataSplits:
    """Load ``cfg.source`` and build its pipelines.

    ``native``: images at the source's own size, not resized to ``data.image_size`` (what a
    shipped model takes; image folders are always resized, their files differ in size).
    ``with_test=False``: the test images are held out as usual but neither read nor decoded
    (``test`` is None; ``num_test`` still counts them): for runs that never evaluate them,
    such as a sweep's trials."""
    import tensorflow as tf

    validate_data_config(cfg)
    if cfg.source == "image_folder":
        return _image_folder(cfg, batch_size, with_test)
    if cfg.source == "digits":
        x, y, test, names = _digits()
    elif cfg.source == "cifar10":
        x, y, test, names = _cifar10(with_test)
    else:
        x, y, test, names = _synthetic(cfg)
    # test: (images, labels), None, or (with_test=False) only the size of a test batch left unread
    if test is None and cfg.test_split:
        (x, y), test = _hold_out(x, y, cfg.test_split)
    num_test = test if isinstance(test, int) else 0 if test is None else len(test[1])
    if not with_test or isinstance(test, int):
        test = None
    x, y = _subsample(x, y, cfg)
    (xt, yt), (xv, yv) = _split(x, y, cfg)
    shape = _output_shape(cfg, xt.shape[1:])
    raw = tuple(int(d) for d in x.shape[1:])
    if cfg.source in ANY_SIZE:  # the shipped model resizes photos of any size, as the pipeline does
        raw = (None, None, raw[2])
    prep = _preprocessing(cfg, raw, shape, xt)
    if native:
        shape = tuple(int(d) for d in xt.shape[1:])

    def from_arrays(a, b):
        return tf.data.Dataset.from_tensor_slices((a, b.astype("int32")))

    train = _pipeline(from_arrays(xt, yt), cfg, batch_size, shape, training=True)
    val = _pipeline(from_arrays(xv, yv), cfg, batch_size, shape, training=False)
    test_ds = None if test is None else _pipeline(from_arrays(*test), cfg, batch_size, shape, training=False)
    return DataSplits(
        train, val, test_ds, shape, len(names), len(yt), len(yv), num_test, names,
        cfg.source, prep, prep.source_values(xv[:2]), ORIGINS.get(cfg.source, cfg.source),
        _digest(xt, yt, xv, yv, *(test or ())),
    )  # fmt: skip


ORIGINS = {
    "digits": "sklearn.datasets.load_digits",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "synthetic": "synthetic (random pixels and labels)",
}


def _digest(*arrays) -> str:
    """A short fingerprint of the splits' contents (pixels or file names, and labels)."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes() if a.dtype != object and a.dtype.kind != "U" else "\n".join(map(str, a)).encode())
    return h.hexdigest()[:10]


# The sources whose own values are not 0-255 pixels: (top of their range, what they are).
# A shipped model takes these values; the pipelines give 0-255 for every source.
# Sources of photographs: their shipped models take images of any size (resized inside, an
# identity at the native size), as image folders' do. Digits are 8x8 by nature.
ANY_SIZE = frozenset({"cifar10"})
SOURCE_VALUES = {"digits": (16.0, "digits, as sklearn.datasets.load_digits() gives them")}


def _preprocessing(cfg, raw_shape, shape, train_pixels) -> Preprocessing:
    mean, std = _moments(train_pixels) if cfg.normalize else (None, None)
    value_max, values = SOURCE_VALUES.get(cfg.source, (255.0, "pixels"))
    return Preprocessing(
        raw_shape=raw_shape,
        image_size=(shape[0], shape[1]),
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std),
        value_max=value_max,
        values=values,
    )


def _hold_out(x, y, fraction: float):
    """A fixed, stratified test part of ``(x, y)`` (seed :data:`TEST_SEED`): the rest, the test."""
    return _stratified_split(x, y, fraction, TEST_SEED)


def _digits():
    """scikit-learn's 0-16 digits as 0-255 floats, unrounded (multiples of 255/16, exact in
    float32): the shipped model divides the 0-16 values by 16 and sees the same numbers."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images[..., None].astype("float32") * np.float32(255.0 / 16.0)
    return x, d.target.astype("int32"), None, [str(i) for i in range(10)]


def cifar10_cache_dir() -> Path:
    """Where ``keras.datasets.cifar10`` keeps the extracted batches."""
    from experiments.keras_internals import keras_home

    return keras_home() / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"


def cifar10_cached() -> bool:
    """CIFAR-10's extracted batches are in Keras's cache (else loading it downloads them)."""
    cache = cifar10_cache_dir()
    return any(cache.glob("data_batch_*")) and (cache / "test_batch").exists()


def _cifar10(with_test: bool = True):
    """CIFAR-10 from the Keras cache when its batches are there, else the Keras download.
    ``with_test=False``: the test batch is not read (its size stands for it)."""
    import keras

    from experiments.keras_internals import load_cifar_batch as load_batch

    cache = cifar10_cache_dir()
    train_files = sorted(cache.glob("data_batch_*"))
    if cifar10_cached():
        parts = [load_batch(str(f)) for f in train_files]
        x = np.concatenate([p[0] for p in parts]).transpose(0, 2, 3, 1)
        y = np.concatenate([p[1] for p in parts])
        if not with_test:
            return x.astype("uint8"), np.asarray(y).reshape(-1).astype("int32"), CIFAR10_TEST, list(CIFAR10_CLASSES)
        xt, yt = load_batch(str(cache / "test_batch"))
        xt = xt.transpose(0, 2, 3, 1)
    else:
        (x, y), (xt, yt) = keras.datasets.cifar10.load_data()
    y, yt = np.asarray(y).reshape(-1).astype("int32"), np.asarray(yt).reshape(-1).astype("int32")
    return x.astype("uint8"), y, (xt.astype("uint8"), yt), list(CIFAR10_CLASSES)


def _synthetic(cfg):
    rng = np.random.default_rng(cfg.seed)
    h, w = cfg.image_size if cfg.image_size is not None else (32, 32)
    n = int(cfg.num_samples / (1.0 - cfg.validation_split))
    x = rng.integers(0, 256, size=(n, h, w, cfg.channels), dtype=np.uint8)
    y = rng.integers(0, cfg.num_classes, size=(n,)).astype("int32")
    return x, y, None, [str(i) for i in range(cfg.num_classes)]


def _subsample(x, y, cfg):
    if cfg.max_samples is None or cfg.max_samples >= len(y):
        return x, y
    idx = np.random.default_rng(cfg.seed).permutation(len(y))[: cfg.max_samples]
    return x[np.sort(idx)], y[np.sort(idx)]


def _split(x, y, cfg):
    """Deterministic (seeded), stratified train/validation split."""
    return _stratified_split(x, y, cfg.validation_split, cfg.seed)


def _stratified_split(x, y, fraction: float, seed: int):
    """``(rest, part)``: ``fraction`` of ``(x, y)`` split off, stratified by label where every
    class has 2+ images and the part can hold one of each."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and len(y) * fraction >= len(counts) else None
    xr, xp, yr, yp = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)
    return (xr, yr), (xp, yp)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sample = x[:5000].astype("float32") / 255.0
    mean = sample.mean(axis=(0, 1, 2))
    std = sample.std(axis=(0, 1, 2)) + 1e-6
    return mean.astype("float32"), std.astype("float32")


def _output_shape(cfg, native_shape) -> tuple[int, int, int]:
    h, w = cfg.image_size if cfg.image_size is not None else native_shape[:2]
    return int(h), int(w), int(native_shape[2])


def _pipeline(ds, cfg, batch_size, shape, *, training):
    """uint8 images -> float32 (0-255) -> resize -> cache -> shuffle -> augment -> batch -> prefetch.

    The resize is the one the shipped model does (bilinear, :mod:`experiments.preprocessing`)."""
    import tensorflow as tf

    h, w, _ = shape
    autotune = tf.data.AUTOTUNE

    def to_float(image, label):
        image = tf.cast(image, tf.float32)
        if image.shape[0] != h or image.shape[1] != w:
            image = tf.image.resize(image, (h, w))
        return image, label

    ds = ds.map(to_float, num_parallel_calls=autotune)
    if cfg.cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True)
        if cfg.augment:
            # Stateless crops and flips keyed by a seeded stream: the same draws in any process.
            seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(_augmenter(cfg, shape), num_parallel_calls=autotune)
    ds = ds.batch(batch_size, drop_remainder=False)
    return ds.prefetch(autotune)


def _augmenter(cfg, shape):
    import tensorflow as tf

    h, w, c = shape
    pad = cfg.crop_padding

    def augment(element, seed):
        image, label = element
        if pad:
            image = tf.image.pad_to_bounding_box(image, pad, pad, h + 2 * pad, w + 2 * pad)
            image = tf.image.stateless_random_crop(image, (h, w, c), seed=seed)
        if cfg.flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
        return image, label

    return augment


# -- image folders ------------------------------------------------------------------------
def _image_folder_root(cfg, path_key: str = "path") -> Path:
    """The directory holding the class folders, extracting a .tar.gz once into the cache.

    ``path_key``: ``path`` (the training images) or ``test_path``."""
    value = getattr(cfg, path_key)
    path = Path(value).expanduser()
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise SpecError(f"data.{path_key}", value, "a directory or a .tar.gz archive of one")
        path = _extract_once(path, cfg, path_key)
    subdir = cfg.subdir if path_key == "path" else None
    root = path / subdir if subdir else path
    if not root.is_dir():
        raise SpecError("data.subdir", subdir, f"a folder inside {path}")
    # An archive or folder with a single top-level folder (e.g. train/) holds the classes inside.
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not subdir and len(entries) == 1 and entries[0].is_dir() and len(_class_dirs(entries[0])) >= 2:
        root = entries[0]
    if len(_class_dirs(root)) < 2:
        raise SpecError(
            f"data.{path_key}", value, "a folder with at least 2 class sub-folders of images (class/xxx.jpg)"
        )
    return root


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _extract_once(archive: Path, cfg, path_key: str = "path") -> Path:
    """Extract ``archive`` into ``<cache>/<name>-<hash of path+size+mtime>``, atomically; a
    truncated or corrupt archive is a SpecError and leaves nothing behind."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    cache = Path(cfg.cache_dir or os.environ.get("RESNET_BLOCKS_CACHE", "~/.cache/resnet_blocks")).expanduser()
    target = cache / f"{archive.name.split('.')[0]}-{key}"
    if (target / ".complete").exists():
        return target
    tmp = cache / f".{target.name}.partial-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except tarfile.FilterError as err:  # a member that would land outside, a link out, a device
        shutil.rmtree(tmp, ignore_errors=True)
        raise SpecError(
            f"data.{path_key}",
            str(archive),
            "an archive whose members all stay inside it (refused, nothing extracted: member "
            f"{getattr(err, 'tarinfo', None) and err.tarinfo.name!r}: {err})",
        ) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SpecError(
            f"data.{path_key}",
            str(archive),
            f"a readable .tar.gz archive (this one is truncated or corrupt: {type(err).__name__}: {err})",
        ) from None
    except BaseException:  # interrupted: no half-extracted folder is left either
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").touch()
    try:
        tmp.rename(target)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _index_folder(
    root: Path, value, path_key: str, exclude: frozenset[str] = frozenset()
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(files, labels, class names) of an image folder, in a fixed order; files that are not
    images are listed in a warning; ``exclude``: files to leave out (unreadable ones)."""
    names = [p.name for p in _class_dirs(root)]
    files, labels, ignored = [], [], []
    for label, name in enumerate(names):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                if str(f) not in exclude:
                    files.append(str(f))
                    labels.append(label)
            elif not f.name.startswith("."):
                ignored.append(f"{name}/{f.name}")
    if ignored:
        shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        log.warning("data.%s: ignored %d entries that are not %s images: %s", path_key, len(ignored),
                    "/".join(IMAGE_EXTENSIONS), shown)  # fmt: skip
    if not files:
        raise SpecError(f"data.{path_key}", value, f"class folders containing images ({', '.join(IMAGE_EXTENSIONS)})")
    return np.array(files), np.array(labels, dtype="int32"), names


def _image_folder_files(cfg, exclude: frozenset[str] = frozenset()):
    """The (files, labels) of the train+validation part, of the test part (or None), and the
    class names; a test folder must have the training folder's classes. ``exclude``: files
    left out (unreadable ones, with ``data.skip_bad_images``)."""
    files, labels, names = _index_folder(_image_folder_root(cfg), cfg.path, "path", exclude)
    test = None
    if cfg.test_path is not None:
        root = _image_folder_root(cfg, "test_path")
        tf_, tl, test_names = _index_folder(root, cfg.test_path, "test_path", exclude)
        if test_names != names:
            raise SpecError(
                "data.test_path", cfg.test_path, f"a folder with the training classes {names} (it has {test_names})"
            )
        test = (tf_, tl)
    elif cfg.test_split:
        (files, labels), test = _hold_out(files, labels, cfg.test_split)
    files, labels = _subsample(files, labels, cfg)
    return files, labels, test, names


def split_sizes(cfg) -> tuple[int, int, int]:
    """(train, validation, test) image counts of ``cfg`` without decoding any image (for
    reports: the standard error of a validation accuracy depends on the validation size)."""
    validate_data_config(cfg)
    if cfg.source == "image_folder":
        files, labels, test, _ = _image_folder_files(cfg)
        n, n_test = len(labels), 0 if test is None else len(test[1])
    else:
        if cfg.source == "cifar10":
            n, n_test = 50000, 10000
        else:
            n = 1797 if cfg.source == "digits" else int(cfg.num_samples / (1.0 - cfg.validation_split))
            n_test = int(np.ceil(n * cfg.test_split)) if cfg.test_split else 0
            n -= n_test
    if cfg.max_samples is not None:
        n = min(n, cfg.max_samples)
    n_val = int(np.ceil(n * cfg.validation_split))
    return n - n_val, n_val, n_test


# Decoded image-folder splits kept in this process, by file lists and shape: a sweep worker
# trains many trials on the same images, and decoding them is most of a trial's data cost.
# Only folders whose pixels fit DECODED_CACHE_MB are kept (CIFAR-10's 50,000 images: 147 MB).
DECODED_CACHE_MB = 1024
_DECODED: dict[str, tuple[np.ndarray, ...]] = {}


def _decoded_images(parts, shape, files_ds):
    """uint8 pixel arrays of each file list in ``parts``, decoded once per process; None
    when too large."""
    if sum(len(p) for p in parts) * int(np.prod(shape)) > DECODED_CACHE_MB * 2**20:
        return None
    digest = hashlib.sha1()
    for part in parts:
        digest.update("\n".join(map(str, part)).encode() + b"\n--\n")
    digest.update(repr(shape).encode())
    key = digest.hexdigest()
    if key not in _DECODED:
        if _DECODED:  # another data set: keep one, so a process never holds several
            _DECODED.clear()

        def decode_all(i, files):
            import tensorflow as tf

            if not len(files):
                return np.zeros((0, *shape), dtype="uint8")
            labels = np.zeros(len(files), dtype="int32")
            try:
                return np.stack([img for img, _ in files_ds(files, labels).as_numpy_iterator()])
            except tf.errors.OpError:
                raise BadImages(i, unreadable(files, files_ds)) from None

        _DECODED[key] = tuple(decode_all(i, p) for i, p in enumerate(parts))
    return _DECODED[key]


class BadImages(Exception):
    """Files of an image folder that cannot be decoded: ``(path, reason)`` pairs, in
    ``part`` (0 train, 1 validation, 2 test)."""

    def __init__(self, part: int, bad: list[tuple[str, str]]):
        super().__init__(part, bad)
        self.part, self.bad = part, bad


def unreadable(files, files_ds) -> list[tuple[str, str]]:
    """The files among ``files`` that fail to decode, each with the decoder's reason."""
    import tensorflow as tf

    bad = []
    for f in files:
        try:
            next(iter(files_ds(np.array([f]), np.zeros(1, "int32"))))
        except tf.errors.OpError as err:
            bad.append((str(f), (err.message or type(err).__name__).strip().splitlines()[0][:200]))
    return bad


def _bad_images_error(cfg, err: BadImages) -> SpecError:
    key = "test_path" if err.part == 2 and cfg.test_path is not None else "path"
    shown = "; ".join(f"{f} ({why})" for f, why in err.bad[:5]) + (
        f"; and {len(err.bad) - 5} more" if len(err.bad) > 5 else ""
    )
    return SpecError(
        f"data.{key}",
        getattr(cfg, key),
        f"readable images: {len(err.bad)} cannot be decoded: {shown} (data.skip_bad_images=true skips them)",
    )


def _image_folder(cfg, batch_size: int, with_test: bool = True) -> DataSplits:
    """Index, split and decode an image folder. Files that cannot be decoded are named in a
    SpecError, or with ``data.skip_bad_images`` left out (the folder is indexed again without
    them, so the splits stay deterministic) and counted."""
    skipped: frozenset[str] = frozenset()
    while True:
        try:
            return _image_folder_splits(cfg, batch_size, skipped, with_test)
        except BadImages as err:
            if not cfg.skip_bad_images:
                raise _bad_images_error(cfg, err) from None
            log.warning("data: skipping %d images that cannot be decoded: %s", len(err.bad),
                        ", ".join(f for f, _ in err.bad[:10]) + (" ..." if len(err.bad) > 10 else ""))  # fmt: skip
            skipped = skipped | {f for f, _ in err.bad}


def _image_folder_splits(cfg, batch_size: int, skipped: frozenset[str], with_test: bool = True) -> DataSplits:
    import tensorflow as tf

    files, labels, test, names = _image_folder_files(cfg, skipped)
    num_test = 0 if test is None else len(test[1])
    test = test if with_test else None  # (listed and counted, never decoded)
    (ft, yt), (fv, yv) = _split(files, labels, cfg)
    h, w = cfg.image_size if cfg.image_size is not None else (32, 32)
    c = cfg.channels

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=c, expand_animations=False)
        image = tf.image.resize(image, (h, w), method="bilinear")
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    def files_ds(f, y):
        return tf.data.Dataset.from_tensor_slices((f, y)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    shape = (int(h), int(w), int(c))
    parts = [ft, fv] + ([test[0]] if test is not None else [])
    decoded = _decoded_images(parts, shape, files_ds) if cfg.cache else None
    if decoded is not None:  # decoded once per process: later trials decode nothing
        xt, xv = decoded[:2]
        sample = xt[:2000]
        train_src = tf.data.Dataset.from_tensor_slices((xt, yt))
        val_src = tf.data.Dataset.from_tensor_slices((xv, yv))
        test_src = tf.data.Dataset.from_tensor_slices((decoded[2], test[1])) if test is not None else None
    else:  # too large to keep: decoded as training reads them (bad files dropped, if asked, uncounted)
        try:
            sample = np.stack([img.numpy() for img, _ in files_ds(ft[:2000], yt[:2000])])
        except tf.errors.OpError:
            raise BadImages(0, unreadable(ft[:2000], files_ds)) from None
        train_src, val_src = files_ds(ft, yt), files_ds(fv, yv)
        test_src = files_ds(*test) if test is not None else None
        if cfg.skip_bad_images:
            train_src, val_src = train_src.ignore_errors(), val_src.ignore_errors()
            test_src = test_src.ignore_errors() if test_src is not None else None
    # Files come in any size: the shipped model takes images of any size and resizes them.
    prep = _preprocessing(cfg, (None, None, shape[2]), shape, sample)
    train = _pipeline(train_src, cfg, batch_size, shape, training=True)
    val = _pipeline(val_src, cfg, batch_size, shape, training=False)
    test_ds = _pipeline(test_src, cfg, batch_size, shape, training=False) if test_src is not None else None
    return DataSplits(
        train, val, test_ds, shape, len(names), len(yt), len(yv), num_test, names,
        "image_folder", prep, np.asarray(sample[:2]), str(Path(cfg.path).expanduser().resolve()),
        _digest(ft, yt, fv, yv, *(test or ())), len(skipped),
    )  # fmt: skip
