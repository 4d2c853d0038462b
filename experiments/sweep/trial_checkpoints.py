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

import logging
import re
import shutil
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from experiments.sweep import study as st
from resnet_blocks import SpecError

log = logging.getLogger("experiments.sweep")

INTERRUPTED_REASONS = ("terminated by SIG", "interrupted (KeyboardInterrupt)")


def checkpoint_root(setting: str | None, storage: str | None) -> Path | None:
    """The folder under which the trials' checkpoint folders go (None: checkpoints off). A
    path (or ``file://`` URI) every worker mounts; other URIs (``s3://``) are refused: the
    checkpoints are folders written atomically by rename, which object stores do not offer."""
    if setting in (None, "", "none", "None", False):
        return None
    if setting != "auto":
        text = str(setting)
        if text.startswith("file://"):
            text = text[len("file://") :]
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
            raise SpecError("hydra.sweeper.checkpoints", setting, "auto, none, or a folder every worker mounts "
                            "(a path or file:// URI; object stores such as s3:// are not supported)")  # fmt: skip
        return Path(text).expanduser().resolve()
    if st.is_sqlite(storage) and storage is not None and not storage.endswith(":memory:"):
        db = Path(storage.split("///", 1)[1])
        return db.resolve().with_name(f"{db.stem}-checkpoints")
    root = Path.cwd().resolve() / "sweep-checkpoints"
    if storage and not st.is_sqlite(storage):  # a shared study: workers elsewhere cannot see this folder
        log.warning("hydra.sweeper.checkpoints: auto is %s, on this machine only: a trial retried by a worker on "
                    "another machine starts over; give a folder all workers mount (hydra.sweeper.checkpoints=PATH)",
                    root)  # fmt: skip
    return root


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
