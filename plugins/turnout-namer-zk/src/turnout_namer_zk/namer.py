"""The ``io.l5d.serversets`` and ``io.l5d.zkLeader`` namers: ZooKeeper watches, not polling.

Both are :class:`turnout.api.DiscoveryNamer` s: the base starts one watch per key (a
znode) when a route first needs it, keeps the last good address set through outages, fails
fast before the first answer and restarts a failed watch after a backoff. This module only
says how to read a key and when to read it again:

- one :class:`~turnout_namer_zk.zk.ZkConnection` (one kazoo client, one session) per namer,
  shared by all its keys, started by the first watch and closed by :meth:`ZkNamer.shutdown`;
- a watch waits (up to :data:`CONNECT_TIMEOUT`) for a connection, reads the key while
  leaving ZooKeeper watches on what it read, publishes the address set, and reads again each
  time one of those watches fires;
- when the connection is suspended or the session lost, kazoo and ZooKeeper drop every watch:
  the watch raises :class:`~turnout_namer_zk.zk.ConnectionLost`, the base keeps the last
  good set (and shows the error and the staleness), and the next attempt reads everything
  again, with new watches, once connected; so whatever changed meanwhile is picked up.

Each key has a single kazoo watch function for its whole life. kazoo keeps watch functions in
a set per znode, so reading a znode again (after a change, a reconnection, a new session)
never adds a second watch for it.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent
from turnout.api import (
    Addr,
    AddrBound,
    AddrNeg,
    DiscoveryNamer,
    MetricsTree,
    Path,
    Publish,
    reconnect_backoff,
)

from .serverset import (
    BadData,
    Member,
    is_member,
    leader_of,
    parse_leader_data,
    parse_member,
    serverset_addr,
    serverset_key,
    show_key,
    zk_path,
)
from .zk import ConnectionLost, Epoch, ZkConnection, ZkError

log = logging.getLogger("turnout.namer.zk")

K = TypeVar("K", bound=Hashable)

#: how long a watch waits for a ZooKeeper connection before it fails (seconds); before the
#: first answer, requests get a 502 with the error after at most this long
CONNECT_TIMEOUT = 2.0


def _discard(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Drop futures whose results are no longer wanted (after an error): cancel the pending
    ones, mark the failed ones' exceptions as seen (asyncio would log them otherwise)."""
    for fut in futures:
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()


class _Run:
    """One attempt at watching a key (it ends with the connection epoch it read in)."""

    __slots__ = ("deadline", "dirty", "members", "wake")

    def __init__(self) -> None:
        #: set by every watch event and by the end of the epoch: read again
        self.wake = asyncio.Event()
        #: the time limit of the read in progress (cut short when the epoch ends)
        self.deadline: asyncio.Timeout | None = None
        #: serverset members read in this attempt, by child name (None: unusable data)
        self.members: dict[str, Member | None] = {}
        #: children whose data changed since they were read
        self.dirty: set[str] = set()


class _KeyWatch:
    """A key's kazoo watch function, for the key's whole life, and its current attempt."""

    __slots__ = ("callback", "current", "znode")

    def __init__(self, zk: ZkConnection, znode: str) -> None:
        self.znode = znode
        self.current: _Run | None = None
        self.callback = zk.watcher(self._on_event)

    def _on_event(self, event: WatchedEvent) -> None:  # on the loop
        run = self.current
        if run is None:
            return
        path = event.path
        if path and path != self.znode and event.type in (EventType.CHANGED, EventType.DELETED):
            run.dirty.add(path.rsplit("/", 1)[-1])
        run.wake.set()


#: public names of the two helper types, for namers of other distributions built on
#: :class:`ZkNamer` (``turnout-namer-curator``): ``read(key, watch: KeyWatch, run: Run)``
KeyWatch = _KeyWatch
Run = _Run


class ZkNamer(DiscoveryNamer[K]):
    """What both ZooKeeper namers share: the connection, the watch loop, the state.

    :param id_prefix: ``/#/<prefix>``.
    :param hosts: kazoo connect string (``"10.0.0.1:2181,10.0.0.2:2181"``).
    :param session_timeout: ZooKeeper session timeout in seconds.
    :param metrics: the metrics tree (``namer/#/<prefix>/...`` and ``.../zk/...``).
    """

    def __init__(
        self,
        id_prefix: Path,
        hosts: str,
        *,
        session_timeout: float = 10.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        metrics: MetricsTree | None = None,
    ) -> None:
        # kazoo paces reconnections itself; this backoff only spaces the watch's attempts
        super().__init__(id_prefix, metrics=metrics, backoff=reconnect_backoff(0.1, 1.0))
        self.zk = ZkConnection(hosts, session_timeout=session_timeout)
        self.connect_timeout = connect_timeout
        #: bound on one read of a key (ZooKeeper answers in milliseconds when connected)
        self.read_timeout = max(session_timeout, 1.0)
        self._keys: dict[K, _KeyWatch] = {}
        self._warned: dict[str, int] = {}
        if metrics is not None:
            zk = self.zk
            scope = (*self.stats_scope, "zk")
            metrics.gauge(*scope, "connected", fn=lambda: 1.0 if zk.connected else 0.0)
            metrics.gauge(*scope, "sessions", fn=lambda: zk.sessions)
            metrics.gauge(*scope, "connection_losses", fn=lambda: zk.connection_losses)
            metrics.gauge(*scope, "session_expirations", fn=lambda: zk.session_expirations)
            metrics.gauge(*scope, "watchers", fn=zk.watcher_count)

    # -- what each kind implements ---------------------------------------------------------
    @abstractmethod
    def znode_of(self, key: K) -> str:
        """The znode ``key`` watches."""

    @abstractmethod
    async def read(self, key: K, watch: _KeyWatch, run: _Run) -> Addr:
        """Read ``key`` once, leaving ``watch.callback`` as the watch on everything read."""

    # -- DiscoveryNamer ----------------------------------------------------------------------
    async def watch(self, key: K, publish: Publish) -> None:
        epoch = await self.zk.wait_connected(self.connect_timeout)
        watch = self._keys.get(key)
        if watch is None:
            watch = self._keys[key] = _KeyWatch(self.zk, self.znode_of(key))
        run = _Run()
        watch.current = run
        loop = asyncio.get_running_loop()

        def ended() -> None:  # the connection ended: stop waiting, stop reading
            run.wake.set()
            if run.deadline is not None:
                run.deadline.reschedule(loop.time())

        epoch.on_end.add(ended)
        try:
            while True:
                self._check(epoch)
                run.wake.clear()
                try:
                    async with asyncio.timeout(self.read_timeout) as run.deadline:
                        addr = await self.read(key, watch, run)
                except TimeoutError:
                    self._check(epoch)
                    raise ZkError(
                        f"ZooKeeper {self.zk.hosts} did not answer in {self.read_timeout:g}s"
                    ) from None
                finally:
                    run.deadline = None
                self._check(epoch)  # an answer from a connection that ended is not news
                publish(addr)
                await run.wake.wait()
        finally:
            epoch.on_end.discard(ended)
            if watch.current is run:
                watch.current = None

    def _check(self, epoch: Epoch) -> None:
        if not epoch.alive:
            raise ConnectionLost(
                f"connection to ZooKeeper {self.zk.hosts} lost ({self.zk.state_name})"
            )

    async def shutdown(self) -> None:
        await self.zk.close()

    def state(self) -> dict[str, Any]:
        out = super().state()
        out["zookeeper"] = self.zk.state()
        return out

    # -- helpers for read() --------------------------------------------------------------------
    async def _children(self, znode: str, watch: _KeyWatch) -> list[str] | None:
        """The children of ``znode`` with a child watch, or None (with an existence watch)
        when it does not exist."""
        zk = self.zk
        client = zk.client
        assert client is not None
        while True:
            try:
                children: list[str] = await zk.submit(
                    client.get_children_async, znode, watch.callback
                )
                return children
            except NoNodeError:
                # watch for its creation; if it was created meanwhile, list it again
                if await zk.submit(client.exists_async, znode, watch.callback) is None:
                    return None

    def _warn_once(self, key: K, child_path: str, mzxid: int, error: str) -> None:
        """Log unusable data once per version of the node (not at every read)."""
        if self._warned.get(child_path) == mzxid:
            return
        if len(self._warned) > 10_000:
            self._warned.clear()
        self._warned[child_path] = mzxid
        log.warning("%s %s: %s skipped: %s", self.kind, self.label_of(key), child_path, error)


class ServersetsNamer(ZkNamer[tuple[str, str | None]]):
    """``io.l5d.serversets``: ``/#/io.l5d.serversets/<znode path>[:<endpoint>]`` binds to the
    ALIVE members of the serverset at that znode (see :mod:`turnout_namer_zk.serverset`)."""

    kind = "io.l5d.serversets"

    def key_of(self, path: Path) -> tuple[tuple[str, str | None], int] | None:
        key = serverset_key(path)
        return None if key is None else (key, len(path))

    def label_of(self, key: tuple[str, str | None]) -> str:
        return show_key(key)

    def znode_of(self, key: tuple[str, str | None]) -> str:
        return key[0]

    async def read(self, key: tuple[str, str | None], watch: _KeyWatch, run: _Run) -> Addr:
        znode, endpoint = key
        children = await self._children(znode, watch)
        if children is None:
            run.members.clear()
            return AddrNeg
        names = sorted(c for c in children if is_member(c))
        current = set(names)
        for name in [n for n in run.members if n not in current]:
            del run.members[name]
        stale, run.dirty = run.dirty, set()
        todo = [n for n in names if n not in run.members or n in stale]
        zk = self.zk
        client = zk.client
        assert client is not None
        # every read is sent at once (pipelined on the one connection), then collected
        pending = [
            (name, zk.submit(client.get_async, f"{znode}/{name}", watch.callback)) for name in todo
        ]
        try:
            for name, fut in pending:
                try:
                    data, stat = await fut
                except NoNodeError:  # gone since the listing; its child watch has fired
                    run.members.pop(name, None)
                    continue
                run.members[name] = self._member(key, f"{znode}/{name}", data, stat.mzxid)
        finally:
            _discard(fut for _, fut in pending)
        return serverset_addr((run.members.get(n) for n in names), endpoint)

    def _member(
        self, key: tuple[str, str | None], path: str, data: bytes, mzxid: int
    ) -> Member | None:
        try:
            return parse_member(data or b"")
        except BadData as e:
            self._warn_once(key, path, mzxid, f"bad ServerSet member data ({e})")
            return None


class BadLeaderData(ValueError):
    """The leader of a group published no usable address."""


class ZkLeaderNamer(ZkNamer[str]):
    """``io.l5d.zkLeader``: ``/#/io.l5d.zkLeader/<znode path>`` binds to the address the
    group's leader (its member with the lowest sequence number) published."""

    kind = "io.l5d.zkLeader"

    def key_of(self, path: Path) -> tuple[str, int] | None:
        znode = zk_path(path)
        return None if znode is None else (znode, len(path))

    def znode_of(self, key: str) -> str:
        return key

    async def read(self, key: str, watch: _KeyWatch, run: _Run) -> Addr:
        zk = self.zk
        client = zk.client
        assert client is not None
        while True:
            children = await self._children(key, watch)
            if children is None:
                return AddrNeg
            leader = leader_of(children)
            if leader is None:
                return AddrNeg  # nobody is running for leader
            path = f"{key}/{leader}"
            try:
                data, _stat = await zk.submit(client.get_async, path, watch.callback)
            except NoNodeError:
                continue  # the leader left between the listing and the read
            try:
                return AddrBound(parse_leader_data(data or b""))
            except BadData as e:
                # keep the last good leader; the error shows in /namer_state
                raise BadLeaderData(f"leader {path} published no address: {e}") from None
