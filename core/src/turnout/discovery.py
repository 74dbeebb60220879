"""The base of namers backed by a discovery system (DNS, ZooKeeper, Consul, Marathon, k8s).

A discovery namer maps part of a path to a *key* (a service name, a znode path, a
``(namespace, port, service)`` triple...) and watches that key's address set. Everything
that is the same for every system lives here, so that each plugin only says how to parse a
path and how to watch one key:

- **Lazy, shared watches.** One watch per key, started when the first route observes it and
  stopped (its task cancelled) when the last one goes away.
- **The last good set keeps serving.** When the system fails (refused, killed, 5xx, session
  expired) after a good answer, the address set does not change; the error, the time it
  started and how stale the set is are recorded and shown. Before any good answer, the name
  fails fast: requests get 502 with the system's error (not a wait for ``bindingTimeoutMs``).
- **Reconnects with backoff.** A watch that raises is restarted after a jittered exponential
  backoff (100 ms doubling up to 10 s by default), reset by the next successful answer; it
  then publishes whatever changed while the system was down.
- **State for operators.** ``/namer_state/<prefix>.json`` shows every watch (addresses, last
  update, last error, staleness, counts); ``namer/<prefix>/...`` metrics count updates and
  errors and gauge the active watches and the stalest set.

Writing one::

    class MyNamer(DiscoveryNamer[str]):
        def key_of(self, path):
            if len(path) < 1:
                return None                      # Neg: not a name this namer knows
            return path[0].decode(), 1           # the key, and the labels it consumes

        async def watch(self, key, publish):
            async with connect(self.url) as client:
                async for members in client.watch(key):   # raises when the system fails
                    publish(AddrBound(Address(m.host, m.port) for m in members))

``publish(AddrNeg)`` says the key does not exist (the route tries the next dtab branch).
A watch that polls should publish on every successful poll, even when nothing changed: that
is what marks the set fresh.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from .metrics import Counter, MetricsTree
from .naming import (
    Activity,
    Addr,
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Leaf,
    NameBound,
    Namer,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    Var,
    derive_activity,
)
from .naming.namer import Name
from .router.backoff import equal_jittered_backoff

log = logging.getLogger("turnout.discovery")

K = TypeVar("K", bound=Hashable)
#: watches kept before the unused ones are forgotten
MAX_WATCHES = 10_000
#: at most one WARNING per namer in this many seconds about failing watches (others: DEBUG)
WARN_EVERY = 30.0
Publish = Callable[[Addr], None]
#: seconds close() waits for cancelled watches to end
CLOSE_TIMEOUT = 5.0


def cancelled() -> bool:
    """Whether the current task has been asked to stop, even if a library caught the
    CancelledError (some client libraries turn it into their own error)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def reconnect_backoff(
    start: float = 0.1, maximum: float = 10.0, rng: random.Random | None = None
) -> Callable[[], Iterator[float]]:
    """Delays between reconnection attempts: equal-jittered, doubling from ``start``."""
    return equal_jittered_backoff(start, maximum, rng)


class Freshness:
    """How current a watched value is, for operators: when it last changed and was last
    confirmed, the current run of errors. Shared by :class:`Watch` and by what plugins poll
    besides addresses (Marathon's app list)."""

    __slots__ = ("error_since", "errors", "last_contact", "last_error", "last_update", "updates")

    def __init__(self) -> None:
        #: wall-clock times (``time.time()``) of the last change and the last good answer
        self.last_update: float | None = None
        self.last_contact: float | None = None
        self.last_error: str | None = None
        #: when the current run of errors began (None while healthy)
        self.error_since: float | None = None
        self.updates = 0
        self.errors = 0

    def answered(self, now: float) -> bool:
        """The system answered; True when that ends a run of errors."""
        self.last_contact = now
        if self.error_since is None:
            return False
        self.error_since = None
        return True

    def changed(self, now: float) -> None:
        """The value changed (after :meth:`answered`)."""
        self.last_update = now
        self.updates += 1

    def failed(self, now: float, error: str) -> bool:
        """An error; True when it starts a run of errors."""
        self.last_error = error
        self.errors += 1
        if self.error_since is not None:
            return False
        self.error_since = now
        return True

    def stale_seconds(self, now: float) -> float:
        """How long the value has gone without confirmation (0 while the system answers)."""
        if self.error_since is None or self.last_contact is None:
            return 0.0
        return max(now - self.last_contact, 0.0)

    def freshness(self, now: float) -> dict[str, Any]:
        """The ``/namer_state`` fields of this value."""
        return {
            "lastUpdate": self.last_update,
            "lastContact": self.last_contact,
            "lastError": self.last_error,
            "errorSince": self.error_since,
            "staleSeconds": round(self.stale_seconds(now), 3),
            "updates": self.updates,
            "errors": self.errors,
        }


class Watch(Freshness):
    """One key's watch: its address Var and what operators need to know about it."""

    __slots__ = ("key", "label", "task", "var")

    def __init__(self, key: Any, label: str) -> None:
        super().__init__()
        self.key = key
        self.label = label
        self.var: Var[Addr] = Var(AddrPending)
        self.task: asyncio.Task[None] | None = None

    def state(self, now: float) -> dict[str, Any]:
        addr = self.var.value
        if isinstance(addr, AddrBound):
            status, addresses = "bound", [str(a) for a in addr.sorted()]
        elif isinstance(addr, AddrFailed):
            status, addresses = "failed", []
        else:
            status, addresses = ("neg" if addr is AddrNeg else "pending"), []
        return {
            "state": status,
            "addresses": addresses,
            **self.freshness(now),
            "watching": self.task is not None,
        }


class DiscoveryNamer(Namer, Generic[K]):
    """Base class of discovery namers (see the module docstring).

    :param id_prefix: the bound-id prefix, ``Path.of("#") + <the namer's prefix>``.
    :param metrics: where ``namer/<prefix>/...`` metrics go (None: nowhere).
    :param backoff: delays between reconnection attempts.
    """

    #: shown in errors and in ``/namer_state`` (``io.l5d.consul``...)
    kind = "discovery"

    def __init__(
        self,
        id_prefix: Path,
        *,
        metrics: MetricsTree | None = None,
        backoff: Callable[[], Iterator[float]] | None = None,
    ) -> None:
        self.id_prefix = id_prefix
        self.backoff = backoff or reconnect_backoff()
        self.watches: dict[K, Watch] = {}
        self._lookups: dict[Path, Activity[NameTree[Name]]] = {}
        #: every supervising task still running (a stopped watch's until its cancel lands)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._warned_at = 0.0
        self.metrics = metrics
        scope = ("namer", *(label.decode("utf-8", "replace") for label in id_prefix.elems))
        self.stats_scope = scope
        self._updates: Counter | None = None
        self._errors: Counter | None = None
        if metrics is not None:
            self._updates = metrics.counter(*scope, "updates")
            self._errors = metrics.counter(*scope, "errors")
            metrics.gauge(*scope, "watches", fn=self.active_watches)
            metrics.gauge(*scope, "stale_seconds", fn=self.stalest)

    # -- what subclasses implement ---------------------------------------------------------
    @abstractmethod
    def key_of(self, path: Path) -> tuple[K, int] | None:
        """The key ``path`` names and how many of its labels that consumes (the rest is the
        residual), or None when this namer cannot name it (the lookup is ``Neg``)."""

    @abstractmethod
    async def watch(self, key: K, publish: Publish) -> None:
        """Watch ``key`` until cancelled, calling ``publish`` with each address set
        (``AddrNeg`` when the key does not exist). Raise on any failure of the system: the
        base keeps the last good set, records the error and calls ``watch`` again after a
        backoff."""

    def label_of(self, key: K) -> str:
        """How ``key`` appears in ``/namer_state`` and logs."""
        return str(key)

    async def shutdown(self) -> None:
        """Release shared resources (sessions, clients) after every watch stopped."""

    # -- Namer -----------------------------------------------------------------------------
    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        act = self._lookups.get(path)
        if act is None:
            if len(self._lookups) > 10_000:
                self._lookups = {p: a for p, a in self._lookups.items() if a.observed}
            act = self._lookups[path] = self._activity(path)
        return act

    def _activity(self, path: Path) -> Activity[NameTree[Name]]:
        parsed = self.key_of(path)
        if parsed is None:
            return Activity.of(Neg)
        key, consumed = parsed
        watch = self.watch_var(key)
        bound = NameBound(self.id_prefix + path.take(consumed), watch.var, path.drop(consumed))

        def state() -> State[NameTree[Name]]:
            addr = watch.var.sample()
            if addr is AddrPending:
                return Pending
            if addr is AddrNeg:
                return Ok(Neg)
            return Ok(Leaf(bound))  # bound, or failed before any good answer: 502 at once

        return derive_activity(state)

    def watch_var(self, key: K) -> Watch:
        """The (lazily started) watch of ``key``: its ``var`` is the key's ``Var[Addr]``, for
        namers whose lookups need more than :meth:`key_of` (override :meth:`lookup` and
        bind names to ``watch_var(key).var``)."""
        watch = self.watches.get(key)
        if watch is None:
            if len(self.watches) >= MAX_WATCHES:  # keys come from requests: bound the table
                self.watches = {
                    k: w for k, w in self.watches.items() if w.task is not None or w.var.observed
                }
                self._lookups = {p: a for p, a in self._lookups.items() if a.observed}
            watch = Watch(key, self.label_of(key))
            watch.var = Var(AddrPending, start=lambda var: self._start(watch))
            self.watches[key] = watch
        return watch

    def _start(self, watch: Watch) -> Callable[[], None]:
        if self._closed:
            watch.var.update(AddrFailed(f"{self.kind}: the namer is closed"))
            return lambda: None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: a synchronous caller (turnout check, tests)
            return lambda: None
        task = watch.task = loop.create_task(self._supervise(watch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

        def stop() -> None:
            if watch.task is not None:
                watch.task.cancel()
                watch.task = None

        return stop

    async def _supervise(self, watch: Watch) -> None:
        """Run the watch; on failure keep the last good set, back off, run it again."""
        backoffs = self.backoff()

        def publish(addr: Addr) -> None:
            nonlocal backoffs
            now = time.time()
            if watch.answered(now):
                log.info("%s %s: answering again", self.kind, watch.label)
                backoffs = self.backoff()
            if addr != watch.var.value or type(addr) is not type(watch.var.value):
                watch.changed(now)
                if self._updates is not None:
                    self._updates.incr()
                watch.var.update(addr)

        while True:
            try:
                await self.watch(watch.key, publish)
                error = "the watch ended"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of the system or its client
                if cancelled():  # a client library turned our cancellation into an error
                    raise asyncio.CancelledError from e
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self._failed(watch, error)
            await asyncio.sleep(next(backoffs))

    def _failed(self, watch: Watch, error: str) -> None:
        now = time.time()
        if watch.failed(now, error):
            serving = isinstance(watch.var.value, AddrBound)
            level = logging.WARNING if now - self._warned_at >= WARN_EVERY else logging.DEBUG
            if level == logging.WARNING:
                self._warned_at = now
            log.log(
                level,
                "%s %s: %s (%s)",
                self.kind,
                watch.label,
                error,
                "keeping the last good set" if serving else "no answer yet; requests fail fast",
            )
        if self._errors is not None:
            self._errors.incr()
        current = watch.var.value
        if not isinstance(current, AddrBound) and current is not AddrNeg:
            watch.var.update(AddrFailed(f"{self.kind} {watch.label}: {error}"))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` began: start nothing new."""
        return self._closed

    # -- observability ---------------------------------------------------------------------
    def active_watches(self) -> int:
        return sum(1 for w in self.watches.values() if w.task is not None)

    def stalest(self) -> float:
        now = time.time()
        return max((w.stale_seconds(now) for w in self.watches.values()), default=0.0)

    def bound_names(self) -> Iterable[Path] | None:
        return None

    def state(self) -> dict[str, Any]:
        now = time.time()
        watches = {}
        for w in self.watches.values():
            entry = w.state(now)
            entry.update(self.watch_details(w.key))
            watches[w.label] = entry
        return {"kind": self.kind, "watches": watches}

    def watch_details(self, key: K) -> dict[str, Any]:
        """Extra fields for ``key``'s ``/namer_state`` entry (a resource version, an index)."""
        return {}

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for watch in self.watches.values():
            watch.task = None
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: a watch stuck in a client library must not hold up the shutdown
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            if pending:
                log.warning(
                    "%s: %d watch(es) did not stop in %.0f s",
                    self.kind,
                    len(pending),
                    CLOSE_TIMEOUT,
                )
        await self.shutdown()
