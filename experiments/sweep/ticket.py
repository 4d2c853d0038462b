"""What passes from the sweeper to a job, one way: the trial's ticket, and what the process
running the job offers it.

The sweeper creates the trial and writes its ticket; the executor hands both the job config
and the ticket to the job, whose trial function takes the ticket as an argument. Through our
process pool the ticket travels with the job itself; through any other Hydra launcher, whose
jobs receive only overrides, it travels as one Hydra-side override (``hydra.sweeper.ticket``),
which leaves the run's own config and its logged parameters untouched.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

TICKET_KEY = "ticket"  # hydra.sweeper.ticket (SweeperConf), set for each job


@dataclass(frozen=True)
class TrialTicket:
    """The trial a job trains, and the sweep settings the job acts on."""

    study_name: str
    storage: str
    number: int
    monitor: str  # the metric reported each epoch, for pruning
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "none"})  # the job decides when to stop
    constraints: dict[str, Any] | None = None  # checked on the job's own build
    parent_run_id: str | None = None  # the study's MLflow parent run
    retry_of: int | None = None  # the trial (killed with its worker) this one retries
    baseline: str | None = None  # the baseline's label, if the trial is one (experiments.sweep.baselines)
    checkpoint_dir: str | None = None  # the trial's checkpoints (shared with its retries); None: off
    keep_checkpoints: bool = False

    def hydra_override(self) -> str:
        """The ticket as a job override, for launchers whose jobs receive overrides only."""
        text = base64.urlsafe_b64encode(json.dumps(asdict(self)).encode()).decode().rstrip("=")
        return f"hydra.sweeper.{TICKET_KEY}={text}"

    @classmethod
    def from_hydra_job(cls) -> TrialTicket:
        """The ticket :meth:`hydra_override` put into the running job's Hydra config."""
        from hydra.core.hydra_config import HydraConfig

        text = HydraConfig.get().sweeper.get(TICKET_KEY)
        if not text:
            raise RuntimeError(
                f"this job has no trial ticket (hydra.sweeper.{TICKET_KEY}): was it launched by a sweep?"
            )
        return cls(**json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))


class JobServices:
    """What the process running a job offers it. These defaults suit any process; the process
    launcher's workers offer training slots and deferred clean-up (experiments.sweep.launcher)."""

    def training_slot(self, number: int) -> contextlib.AbstractContextManager:
        """Entered right before training; only ``n_jobs`` trials train at a time."""
        return contextlib.nullcontext()

    def trained_before(self) -> tuple[int, ...]:
        """The trials whose training ended before this one got its slot."""
        return ()

    def defer_cleanup(self, cleanup: Callable[[], None]) -> bool:
        """Run ``cleanup`` after the job's result is sent; False: not deferred, run it now."""
        return False


# The attribute a task function carries when its trials are trained by a trial function
# ``fn(cfg, ticket, services)``: the function, or its "module:name" (experiments.run's task
# names experiments.sweep.job.run_trial that way, since experiments.run never imports the sweep).
TRIAL_FUNCTION_ATTR = "sweep_trial_function"


def trial_function(task_function) -> Callable | None:
    """The trial function ``task_function`` names (see ``TRIAL_FUNCTION_ATTR``); None: a plain task."""
    ref = getattr(task_function, TRIAL_FUNCTION_ATTR, None)
    if isinstance(ref, str):
        module, name = ref.split(":")
        return LazyFunction(module, name)
    return ref


@dataclass(frozen=True)
class LazyFunction:
    """``module:name``, imported on the first call: the trial function's module imports Keras,
    which a sweep refused at start (or a dry run) never needs. Picklable, for worker processes."""

    module: str
    name: str

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


def hydra_job(trial_fn: Callable) -> Callable:
    """A task function for Hydra launchers: it reads its ticket from the job's Hydra config."""
    return functools.partial(_run_hydra_job, trial_fn)


def _run_hydra_job(trial_fn: Callable, cfg):
    return trial_fn(cfg, TrialTicket.from_hydra_job(), JobServices())
