"""File locks beside SQLite stores: what several processes must not do at the same moment.

Two commands that create the same new SQLite store at once race in SQLAlchemy's table
creation ("table ... already exists"); a lock file next to the database serialises that
step. A second lock, held for a sweep's life, tells a sweeper that another one works on the
same SQLite study (which SQLite cannot serve safely). POSIX ``flock``: released by the
kernel when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sqlite_path(url: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other URLs and in-memory ones)."""
    if not url or not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _lock_file(db: Path, suffix: str) -> int:
    db.parent.mkdir(parents=True, exist_ok=True)
    return os.open(str(db) + suffix, os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def sqlite_setup_lock(url: str | None) -> Iterator[None]:
    """Hold ``<db>.lock`` while a SQLite store is opened or changed in ways that race (table
    creation, a new study); no-op for other stores."""
    db = sqlite_path(url)
    if db is None:
        yield
        return
    fd = _lock_file(db, ".lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_HELD: list[int] = []  # worker locks, held until the process exits


def claim_sqlite_study(url: str | None, study_name: str) -> bool:
    """Claim ``study_name`` in a SQLite store for this process's life; False when another
    live process holds it (True for other stores)."""
    db = sqlite_path(url)
    if db is None:
        return True
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    fd = _lock_file(db, f".{safe}.worker.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _HELD.append(fd)
    return True
