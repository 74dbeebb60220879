"""``workers: N``: N share-nothing turnout processes serving the same ports, under a supervisor.

The supervisor (:mod:`turnout.workers.supervisor`) starts the workers, restarts one that dies
(with a backoff, and gives up on a slot that keeps dying), forwards signals, drains them all on
SIGTERM, and owns the instance's admin port (:mod:`turnout.workers.admin`): metrics merged over
the workers, the workers' states, everything else answered by a worker.
"""

from __future__ import annotations

import os
from typing import Any

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


def as_worker_config(config: Any, admin_port: int) -> None:
    """Make ``config`` (a :class:`~turnout.config.LinkerConfig`) a worker's: its admin server on
    the loopback port the supervisor chose, in plain HTTP (``admin.tls`` is the supervisor's,
    which alone faces clients), its servers' sockets shared with the other workers
    (SO_REUSEPORT). Applied at start and to every configuration a worker reloads, so that a
    reload compares like with like."""
    from ..config.model import SocketOptionsConfig

    config.admin.ip, config.admin.port = "127.0.0.1", admin_port
    config.admin.tls = None
    for router in config.routers:
        for server in router.servers:
            if server.socket_options is None:
                server.socket_options = SocketOptionsConfig(reuse_port=True)
            else:
                server.socket_options.reuse_port = True


def worker_admin_port() -> int | None:
    """This process's admin port when it is one of a supervisor's workers, else None."""
    if os.environ.get(WORKER_ENV) is None:
        return None
    return int(os.environ[WORKER_ADMIN_PORT_ENV])
