"""``workers: N``: N share-nothing turnout processes serving the same ports, under a supervisor.

The supervisor (:mod:`turnout.workers.supervisor`) starts the workers, restarts one that dies
(with a backoff, and gives up on a slot that keeps dying), forwards signals, drains them all on
SIGTERM, and owns the instance's admin port (:mod:`turnout.workers.admin`): metrics merged over
the workers, the workers' states, everything else answered by a worker.
"""

from __future__ import annotations

import os

#: the environment of a worker: its index and the loopback port of its own admin server
WORKER_ENV = "TURNOUT_WORKER"
WORKER_ADMIN_PORT_ENV = "TURNOUT_WORKER_ADMIN_PORT"


def cpu_count() -> int:
    """The CPUs this process may run on (``workers: auto``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve(workers: int | str) -> int:
    """The number of worker processes ``workers`` (a number, or ``auto``) asks for."""
    return cpu_count() if workers == "auto" else int(workers)
