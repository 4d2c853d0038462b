"""Hydra entry points (run, describe), data sources, training, tracking and the sweeper."""

import os


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter (CUDA probing, CPU features) muted.

    TF 2.21 logs those lines before its log level is read, so the level alone cannot hide
    them; stderr is muted only for the import. Import errors still raise normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("RESNET_BLOCKS_VERBOSE_TF"):
        import tensorflow  # noqa: F401

        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_import_tensorflow_quietly()
