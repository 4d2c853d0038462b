"""Shared command-line plumbing: quiet TensorFlow start-up and clean user-facing errors."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys

from resnet_blocks import RegistryError, SpecError


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (must run before tensorflow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("absl").setLevel(logging.ERROR)


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class RunFailure(RuntimeError):
    """A run that started but failed for a reason the user should read (e.g. divergence)."""


def user_errors(fn):
    """A command's entry point: SpecError / RegistryError / UserError become one clear line and
    exit code 2, a RunFailure exit code 1; SIGTERM and SIGHUP stop it as Ctrl-C does (runs end
    KILLED), then exit with 128 + the signal's number (:mod:`experiments.signals`)."""
    from experiments.signals import Terminated, terminate_as_interrupt

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with terminate_as_interrupt():
                return fn(*args, **kwargs)
        except (SpecError, RegistryError, UserError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except RunFailure as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except Terminated as err:
            print(f"error: {err}; runs in progress ended KILLED", file=sys.stderr)
            sys.exit(err.exit_code)
        except OSError as err:  # a full disk wherever it strikes: one line (others: the traceback)
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {err.filename}" if err.filename else ""
            print(f"error: no space left on device{where}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:  # Ctrl-C: one line, as for SIGTERM (not Python's traceback)
            print("error: interrupted (Ctrl-C); runs in progress ended KILLED", file=sys.stderr)
            sys.exit(130)

    return wrapper


quiet_tensorflow()
