"""Imported first by the process launcher's fork server (and nowhere else): on Linux the
fork server then ends when the sweeper process dies, even by kill -9, and not on SIGTERM
or SIGHUP sent to the process group (its workers would die with it mid-batch).

Without it, an orphaned fork server (its imported TensorFlow keeps threads alive, so it does
not exit on its own) would keep its workers, and a trial the sweeper has given up on would
go on training. Each worker in turn ends with the fork server (``_init_worker``).
"""

import warnings

# Each forked worker runs the sweep's main module (experiments.run) by name, which the fork
# server has imported already: runpy warns about that, once per worker, to no purpose.
warnings.filterwarnings("ignore", message="'experiments.run' found in sys.modules", category=RuntimeWarning)

from experiments.sweep.forkserver import die_with_parent, ignore_stop_signals  # noqa: E402

die_with_parent()
ignore_stop_signals()
