"""Where a sweep's trials keep their checkpoints, and which stopped trials are tried again.

Every trial of a ResNet sweep trains with ``trainer.checkpoint_dir`` set to a folder of its
own (:mod:`experiments.checkpoints` writes it at each epoch's end). The folder is named by the
trial a retry descends from, so a trial retried after its worker died, or after the sweep
was stopped by a signal, finds the epochs the first attempt trained. The root is
``hydra.sweeper.checkpoints``: ``auto`` puts it beside a SQLite study (``optuna.db`` ->
``optuna-checkpoints/``) or in the working directory; workers on several machines sharing a
PostgreSQL study give it a path they all mount; ``none`` turns checkpoints off.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from experiments.sweep import study as st

INTERRUPTED_REASONS = ("terminated by SIG", "interrupted (KeyboardInterrupt)")


def checkpoint_root(setting: str | None, storage: str | None) -> Path | None:
    """The folder under which the trials' checkpoint folders go (None: checkpoints off)."""
    if setting in (None, "", "none", "None", False):
        return None
    if setting != "auto":
        return Path(str(setting)).expanduser().resolve()
    if st.is_sqlite(storage) and storage is not None and not storage.endswith(":memory:"):
        db = Path(storage.split("///", 1)[1])
        return db.resolve().with_name(f"{db.stem}-checkpoints")
    return Path.cwd().resolve() / "sweep-checkpoints"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "study"


def study_folder(root: Path, study_name: str) -> Path:
    return root / _safe(study_name)


def trial_folder(root: Path, study_name: str, number: int, retry_of: int | None) -> str:
    """The checkpoint folder of trial ``number``: the first attempt's, for a retry."""
    return str(study_folder(root, study_name) / f"t{(retry_of if retry_of is not None else number):04d}")


def was_interrupted(trial: FrozenTrial) -> bool:
    """The trial failed because its sweep was stopped (SIGTERM, Ctrl-C), not on its own."""
    reason = str(trial.user_attrs.get(st.FAIL_REASON_ATTR, ""))
    return trial.state == TrialState.FAIL and any(r in reason for r in INTERRUPTED_REASONS)


def interrupted_to_retry(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Interrupted trials no later trial retries yet: a resumed sweep tries them again (from
    their checkpoints), as it does trials whose worker died."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return [t for t in trials if was_interrupted(t) and t.number not in retried]


def remove_study_checkpoints(root: Path | None, study_name: str) -> None:
    """The sweep reached its total: no trial of it will be retried, its checkpoints can go."""
    if root is not None:
        shutil.rmtree(study_folder(root, study_name), ignore_errors=True)
        try:
            root.rmdir()  # (only if no other study keeps checkpoints there)
        except OSError:
            pass
