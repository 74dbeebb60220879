"""The global namer ``/$/io.buoyant.namer.zk.leader/<host:port::host:port>/<zkPath…>``.

Linkerd's ``io.buoyant.namer.zk.leader`` (a class-named namer, reachable from any dtab and from
any name a plugin binds, such as Marathon's ``dst``): the first label lists the ZooKeeper
servers, ``::``-separated (each ``host:port``; a label may also hold several separated by
commas, as Finagle's ``InetSocketAddressUtil.parseHostPorts`` reads them), and the rest is the
znode of a leader-election group. It binds to the address the group's leader published, read
and watched exactly as the ``io.l5d.zkLeader`` namer does (same code: the leader is the
candidate with the lowest sequence number; its data is ``host:port`` or ServerSet JSON).

One :class:`~turnout_namer_zk.namer.ZkLeaderNamer` (one ZooKeeper session) per distinct
servers label, made when a name first uses it. The bound id is the name itself:
``/$/io.buoyant.namer.zk.leader/<servers>/<zkPath>``.

A global namer is one object for the whole process, while a ZooKeeper client belongs to the
event loop it started on: a namer whose loop has ended is replaced by a new one, and the
``turnout_shutdown`` hook closes those of the stopping linker's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from typing import TYPE_CHECKING

from turnout.api import Activity, BindingError, Name, Namer, NameTree, Neg, Path

if TYPE_CHECKING:  # kazoo is imported only when a name is looked up
    from .namer import ZkLeaderNamer

log = logging.getLogger("turnout.namer.zk")

#: the name under ``/$`` (Linkerd's class name ``io.buoyant.namer.zk.leader``)
GLOBAL_NAME = "io.buoyant.namer.zk.leader"

#: distinct server lists kept before namers nobody watches are dropped
MAX_NAMERS = 100


def parse_zk_hosts(label: str) -> str:
    """The servers label → a kazoo connect string: ``"zk1:2181::zk2:2181"`` →
    ``"zk1:2181,zk2:2181"``. Each server is ``host:port`` (the port is required, as in
    Linkerd); :class:`ValueError` naming the bad part otherwise."""
    servers: list[str] = []
    for part in label.split("::"):
        for item in re.split(r"[\s,]+", part):
            if not item:
                continue
            host, colon, port = item.rpartition(":")
            if not colon or not host or ":" in host:
                raise ValueError(
                    f"ZooKeeper server {item!r} is not host:port (separate servers with '::')"
                )
            if not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
                raise ValueError(f"ZooKeeper server {item!r}: the port must be 1 to 65535")
            servers.append(f"{host}:{int(port)}")
    if not servers:
        raise ValueError("no ZooKeeper server given (expected host:port::host:port)")
    return ",".join(servers)


def _loop_of(namer: ZkLeaderNamer) -> asyncio.AbstractEventLoop | None:
    return namer.zk._loop


def _stop_detached(namer: ZkLeaderNamer) -> None:
    """Stop the kazoo client of a namer whose event loop is gone (its threads would run
    forever): in a thread, since kazoo's ``stop`` blocks."""
    client = namer.zk.client
    namer.zk.client = None
    if client is None:
        return

    def stop() -> None:
        with contextlib.suppress(Exception):
            client.stop()
            client.close()

    threading.Thread(target=stop, name="turnout-zk-close", daemon=True).start()


class ZkLeaderGlobalNamer(Namer):
    """``/$/io.buoyant.namer.zk.leader/<servers>/<zkPath…>`` (see the module docstring).

    :param session_timeout: the ZooKeeper session timeout asked for, in seconds.
    """

    def __init__(self, *, session_timeout: float = 10.0) -> None:
        self.session_timeout = session_timeout
        #: the servers label (as written) → its namer
        self.namers: dict[str, ZkLeaderNamer] = {}

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        if len(path) < 2:  # the servers and at least one znode name
            return Activity.of(Neg)
        try:
            label = path[0].decode("utf-8")
            hosts = parse_zk_hosts(label)
        except (UnicodeDecodeError, ValueError) as e:
            return Activity.failed(BindingError(f"/$/{GLOBAL_NAME}/{path.show[1:]}: {e}"))
        return self.namer_for(label, hosts).lookup(path.drop(1))

    def namer_for(self, label: str, hosts: str) -> ZkLeaderNamer:
        """The namer of the servers ``label`` (connect string ``hosts``), made if needed, or
        made again when its event loop is not the running one."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        namer = self.namers.get(label)
        if namer is not None:
            loop = _loop_of(namer)
            moved = running is not None and loop is not running
            stale = namer.closed or (loop is not None and (loop.is_closed() or moved))
            if not stale:
                return namer
            if not namer.closed:
                _stop_detached(namer)
            del self.namers[label]
        if len(self.namers) >= MAX_NAMERS:
            self._forget_unused()
        from .namer import ZkLeaderNamer

        namer = ZkLeaderNamer(
            Path.of("$", GLOBAL_NAME, label), hosts, session_timeout=self.session_timeout
        )
        namer.kind = f"/$/{GLOBAL_NAME}/{label}"  # how its errors and logs name it
        self.namers[label] = namer
        return namer

    def _forget_unused(self) -> None:
        for label, namer in list(self.namers.items()):
            if namer.active_watches() == 0:
                _stop_detached(namer)
                del self.namers[label]

    async def close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the namers whose ZooKeeper clients run on ``loop`` (a stopping linker's)."""
        for label, namer in list(self.namers.items()):
            if _loop_of(namer) is loop:
                del self.namers[label]
                await namer.close()

    def state(self) -> dict[str, object]:
        return {
            "kind": GLOBAL_NAME,
            "namers": {label: namer.state() for label, namer in self.namers.items()},
        }


#: the process-wide instance registered under ``/$/io.buoyant.namer.zk.leader``
GLOBAL_LEADER_NAMER = ZkLeaderGlobalNamer()
