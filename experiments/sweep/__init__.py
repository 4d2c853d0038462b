"""Optuna-5 architecture search as a Hydra sweeper (``+sweep=<name>``).

``space``: search-space syntax -> Optuna distributions; ``study``: samplers, pruners, storage;
``sweeper``: the ask / launch / tell loop; ``job``: the trial side inside each job (pruning,
heartbeats); ``report``: the study summary logged to the parent MLflow run.
"""

import warnings

import optuna

# The plot functions and retry helpers we use are marked experimental; they are stable in
# practice and the warnings would drown the sweep's progress lines.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
