"""``io.l5d.zk``: namerd's dtabs in ZooKeeper (Linkerd's ``ZkDtabStore``).

Each namespace is the persistent znode ``<pathPrefix>/<ns>``; its data is the dtab's text
(UTF-8) and its version is the znode's data version as 4 big-endian bytes (Linkerd's
``versionBuf``: the first ``ETag`` of a namespace is ``AAAAAA==``).

- ``create`` creates the znode with the configured ACLs (``pathPrefix`` is made when missing,
  with the same ACLs); ``NodeExists`` → :class:`NamespaceExists`.
- ``put`` without a version sets the data, creating the znode when missing (an upsert); with
  a version it is a conditional ``setData``: ``BadVersion`` → :class:`VersionMismatch`,
  ``NoNode`` → :class:`NamespaceNotFound`.
- ``delete`` deletes the znode; ``list`` reads the children of ``pathPrefix``.
- ``watch``/``watch_list`` read with a ZooKeeper data/children watch and read again each time
  it fires. A connection loss or an expired session ends the epoch the read belonged to
  (:mod:`turnout_namer_zk.zk`); the watch then waits for the next connection (or session) and
  reads again with a new ZooKeeper watch. A watcher sees the current state first, then each
  distinct state (a state equal to the last one seen, as after a reconnection, is skipped).

While ZooKeeper cannot be reached, an operation fails after :data:`OPERATION_TIMEOUT` seconds
with :class:`ZkStoreUnavailable` (namerd answers the request with an error and keeps serving
the dtabs its watches saw last); a ZooKeeper ``NoAuth`` is :class:`ZkForbidden`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionExpiredError,
)
from kazoo.retry import KazooRetry
from kazoo.security import ACL, Id
from turnout.api import (
    Dtab,
    DtabStore,
    DtabStoreForbidden,
    NamespaceExists,
    NamespaceNotFound,
    Versioned,
    VersionMismatch,
)

from .zk import RECONNECT_MAX_DELAY, Epoch, ZkConnection, ZkError

log = logging.getLogger("turnout.namerd.zk")

#: how long an operation waits for a connection and then for ZooKeeper's answer (seconds)
OPERATION_TIMEOUT = 5.0

_PERMS = {"r": 1, "w": 2, "c": 4, "d": 8, "a": 16}


class ZkStoreUnavailable(ZkError):
    """ZooKeeper did not answer in time (unreachable, or no quorum)."""


class ZkForbidden(ZkError, DtabStoreForbidden):
    """ZooKeeper refused the operation (``NoAuth``): check ``authInfo`` and ``acls``. namerd's
    HTTP API answers 403."""


def zk_acl(scheme: str, ident: str, perms: str) -> ACL:
    """A kazoo ACL from Linkerd's ``{scheme, id, perms}`` (perms a subset of ``crwda``)."""
    bits = 0
    for c in perms:
        if c not in _PERMS:
            raise ValueError(f"{c} is not a valid permission")
        bits |= _PERMS[c]
    return ACL(bits, Id(scheme, ident))


def encode_version(version: int) -> bytes:
    """A znode data version as Linkerd encodes it: 4 bytes, big-endian."""
    return version.to_bytes(4, "big", signed=True)


def decode_version(version: bytes) -> int | None:
    """The znode data version of an encoded version; None when it is not 4 bytes."""
    if len(version) != 4:
        return None
    return int.from_bytes(version, "big", signed=True)


class _AuthConnection(ZkConnection):
    """A :class:`ZkConnection` whose client sends ``auth_info`` on every connection."""

    def __init__(
        self, hosts: str, *, session_timeout: float, auth_info: tuple[str, str] | None
    ) -> None:
        super().__init__(hosts, session_timeout=session_timeout)
        self.auth_info = auth_info

    def start(self) -> None:
        if self.client is not None:
            return
        if self._closed:
            raise ZkError("the ZooKeeper client is closed")
        import time

        self._loop = asyncio.get_running_loop()
        self._up = asyncio.Event()
        client = KazooClient(
            hosts=self.hosts,
            timeout=self.session_timeout,
            connection_retry=KazooRetry(
                max_tries=-1, delay=0.1, backoff=2, max_delay=RECONNECT_MAX_DELAY
            ),
            auth_data=[self.auth_info] if self.auth_info is not None else None,
            logger=self._logger,
        )
        client.add_listener(self._listener)
        self.client = client
        self.state_name, self.state_since = "CONNECTING", time.time()
        client.start_async()


class ZkDtabStore(DtabStore):
    """A :class:`DtabStore` in ZooKeeper (see the module docstring).

    :param hosts: kazoo connect string, ``"host:port,host:port"``.
    :param path_prefix: the znode holding one child per namespace.
    :param session_timeout: seconds.
    :param auth_info: ``(scheme, auth)`` added to every session, or None.
    :param acls: ``(scheme, id, perms)`` set on every znode created.
    """

    def __init__(
        self,
        hosts: str,
        *,
        path_prefix: str = "/dtabs",
        session_timeout: float = 10.0,
        auth_info: tuple[str, str] | None = None,
        acls: Sequence[tuple[str, str, str]] = (("world", "anyone", "crwda"),),
        operation_timeout: float = OPERATION_TIMEOUT,
    ) -> None:
        self.prefix = path_prefix.rstrip("/") or "/dtabs"
        self.acls = [zk_acl(*acl) for acl in acls]
        self.operation_timeout = operation_timeout
        self.conn = _AuthConnection(hosts, session_timeout=session_timeout, auth_info=auth_info)
        self._closed = False

    def is_closed(self) -> bool:
        """Whether :meth:`close` was called (watches then end)."""
        return self._closed

    def _path(self, ns: str) -> str:
        return f"{self.prefix}/{ns}"

    # -- requests ------------------------------------------------------------------------------
    async def _call(self, name: str, *args: Any) -> Any:
        """``client.<name>_async(*args)`` once connected; its result (kazoo's exceptions
        pass through; a timeout or a lost connection is :class:`ZkStoreUnavailable`)."""
        try:
            await self.conn.wait_connected(self.operation_timeout)
            client = self.conn.client
            if client is None:
                raise ZkError("the ZooKeeper client is closed")
            async with asyncio.timeout(self.operation_timeout):
                return await self.conn.submit(getattr(client, f"{name}_async"), *args)
        except NoAuthError as e:
            raise ZkForbidden(f"ZooKeeper refused {name} {args[0]}: NoAuth") from e
        except (ZkError, TimeoutError) as e:
            raise ZkStoreUnavailable(
                f"ZooKeeper {self.conn.hosts} unavailable ({name} {args[0]}): "
                f"{str(e) or type(e).__name__}"
            ) from e
        except (ConnectionLoss, ConnectionClosedError, SessionExpiredError) as e:
            raise ZkStoreUnavailable(
                f"ZooKeeper {self.conn.hosts} unavailable ({name} {args[0]}): {type(e).__name__}"
            ) from e

    @staticmethod
    def _decode(path: str, data: bytes | None) -> Dtab:
        try:
            return Dtab.read((data or b"").decode("utf-8"))
        except Exception as e:
            raise ValueError(f"the znode {path} does not hold a valid dtab: {e}") from e

    async def list(self) -> list[str]:
        try:
            children = await self._call("get_children", self.prefix)
        except NoNodeError:
            return []
        return sorted(children)

    async def get(self, ns: str) -> tuple[Dtab, bytes] | None:
        path = self._path(ns)
        try:
            data, stat = await self._call("get", path)
        except NoNodeError:
            return None
        return self._decode(path, data), encode_version(stat.version)

    async def create(self, ns: str, dtab: Dtab) -> bytes:
        try:
            await self._call(
                "create", self._path(ns), dtab.show.encode(), self.acls, False, False, True
            )
        except NodeExistsError:
            raise NamespaceExists(ns) from None
        return encode_version(0)

    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        path, data = self._path(ns), dtab.show.encode()
        if expected is not None:
            version = decode_version(expected)
            if version is None or version < 0:  # matches no znode version
                if await self.get(ns) is None:
                    raise NamespaceNotFound(ns)
                raise VersionMismatch()
            try:
                stat = await self._call("set", path, data, version)
            except BadVersionError:
                raise VersionMismatch() from None
            except NoNodeError:
                raise NamespaceNotFound(ns) from None
            return encode_version(stat.version)
        for _ in range(5):  # an upsert: set, or create when missing (racing other writers)
            try:
                stat = await self._call("set", path, data, -1)
                return encode_version(stat.version)
            except NoNodeError:
                pass
            try:
                await self._call("create", path, data, self.acls, False, False, True)
                return encode_version(0)
            except NodeExistsError:
                pass
        raise ZkStoreUnavailable(f"could not write {path}: concurrent creates and deletes")

    async def delete(self, ns: str) -> None:
        try:
            await self._call("delete", self._path(ns), -1)
        except NoNodeError:
            raise NamespaceNotFound(ns) from None
        except NotEmptyError:  # (not written by namerd)
            raise ZkForbidden(f"the znode {self._path(ns)} has children") from None

    # -- watches ---------------------------------------------------------------------------
    async def _follow(
        self, path: str, read: Callable[[Callable[[Any], None]], Any], what: str
    ) -> AsyncIterator[Any]:
        """Read with ``read(watch_fn)`` in each epoch and again whenever the watch fires or
        the epoch ends; yield each distinct value."""
        changed = asyncio.Event()
        watch: Callable[[Any], None] | None = None
        unset: Any = object()
        last: Any = unset
        epoch: Epoch | None = None
        try:
            while not self.is_closed():
                try:
                    epoch = await self.conn.wait_connected(3600.0)
                except ZkError:
                    if self.is_closed():
                        return
                    continue
                if watch is None:
                    watch = self.conn.watcher(lambda _event: changed.set())
                changed.clear()
                epoch.on_end.add(changed.set)
                try:
                    value = await read(watch)
                except (ZkStoreUnavailable, ZkForbidden, ValueError) as e:
                    # a lost connection ends the epoch: wait for the next one; anything else
                    # (NoAuth, a bad dtab) waits for the next change, keeping the last value
                    log.warning("watching %s %s: %s", what, path, e)
                    if epoch.alive and isinstance(e, ZkStoreUnavailable):
                        await asyncio.sleep(0.2)
                        epoch.on_end.discard(changed.set)
                        continue
                else:
                    if last is unset or value != last:
                        last = value
                        yield value
                await changed.wait()
                epoch.on_end.discard(changed.set)
        finally:
            if epoch is not None:
                epoch.on_end.discard(changed.set)
            client = self.conn.client
            if watch is not None and client is not None:
                for watchers in (client._data_watchers, client._child_watchers):
                    with contextlib.suppress(Exception):
                        watchers[path].discard(watch)

    async def _read_node(self, path: str, watch: Callable[[Any], None]) -> Versioned:
        while True:
            try:
                data, stat = await self._call("get", path, watch)
                return self._decode(path, data), encode_version(stat.version)
            except NoNodeError:
                # watch for its creation; it may have been created in between: read again
                if await self._call("exists", path, watch) is None:
                    return None, None

    async def _read_children(self, watch: Callable[[Any], None]) -> builtins.list[str]:
        while True:
            try:
                return sorted(await self._call("get_children", self.prefix, watch))
            except NoNodeError:
                if await self._call("exists", self.prefix, watch) is None:
                    return []

    def watch(self, ns: str) -> AsyncIterator[Versioned]:
        path = self._path(ns)
        # a delete and a re-create both restart at version 0: compare the dtab too
        return self._follow(path, lambda w: self._read_node(path, w), "dtab")

    def watch_list(self) -> AsyncIterator[builtins.list[str]]:
        return self._follow(self.prefix, self._read_children, "namespaces under")

    async def close(self) -> None:
        self._closed = True
        await self.conn.close()

    def state(self) -> dict[str, Any]:
        """The connection's state (for admin pages and tests)."""
        return {"pathPrefix": self.prefix, **self.conn.state()}


__all__ = [
    "OPERATION_TIMEOUT",
    "ZkDtabStore",
    "ZkForbidden",
    "ZkStoreUnavailable",
    "decode_version",
    "encode_version",
    "zk_acl",
]
