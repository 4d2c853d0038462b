"""Independent command-line runs started together: each mostly waits on its TensorFlow import
(seconds), which overlap on 2 cores; the suite's error-path tests take about half the time."""

from __future__ import annotations

import subprocess


def run_together(calls: list[dict], timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """``subprocess.run(**call, capture_output=True, text=True)`` for every call, all at once."""
    procs = [subprocess.Popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **c) for c in calls]
    done = []
    for call, proc in zip(calls, procs):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        done.append(subprocess.CompletedProcess(call["args"], proc.returncode, out, err))
    return done
