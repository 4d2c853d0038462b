"""Imported first by the process launcher's fork server (and nowhere else): on Linux the
fork server then ends when the sweeper process dies, even by kill -9.

Without it, an orphaned fork server (its imported TensorFlow keeps threads alive, so it does
not exit on its own) would keep its workers, and a trial the sweeper has given up on would
go on training. Each worker in turn ends with the fork server (``_init_worker``).
"""

from experiments.sweep.launcher import die_with_parent

die_with_parent()
