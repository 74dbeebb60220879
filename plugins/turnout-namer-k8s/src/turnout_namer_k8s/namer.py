"""The ``io.l5d.k8s`` / ``io.l5d.k8s.ns`` namer: Kubernetes Endpoints (and Services), watched.

Each name being routed is one watch (see :class:`turnout.api.DiscoveryNamer`), keyed by
``(namespace, port, service, label selector)``. A watch follows the Endpoints object of the
service and, for a port number, the Service too, each by **list then watch**:

1. ``GET /api/v1/namespaces/<ns>/<endpoints|services>?fieldSelector=metadata.name=<svc>``
   (plus ``labelSelector=<key>=<value>``): the object (or its absence) and a resourceVersion;
2. the same with ``watch=true&resourceVersion=<rv>&allowWatchBookmarks=true&timeoutSeconds=N``:
   newline-delimited ``ADDED``/``MODIFIED``/``DELETED``/``BOOKMARK``/``ERROR`` events; each
   moves the resourceVersion forward, and each change publishes a new address set.

When a stream ends (the server's ``timeoutSeconds``, a dropped connection) the watch resumes
from the last resourceVersion. ``410 Gone`` (an HTTP status, or an ``ERROR`` event with code
410, which is what servers send) means that version is too old: re-list, then watch again. Any
other failure (refused, reset, 5xx, timeout, garbage) raises: the base keeps the last good set,
records the error, backs off and calls :meth:`K8sNamer.watch` again, which resumes from the
last resourceVersion it saw (or re-lists when it saw none), so what changed during the outage
is picked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from turnout.api import (
    Activity,
    AddrBound,
    Counter,
    DiscoveryNamer,
    MetricsTree,
    Name,
    NameTree,
    Path,
    Publish,
)

from .api import REQUEST_TIMEOUT, KubeApi, ResourceExpired, WatchEnded, watch_timeout
from .model import ServiceKey, object_named, resource_version, select, service_key

log = logging.getLogger("turnout.namer.k8s")

#: a stream that ends sooner than this without an event counts as a failure (backoff)
MIN_STREAM_SECONDS = 1.0
#: 410 answers in a row, each right after a fresh list, before the watch fails (backoff)
MAX_EXPIRED_IN_A_ROW = 3
#: extra seconds allowed past ``timeoutSeconds`` before a silent stream is given up
STREAM_GRACE = 30.0


@dataclass
class Followed:
    """One object followed by list+watch: its last state and the version to resume from.
    (Public for namers built on :class:`K8sNamer`, such as ``io.l5d.k8s.external``.)"""

    resource: str
    #: the object (None: absent), valid once ``listed``
    obj: dict[str, Any] | None = None
    listed: bool = False
    #: where to resume watching (None: list first)
    rv: str | None = None
    lists: int = 0
    watches: int = 0
    expired: int = 0


@dataclass
class KeyState:
    """What one key's watch knows; kept across reconnects, dropped when the watch stops."""

    endpoints: Followed = field(default_factory=lambda: Followed("endpoints"))
    service: Followed | None = None
    #: the task running the watch now (a stopped watch's task may still be ending)
    owner: asyncio.Task[Any] | None = None

    def followed(self) -> list[Followed]:
        return [self.endpoints] if self.service is None else [self.endpoints, self.service]


class K8sNamer(DiscoveryNamer[ServiceKey]):
    """Names ``/<namespace>/<port>/<service>[/<label value>]`` (see the module docstring).

    :param id_prefix: ``/#/<prefix>``.
    :param host: :param port: the API server (plain HTTP: ``kubectl proxy``).
    :param label_selector: the label key whose value the name's extra label gives.
    :param namespace: a fixed namespace (``io.l5d.k8s.ns``): names are then
        ``/<port>/<service>[/<label value>]``.
    :param watch_timeout_range: bounds of the random ``timeoutSeconds`` of each watch.
    :param request_timeout: seconds a list (or the head of a watch response) may take.
    """

    kind = "io.l5d.k8s"

    def __init__(
        self,
        id_prefix: Path,
        *,
        host: str = "localhost",
        port: int = 8001,
        label_selector: str | None = None,
        namespace: str | None = None,
        metrics: MetricsTree | None = None,
        backoff: Callable[[], Iterator[float]] | None = None,
        watch_timeout_range: tuple[int, int] = (300, 600),
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        super().__init__(id_prefix, metrics=metrics, backoff=backoff)
        self.host = host
        self.port = port
        self.label_selector = label_selector
        self.namespace = namespace
        self.watch_timeout_range = watch_timeout_range
        self.api = KubeApi(host, port, request_timeout=request_timeout)
        self.prefix_length = (2 if namespace is not None else 3) + (1 if label_selector else 0)
        self._keys: dict[ServiceKey, KeyState] = {}
        self._lists: Counter | None = None
        self._watch_requests: Counter | None = None
        self._expired: Counter | None = None
        if metrics is not None:
            self._lists = metrics.counter(*self.stats_scope, "lists")
            self._watch_requests = metrics.counter(*self.stats_scope, "watch_requests")
            self._expired = metrics.counter(*self.stats_scope, "expired")

    # -- names -----------------------------------------------------------------------------
    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        # Linkerd lowercases the labels that make the id (not the residual): the same service
        # whatever the case, with one id and one watch.
        n = self.prefix_length
        if len(path) >= n:
            head = path.take(n)
            try:
                lowered = Path.of(*(label.decode("utf-8").lower() for label in head))
            except UnicodeDecodeError:
                lowered = head  # key_of refuses it
            if lowered != head:
                path = lowered + path.drop(n)
        return super().lookup(path)

    def key_of(self, path: Path) -> tuple[ServiceKey, int] | None:
        n = self.prefix_length
        if len(path) < n:
            return None  # (with labelSelector, a name without the label value is Neg)
        try:
            labels = [label.decode("utf-8").lower() for label in path.take(n)]
        except UnicodeDecodeError:
            return None
        if self.namespace is None:
            namespace, labels = labels[0], labels[1:]
        else:
            namespace = self.namespace
        port, service = labels[0], labels[1]
        value = labels[2] if self.label_selector else None
        key = service_key(namespace, port, service, self.label_selector, value)
        return None if key is None else (key, n)

    def label_of(self, key: ServiceKey) -> str:
        return str(key)

    # -- watching --------------------------------------------------------------------------
    async def watch(self, key: ServiceKey, publish: Publish) -> None:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = KeyState()
            if key.port_number is not None:
                state.service = Followed("services")
        me = state.owner = asyncio.current_task()

        def changed() -> None:
            if all(f.listed for f in state.followed()):
                service = state.service.obj if state.service is not None else None
                publish(select(key, state.endpoints.obj, service))

        try:
            await _first_failure(
                [self._follow(key, followed, changed) for followed in state.followed()]
            )
        except asyncio.CancelledError:
            # stopped (nothing routes to it any more, or closing): start afresh next time
            if self._keys.get(key) is state and state.owner is me:
                del self._keys[key]
            raise

    async def _follow(
        self, key: ServiceKey, followed: Followed, changed: Callable[[], None]
    ) -> None:
        """List then watch one object until a failure (raised) or cancellation."""
        api, loop = self.api, asyncio.get_running_loop()
        expired_in_a_row = 0
        while True:
            if followed.rv is None:
                obj, rv = await api.list_one(
                    followed.resource, key.namespace, key.service, key.label_selector
                )
                followed.obj, followed.rv, followed.listed = obj, rv, True
                followed.lists += 1
                if self._lists is not None:
                    self._lists.incr()
                changed()
            timeout = watch_timeout(*self.watch_timeout_range)
            connected: float | None = None  # when the server answered 200
            events = 0
            followed.watches += 1
            if self._watch_requests is not None:
                self._watch_requests.incr()
            try:
                async with asyncio.timeout(timeout + STREAM_GRACE):
                    async with api.watch(
                        followed.resource,
                        key.namespace,
                        key.service,
                        key.label_selector,
                        followed.rv,
                        timeout,
                    ) as stream:
                        connected = loop.time()
                        changed()  # the server answers: the set is confirmed fresh
                        async for event in stream:
                            events += 1
                            expired_in_a_row = 0
                            if self._apply(key, followed, event):
                                changed()
            except ResourceExpired:
                # the version is too old (compacted history, restarted server): re-list
                followed.rv = None
                followed.expired += 1
                if self._expired is not None:
                    self._expired.incr()
                expired_in_a_row += 1
                if expired_in_a_row >= MAX_EXPIRED_IN_A_ROW:
                    raise
                log.debug("k8s %s: %s expired, re-listing", key, followed.resource)
                continue
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
                # a cut (payload incomplete, reset, disconnected, silent past the timeout) or a
                # failed request (refused, unreachable): only the first may resume at once
                if connected is None or _ended_at_once(loop.time() - connected, events):
                    raise  # not a cut stream: the request failed (the base backs off)
                log.debug("k8s %s: %s watch cut, resuming", key, followed.resource)
                continue
            assert connected is not None
            if _ended_at_once(loop.time() - connected, events):
                raise WatchEnded(f"the {followed.resource} watch ended at once without an event")

    @staticmethod
    def _apply(key: ServiceKey, followed: Followed, event: dict[str, Any]) -> bool:
        """Apply one event; True when the object changed."""
        kind, obj = event.get("type"), event["object"]
        rv = resource_version(obj)
        if rv is not None:
            followed.rv = rv
        if kind == "BOOKMARK":
            return False
        if not object_named(obj, key.service):
            return False  # (a server that ignored the field selector)
        if kind in ("ADDED", "MODIFIED"):
            followed.obj = obj
        elif kind == "DELETED":
            followed.obj = None
        else:
            raise ValueError(f"unexpected watch event type {kind!r}")
        return True

    async def shutdown(self) -> None:
        self._keys.clear()
        await self.api.close()

    # -- observability ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        out = super().state()
        out.update(
            host=self.host,
            port=self.port,
            labelSelector=self.label_selector,
        )
        if self.namespace is not None:
            out["namespace"] = self.namespace
        for key, watch in self.watches.items():
            entry = out["watches"].get(watch.label)
            st = self._keys.get(key)
            if entry is None or st is None:
                continue
            entry["kubernetes"] = {
                f.resource: {
                    "exists": f.obj is not None if f.listed else None,
                    "resourceVersion": f.rv,
                    "lists": f.lists,
                    "watches": f.watches,
                    "expired": f.expired,
                }
                for f in st.followed()
            }
        return out

    def bound_names(self) -> Iterable[Path] | None:
        """The ids of the names watched now that have addresses (what it can enumerate
        without listing the whole cluster)."""
        out = []
        for key, watch in self.watches.items():
            if isinstance(watch.var.value, AddrBound):
                labels = [key.port, key.service]
                if self.namespace is None:
                    labels.insert(0, key.namespace)
                if key.label_selector:
                    labels.append(key.label_selector.split("=", 1)[1])
                out.append(self.id_prefix + Path.of(*labels))
        return sorted(out)


class K8sNsNamer(K8sNamer):
    """``io.l5d.k8s.ns``: :class:`K8sNamer` in one namespace."""

    kind = "io.l5d.k8s.ns"


def _ended_at_once(seconds: float, events: int) -> bool:
    """A stream that ended this soon without an event is a failure, not a routine end (so
    that a server closing every watch at once gets backoff, not a tight loop)."""
    return events == 0 and seconds < MIN_STREAM_SECONDS


async def _first_failure(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``coros`` together until one ends: cancel the others and raise what it raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    for t in done:
        error = None if t.cancelled() else t.exception()
        if error is not None:
            raise error
    raise WatchEnded("the watch ended")
