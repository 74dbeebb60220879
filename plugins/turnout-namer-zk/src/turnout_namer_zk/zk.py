"""One kazoo client per namer, bridged onto the asyncio event loop.

kazoo has no asyncio handler, so the client runs its own threads (the thread handler: one
connection thread and two callback threads) and everything it reports crosses over with
``loop.call_soon_threadsafe``:

- connection states (``CONNECTED``, ``SUSPENDED``, ``LOST``) from the state listener;
- the results of asynchronous requests (``get_children_async``, ``get_async``,
  ``exists_async``) become asyncio futures (:meth:`ZkConnection.submit`);
- watch events go to the callback given to :meth:`ZkConnection.watcher`.

Nothing on the event loop ever blocks on ZooKeeper. The client is started lazily, by the
first watch, and keeps reconnecting on its own (every ``0.1 s`` doubling up to
:data:`RECONNECT_MAX_DELAY`) until :meth:`ZkConnection.close`. Each period of connectivity is
an *epoch*: a watch remembers the epoch it read in and stops (raising :class:`ConnectionLost`)
when that epoch ends, because kazoo drops every watch on a disconnection and ZooKeeper drops
them with an expired session. The namer then reads again, with new watches, in the next
epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.protocol.states import WatchedEvent
from kazoo.retry import KazooRetry

log = logging.getLogger("turnout.namer.zk")

#: longest pause between two connection attempts while ZooKeeper is unreachable (seconds)
RECONNECT_MAX_DELAY = 2.0


class ZkError(Exception):
    """ZooKeeper cannot be used right now (not connected, connection lost, closed)."""


class NotConnected(ZkError):
    """No connection to ZooKeeper within the time allowed."""


class ConnectionLost(ZkError):
    """The connection (or the session) a watch was reading in ended."""


class Epoch:
    """One uninterrupted connection: ends at the next ``SUSPENDED`` or ``LOST``."""

    __slots__ = ("alive", "on_end", "session_id")

    def __init__(self, session_id: int | None) -> None:
        self.alive = True
        self.session_id = session_id
        #: called (on the loop) when the epoch ends; each watch reading in it adds one
        self.on_end: set[Callable[[], None]] = set()

    def end(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for callback in list(self.on_end):
            callback()


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """kazoo's logger. kazoo logs every failed connection attempt at WARNING; during an
    outage only the first message above DEBUG keeps its level, the rest are DEBUG until the
    client is connected again (turnout's rule: warn once, then debug)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self.quiet = False

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if level >= logging.WARNING:
            if self.quiet:
                level = logging.DEBUG
            else:
                self.quiet = True
        elif level > logging.DEBUG and self.quiet:
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


def _settle(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if fut.done():  # the waiter gave up (timeout, cancellation)
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class ZkConnection:
    """The kazoo client of one namer (see the module docstring).

    :param hosts: kazoo connect string, ``"host:port,host:port"``.
    :param session_timeout: the session timeout asked of ZooKeeper, in seconds.
    """

    def __init__(self, hosts: str, *, session_timeout: float = 10.0) -> None:
        self.hosts = hosts
        self.session_timeout = session_timeout
        self.client: KazooClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up: asyncio.Event | None = None
        self._epoch: Epoch | None = None
        self._logger = _QuietLogger(logging.getLogger("turnout.namer.zk.kazoo"))
        self._closed = False
        #: what ``/namer_state`` shows about the connection
        self.state_name = "NOT_STARTED"
        self.state_since: float | None = None
        self.session_id: int | None = None
        self.sessions = 0
        self.connection_losses = 0
        self.session_expirations = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create and start the client (once; later calls do nothing). Needs the running
        event loop: callbacks are delivered to it."""
        if self.client is not None:
            return
        if self._closed:
            raise ZkError("the ZooKeeper client is closed")
        self._loop = asyncio.get_running_loop()
        self._up = asyncio.Event()
        client = KazooClient(
            hosts=self.hosts,
            timeout=self.session_timeout,
            connection_retry=KazooRetry(
                max_tries=-1, delay=0.1, backoff=2, max_delay=RECONNECT_MAX_DELAY
            ),
            logger=self._logger,
        )
        client.add_listener(self._listener)
        self.client = client
        self.state_name, self.state_since = "CONNECTING", time.time()
        client.start_async()  # starts kazoo's threads; returns at once

    @property
    def started(self) -> bool:
        return self.client is not None

    async def close(self, timeout: float = 15.0) -> None:
        """Stop the client (closing its session) and its threads; idempotent."""
        self._closed = True
        client, self.client = self.client, None
        if self._epoch is not None:
            self._epoch.end()
            self._epoch = None
        if client is None:
            return
        client.remove_listener(self._listener)
        self.state_name, self.state_since = "CLOSED", time.time()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def stop() -> None:  # kazoo's stop() blocks until its connection thread ended
            try:
                client.stop()
                client.close()
            except Exception:  # pragma: no cover - kazoo internals
                log.debug("closing the ZooKeeper client failed", exc_info=True)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(_settle, done, None, None)

        threading.Thread(target=stop, name="turnout-zk-close", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await done

    # -- connection state (kazoo's connection thread → the loop) ----------------------------
    def _listener(self, state: str) -> None:
        client = self.client
        session_id = None
        if state == KazooState.CONNECTED:
            self._logger.quiet = False  # the next outage warns again
            client_id = client.client_id if client is not None else None
            session_id = client_id[0] if client_id else None
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to tell
                loop.call_soon_threadsafe(self._on_state, state, session_id)

    def _on_state(self, state: str, session_id: int | None) -> None:
        if self._closed:
            return
        self.state_name, self.state_since = str(state), time.time()
        assert self._up is not None
        if state == KazooState.CONNECTED:
            if session_id != self.session_id:
                self.sessions += 1
                self.session_id = session_id
                log.info("ZooKeeper %s: session 0x%x", self.hosts, session_id or 0)
            if self._epoch is not None:  # CONNECTED twice: the old epoch's watches are gone
                self._epoch.end()
            self._epoch = Epoch(session_id)
            self._up.set()
            return
        if self._epoch is not None:
            self.connection_losses += 1
            self._epoch.end()
            self._epoch = None
        if state == KazooState.LOST and self.session_id is not None:
            self.session_expirations += 1
            log.warning("ZooKeeper %s: session 0x%x expired", self.hosts, self.session_id)
            self.session_id = None
        self._up.clear()

    @property
    def connected(self) -> bool:
        return self._epoch is not None

    async def wait_connected(self, timeout: float) -> Epoch:
        """The current epoch, waiting up to ``timeout`` seconds for a connection;
        :class:`NotConnected` when there is none by then."""
        self.start()
        assert self._up is not None
        deadline = time.monotonic() + timeout
        while self._epoch is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotConnected(
                    f"no connection to ZooKeeper {self.hosts} after {timeout:g}s "
                    f"(state {self.state_name})"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._up.wait()
        return self._epoch

    # -- requests and watches ---------------------------------------------------------------
    def submit(self, method: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Call one of the client's ``*_async`` methods; its result as an asyncio future."""
        loop = self._loop
        assert loop is not None, "start() first"
        fut: asyncio.Future[Any] = loop.create_future()
        result = method(*args)

        def done(res: Any) -> None:  # in kazoo's completion thread
            exc = res.exception
            value = None if exc is not None else res.value
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(_settle, fut, value, exc)

        result.rawlink(done)
        return fut

    def watcher(self, on_event: Callable[[WatchedEvent], None]) -> Callable[[WatchedEvent], None]:
        """A kazoo watch function that calls ``on_event(event)`` on the loop.

        kazoo keeps watch functions in sets, per path, until they fire: passing the *same*
        function again and again never adds a second watch, so make one per key and keep it.
        """
        loop = self._loop
        assert loop is not None, "start() first"

        def watch(event: WatchedEvent) -> None:  # in kazoo's callback thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(on_event, event)

        return watch

    # -- observability -----------------------------------------------------------------------
    def watcher_count(self) -> int:
        """Watch functions kazoo holds now (data and child watches, over every path)."""
        client = self.client
        if client is None:
            return 0
        for _ in range(5):  # kazoo's threads may change the dicts while we count
            try:
                sets = [*client._child_watchers.values(), *client._data_watchers.values()]
                return sum(len(s) for s in sets)
            except RuntimeError:
                continue
        return -1

    def state(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "state": self.state_name,
            "since": self.state_since,
            "sessionId": None if self.session_id is None else f"0x{self.session_id:x}",
            "sessionTimeoutMs": round(self.session_timeout * 1000),
            "sessions": self.sessions,
            "connectionLosses": self.connection_losses,
            "sessionExpirations": self.session_expirations,
            "watchers": self.watcher_count(),
        }
