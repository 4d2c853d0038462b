"""Which process a run belongs to, and runs left RUNNING by processes that are gone."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from experiments.tracking.store import PARENT_RUN_TAG

log = logging.getLogger("experiments.tracking")


def process_tags() -> dict[str, str]:
    """Which process owns a run: a run left RUNNING by a process that is gone is marked KILLED
    by the next command on this host (:func:`reap_dead_runs`)."""
    return {
        "process.host": socket.gethostname(),
        "process.pid": str(os.getpid()),
        "process.start": _start_time(os.getpid()),
    }


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where unknown): with the pid, it
    tells a live process from a later one that reused the pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_gone(pid: str, start: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return bool(start) and _start_time(int(pid)) not in ("", start)


def reap_dead_runs(tracking_uri: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose process (on this host) is gone; return their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    host = socket.gethostname()
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    runs = client.search_runs(
        ids, filter_string=f"attributes.status = 'RUNNING' and tags.`process.host` = '{host}'", max_results=5000
    )
    reaped = []
    for run in runs:
        pid, start = run.data.tags.get("process.pid", ""), run.data.tags.get("process.start", "")
        if pid and _process_gone(pid, start):
            client.set_tag(
                run.info.run_id, "failure_reason", f"its process {pid} on {host} ended without ending the run"
            )
            client.set_terminated(run.info.run_id, status="KILLED")
            reaped.append(run.info.run_id)
    return reaped


def run_tags(tracking_uri: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
    """The tags of each run (of those that still exist)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    out = {}
    for run_id in run_ids:
        try:
            out[run_id] = dict(client.get_run(run_id).data.tags)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            continue
    return out


def tags_with_parents(tracking_uri: str, run_ids: list[str]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """The tags of each run (of those that still exist) and those of its parent run (``{}``
    for a run without one, or whose parent is gone)."""
    tags = run_tags(tracking_uri, run_ids)
    parents = run_tags(tracking_uri, sorted({t[PARENT_RUN_TAG] for t in tags.values() if PARENT_RUN_TAG in t}))
    return {run_id: (t, parents.get(t.get(PARENT_RUN_TAG, ""), {})) for run_id, t in tags.items()}


def shown_storage(url: str) -> str:
    """A storage URL as it may be recorded on a run: any password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
