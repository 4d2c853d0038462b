"""File locks beside SQLite stores: what several processes must not do at the same moment.

Two commands that create the same new SQLite store at once race in SQLAlchemy's table
creation ("table ... already exists"); a lock file next to the database serialises that
step. A second lock, held for a sweep's life, tells a sweeper that another one works on the
same SQLite study (which SQLite cannot serve safely). POSIX ``flock``: released by the
kernel when the process ends, however it ends. A lock file is removed when its lock is
released (so none is left beside the user's databases); whoever takes a lock checks that the
file it locked is still the one at that path, so removal never lets two holders in at once.
A process killed outright leaves its file behind, unlocked: the next holder takes it and
removes it.
"""

from __future__ import annotations

import atexit
import contextlib
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


def _lock(db: Path, suffix: str, *, wait: bool) -> tuple[int, Path] | None:
    """Lock ``<db><suffix>``: (its descriptor, its path), or None when ``wait`` is False and
    another process holds it."""
    db.parent.mkdir(parents=True, exist_ok=True)
    path = Path(str(db) + suffix)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd, path
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it as we locked it: take the new one


def _release(fd: int, path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # while still held: a waiter that gets it next sees it gone and retries
    os.close(fd)


@contextmanager
def sqlite_setup_lock(url: str | None) -> Iterator[None]:
    """Hold ``<db>.lock`` while a SQLite store is opened or changed in ways that race (table
    creation, a new study); no-op for other stores."""
    db = sqlite_path(url)
    if db is None:
        yield
        return
    fd, path = _lock(db, ".lock", wait=True)
    try:
        yield
    finally:
        _release(fd, path)


_HELD: list[tuple[int, Path, int]] = []  # worker locks, held until the process exits


@atexit.register
def _release_held() -> None:
    while _HELD:
        fd, path, owner = _HELD.pop()
        if owner == os.getpid():  # not in a forked child that inherited the list
            _release(fd, path)


def claim_sqlite_study(url: str | None, study_name: str) -> bool:
    """Claim ``study_name`` in a SQLite store for this process's life; False when another
    live process holds it (True for other stores)."""
    db = sqlite_path(url)
    if db is None:
        return True
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    held = _lock(db, f".{safe}.worker.lock", wait=False)
    if held is None:
        return False
    _HELD.append((*held, os.getpid()))
    return True
