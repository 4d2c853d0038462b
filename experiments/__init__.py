"""Hydra entry points (run, describe), data sources, training, tracking and the sweeper.

Importing the package imports neither TensorFlow nor Keras: commands that only compose,
validate or print a config stay fast; training imports them when it starts (muted:
:mod:`experiments.quiet_tensorflow`)."""

from experiments import quiet_tensorflow as _quiet_tensorflow

_quiet_tensorflow.install()
