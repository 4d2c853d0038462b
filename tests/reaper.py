"""Servers started by tests die with the process that started them.

A test session killed outright (a CI timeout's SIGKILL) runs no ``finally``: an MLflow server
in its own session, or a PostgreSQL cluster that ``pg_ctl`` daemonised, would keep running.
``reap_when_gone`` starts a small watcher in a session of its own (so the kill that ends the
owner does not end it) that waits for the owner to exit and then kills the server's process
group; it exits by itself once the server has stopped normally.

    python -m tests.reaper OWNER_PID SERVER_PID [PATH_TO_REMOVE]
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time


def reap_when_gone(server_pid: int, remove: str | None = None) -> subprocess.Popen:
    """Watch this process; when it exits, kill ``server_pid``'s process group (and remove
    ``remove``). The watcher exits by itself once the server does."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reaper", str(os.getpid()), str(server_pid), *([remove] if remove else [])],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _alive(fd: int) -> bool:
    return not select.select([fd], [], [], 0)[0]


def _kill_group(pid: int) -> None:
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig) if group != os.getpgid(0) else os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def main(owner: int, server: int, remove: str | None) -> None:
    try:  # pidfds: no confusion with a reused pid
        owner_fd, server_fd = os.pidfd_open(owner), os.pidfd_open(server)
    except ProcessLookupError:
        owner_fd = server_fd = None
    if owner_fd is not None and server_fd is not None:
        select.select([owner_fd, server_fd], [], [])
        if not _alive(server_fd):
            return  # stopped normally
    _kill_group(server)
    if remove:
        shutil.rmtree(remove, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
