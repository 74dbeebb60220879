"""namerd's own metrics, named as Linkerd's namerd named them:

- ``dtabstore/<kind>/{reads,writes,conflicts,failures,watches}`` (counters) and the gauge
  ``dtabstore/<kind>/open_watches``: :class:`CountingStore` wraps any :class:`DtabStore`;
- ``interface/io.l5d.httpController/{requests,success,failures}`` and
  ``interface/io.l5d.httpController/<endpoint>/requests`` (``dtabs``, ``bind``, ``addr``,
  ``resolve``, ``delegate``, ``bound-names``), status classes ``status/<code>``, and the gauge
  ``open_streams``: :func:`http_metrics_middleware` for the ``/api/1`` aiohttp application.

Both are wired in by namerd's runtime (the store) and the HTTP interface (the middleware).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ..naming import Dtab
from .store import DtabStore, Names, NamespaceExists, Versioned, VersionMismatch

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CountingStore(DtabStore):
    """``store`` with its operations counted under ``dtabstore/<kind>/``."""

    def __init__(self, store: DtabStore, metrics: Any, kind: str) -> None:
        self.underlying = store
        scope = ("dtabstore", kind)
        self.reads = metrics.counter(*scope, "reads")
        self.writes = metrics.counter(*scope, "writes")
        self.conflicts = metrics.counter(*scope, "conflicts")
        self.failures = metrics.counter(*scope, "failures")
        self.watches = metrics.counter(*scope, "watches")
        self.open = 0
        metrics.gauge(*scope, "open_watches", fn=lambda: float(self.open))

    async def _count(self, coro: Awaitable[Any], counter: Any) -> Any:
        counter.incr()
        try:
            return await coro
        except (VersionMismatch, NamespaceExists):
            self.conflicts.incr()
            raise
        except Exception:
            self.failures.incr()
            raise

    async def list(self) -> Names:
        result: Names = await self._count(self.underlying.list(), self.reads)
        return result

    async def get(self, ns: str) -> tuple[Dtab, bytes] | None:
        result: tuple[Dtab, bytes] | None = await self._count(self.underlying.get(ns), self.reads)
        return result

    async def create(self, ns: str, dtab: Dtab) -> bytes:
        result: bytes = await self._count(self.underlying.create(ns, dtab), self.writes)
        return result

    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        result: bytes = await self._count(self.underlying.put(ns, dtab, expected), self.writes)
        return result

    async def delete(self, ns: str) -> None:
        await self._count(self.underlying.delete(ns), self.writes)

    async def watch(self, ns: str) -> AsyncIterator[Versioned]:
        self.watches.incr()
        self.open += 1
        try:
            async for item in self.underlying.watch(ns):
                yield item
        finally:
            self.open -= 1

    async def watch_list(self) -> AsyncIterator[Names]:
        self.watches.incr()
        self.open += 1
        try:
            async for item in self.underlying.watch_list():
                yield item
        finally:
            self.open -= 1

    async def close(self) -> None:
        await self.underlying.close()


_ENDPOINTS = ("dtabs", "bind", "addr", "resolve", "delegate", "bound-names")


def http_metrics_middleware(metrics: Any, kind: str = "io.l5d.httpController") -> Any:
    """An aiohttp middleware counting ``/api/1`` requests under ``interface/<kind>/``."""
    scope = ("interface", kind)
    requests = metrics.counter(*scope, "requests")
    success = metrics.counter(*scope, "success")
    failures = metrics.counter(*scope, "failures")
    per_endpoint = {e: metrics.counter(*scope, e, "requests") for e in _ENDPOINTS}
    streams = [0]
    metrics.gauge(*scope, "open_streams", fn=lambda: float(streams[0]))

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        requests.incr()
        parts = request.path.split("/")
        endpoint = parts[3] if len(parts) > 3 and parts[1:3] == ["api", "1"] else ""
        if endpoint in per_endpoint:
            per_endpoint[endpoint].incr()
        watch = request.query.get("watch", "").lower() in ("1", "true")
        if watch:
            streams[0] += 1
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:  # the client went away: a watch's normal end
            status = 200 if watch else 499
            raise
        finally:
            if watch:
                streams[0] -= 1
            (success if status < 400 else failures).incr()
            metrics.counter(*scope, "status", str(status)).incr()

    return count


__all__ = ["CountingStore", "http_metrics_middleware"]
