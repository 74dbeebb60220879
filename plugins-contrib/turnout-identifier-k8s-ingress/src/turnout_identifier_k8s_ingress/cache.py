"""The watched Ingress cache behind ``io.l5d.ingress`` (Linkerd's ``IngressCache``).

One list+watch of the Ingresses (of one namespace, or of every namespace) through the
first-party k8s plugin's API client (:class:`turnout_namer_k8s.api.KubeApi`, here pointed at
``/apis/networking.k8s.io/v1``):

1. ``GET /apis/networking.k8s.io/v1[/namespaces/<ns>]/ingresses``: every Ingress and the list's
   resourceVersion;
2. the same with ``watch=true&resourceVersion=<rv>&allowWatchBookmarks=true&timeoutSeconds=N``:
   ``ADDED``/``MODIFIED``/``DELETED`` events update the objects, ``BOOKMARK`` s move the
   resourceVersion on.

Every change compiles a new :class:`~turnout_identifier_k8s_ingress.model.Matcher` and swaps it
in; requests only read the current one (no API call, no lock). The watch resumes after a clean
end, re-lists after ``410 Gone`` (the same conventions and limits as the ``io.l5d.k8s`` namer)
and, on any other failure, keeps the last good matcher and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
from turnout.api import Path, cancelled, reconnect_backoff
from turnout_namer_k8s.api import (
    K8sApiError,
    KubeApi,
    ResourceExpired,
    WatchEnded,
    _json_body,
    _status_fields,
    watch_timeout,
)
from turnout_namer_k8s.namer import MAX_EXPIRED_IN_A_ROW, STREAM_GRACE, _ended_at_once

from .model import Matcher, compile_ingresses

log = logging.getLogger("turnout.identifier.ingress")

#: the API group version watched
API_VERSION = "networking.k8s.io/v1"
RESOURCE = "ingresses"

Key = tuple[str, str]


class IngressApi(KubeApi):
    """:class:`KubeApi` for the Ingress list of a namespace (``""``: every namespace)."""

    def url(self, resource: str, namespace: str) -> str:
        base = f"{self.base}/apis/{API_VERSION}"
        if namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        return f"{base}/{resource}"

    @staticmethod
    def params(name: str, label_selector: str | None) -> dict[str, str]:
        # the whole list: no field selector
        return {"labelSelector": label_selector} if label_selector else {}

    async def list_all(self, namespace: str) -> tuple[dict[Key, dict[str, Any]], str]:
        """Every Ingress (by ``(namespace, name)``) and the list's resourceVersion."""
        what = f"list {RESOURCE} {namespace or '(all namespaces)'}"
        async with self.session().get(
            self.url(RESOURCE, namespace),
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
        ) as response:
            body = await _json_body(response)
            if response.status != 200:
                reason, message = _status_fields(body)
                error = ResourceExpired if response.status == 410 else K8sApiError
                raise error(what, response.status, reason or response.reason or "", message)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise K8sApiError(what, 200, "", "not a list object")
        rv = body.get("metadata", {}).get("resourceVersion")
        if not isinstance(rv, str) or not rv:
            raise K8sApiError(what, 200, "", "the list has no resourceVersion")
        objects: dict[Key, dict[str, Any]] = {}
        for item in body["items"]:
            key = object_key(item)
            if key is not None:
                objects[key] = item
        return objects, rv


def object_key(obj: Any) -> Key | None:
    """``(namespace, name)`` of an object (None when it has no name)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    namespace = meta.get("namespace")
    return (namespace if isinstance(namespace, str) and namespace else "default", meta["name"])


class IngressCache:
    """The Ingresses of ``namespace`` (None: all) kept current; :attr:`matcher` is the
    compiled snapshot requests are matched against (empty until the first list)."""

    def __init__(
        self,
        prefix: Path,
        *,
        host: str,
        port: int,
        namespace: str | None,
        ingress_class: str,
        ignore_default_backends: bool,
        backoff: Callable[[], Iterator[float]] | None = None,
        watch_timeout_range: tuple[int, int] = (300, 600),
    ) -> None:
        self.prefix = prefix
        self.host, self.port = host, port
        self.namespace = namespace
        self.ingress_class = ingress_class
        self.ignore_default_backends = ignore_default_backends
        self.backoff = backoff or reconnect_backoff()
        self.watch_timeout_range = watch_timeout_range
        self.api = IngressApi(host, port)
        self.matcher = Matcher((), prefix)
        self.objects: dict[Key, dict[str, Any]] = {}
        #: set once the first list was read
        self.loaded = asyncio.Event()
        self.rv: str | None = None
        self.lists = self.watches = self.expired = self.updates = self.errors = 0
        self.last_error: str | None = None
        self.error_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._reset_backoff = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start watching (in the running loop); idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)
        await self.api.close()

    async def run(self) -> None:
        """Watch until cancelled: on a failure keep the matcher, back off, start again."""
        backoffs = self.backoff()
        while True:
            try:
                await self._follow()
                error = "the watch ended"
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if cancelled():
                    raise asyncio.CancelledError from e
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self.errors += 1
            self.last_error = error
            if self._reset_backoff:  # it answered since the last failure: start over
                backoffs, self._reset_backoff = self.backoff(), False
            if self.error_since is None:
                self.error_since = time.time()
                log.warning(
                    "io.l5d.ingress: %s (%s)",
                    error,
                    "keeping the last good Ingress rules"
                    if self.loaded.is_set()
                    else "no Ingress rules yet: requests are not identified",
                )
            await asyncio.sleep(next(backoffs))

    # -- watching ------------------------------------------------------------------------------
    def _answered(self) -> None:
        self._reset_backoff = True
        if self.error_since is not None:
            log.info("io.l5d.ingress: the API answers again")
            self.error_since = None

    def _changed(self) -> None:
        self.matcher = compile_ingresses(
            self.objects, self.prefix, self.ingress_class, self.ignore_default_backends
        )
        self.updates += 1

    async def _follow(self) -> None:
        api, loop = self.api, asyncio.get_running_loop()
        namespace = self.namespace or ""
        expired_in_a_row = 0
        while True:
            if self.rv is None:
                self.objects, self.rv = await api.list_all(namespace)
                self.lists += 1
                self._answered()
                self._changed()
                self.loaded.set()
            timeout = watch_timeout(*self.watch_timeout_range)
            connected: float | None = None
            events = 0
            self.watches += 1
            try:
                async with asyncio.timeout(timeout + STREAM_GRACE):
                    async with api.watch(RESOURCE, namespace, "", None, self.rv, timeout) as stream:
                        connected = loop.time()
                        self._answered()
                        async for event in stream:
                            events += 1
                            expired_in_a_row = 0
                            if self._apply(event):
                                self._changed()
            except ResourceExpired:
                self.rv = None
                self.expired += 1
                expired_in_a_row += 1
                if expired_in_a_row >= MAX_EXPIRED_IN_A_ROW:
                    raise
                continue
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
                if connected is None or _ended_at_once(loop.time() - connected, events):
                    raise
                continue
            assert connected is not None
            if _ended_at_once(loop.time() - connected, events):
                raise WatchEnded("the ingresses watch ended at once without an event")

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply one watch event; True when the objects changed."""
        kind, obj = event.get("type"), event["object"]
        rv = obj.get("metadata", {}).get("resourceVersion") if isinstance(obj, dict) else None
        if isinstance(rv, str) and rv:
            self.rv = rv
        if kind == "BOOKMARK":
            return False
        key = object_key(obj)
        if key is None:
            return False
        if kind in ("ADDED", "MODIFIED"):
            self.objects[key] = obj
        elif kind == "DELETED":
            self.objects.pop(key, None)
        else:
            raise ValueError(f"unexpected watch event type {kind!r}")
        return True

    # -- observability -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What the cache holds and how its watch goes (JSON-able)."""
        return {
            "api": f"{self.host}:{self.port}",
            "namespace": self.namespace,
            "ingressClass": self.ingress_class,
            "loaded": self.loaded.is_set(),
            "resourceVersion": self.rv,
            "lists": self.lists,
            "watches": self.watches,
            "expired": self.expired,
            "updates": self.updates,
            "errors": self.errors,
            "lastError": self.last_error,
            "errorSince": self.error_since,
            "ingresses": [
                {
                    "namespace": s.namespace,
                    "name": s.name,
                    "rules": [
                        {
                            "host": p.host,
                            "path": p.path,
                            "pathType": p.path_type,
                            "name": p.name(self.prefix).show,
                        }
                        for p in s.rules
                    ],
                    "defaultBackend": (
                        s.default_backend.name(self.prefix).show if s.default_backend else None
                    ),
                    "skipped": list(s.skipped),
                }
                for s in self.matcher.specs
            ],
        }
