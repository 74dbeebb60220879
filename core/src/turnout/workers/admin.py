"""The admin server of ``workers: N``: one port for the whole instance, owned by the supervisor.

- ``GET /admin/metrics.json`` (and ``/metrics.json``, with ``?q=``, ``?tree=1``,
  ``?pretty=1`` as a single turnout's): the metrics of every running worker merged
  (:meth:`turnout.metrics.MetricsTree.merged` over their ``/admin/metrics/raw.json``: counters
  added, histograms merged bucket by bucket, gauges added except those whose sum means
  nothing, see :func:`gauge_max`), plus the supervisor's own ``workers/...``;
  ``?worker=<index>`` answers that worker's own metrics instead.
- ``GET /admin/workers.json``: each worker's index, pid, state, restarts, start time and last
  exit status.
- ``GET /admin/ready``: 200 when every worker not given up is ready (503 otherwise);
  ``/admin/live`` and ``/admin/ping`` are answered here.
- ``POST /admin/shutdown``: drains every worker, as SIGTERM does.
- Every other path (the dashboard and its files, ``/config.json``, ``/client_state.json``,
  ``/delegator.json``, telemeters' pages, ...) is answered by the first ready worker: they are
  the same configuration, so any of them answers for the instance (``client_state`` and the
  load balancers' statistics are that worker's).

``admin.security`` applies as on a single turnout: the supervisor's own paths are filtered by
the same rules (categories, path lists, cross-site refusal of state-changing requests), and
the workers apply them to what they answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..admin import AdminGate, AdminServer
from ..admin.http import AdminApp, AdminHttpServer, AdminRequest, AdminResponse, fetch
from ..errors import TurnoutError
from ..metrics import Key, MetricsTree

if TYPE_CHECKING:
    from .supervisor import Slot, Supervisor

log = logging.getLogger("turnout.workers.admin")

#: gauges whose sum over workers means nothing: every worker has the same endpoints, the same
#: limits, the same configuration; the instance shows the highest
_MAX_GAUGES = {"size", "available", "originator", "uptime_ms", "fd_limit", "stale_seconds"}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "proxy-connection",
    "te",
    "trailer",
}


def gauge_max(key: Key) -> bool:
    """Whether the merged value of gauge ``key`` is the highest rather than the sum."""
    return key[-1] in _MAX_GAUGES or key[:2] == ("process", "loop_lag_ms")


class SupervisorAdmin:
    """See the module docstring."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.config = supervisor.config.admin
        own_paths = {
            "/admin/metrics.json": "ui",
            "/metrics.json": "ui",
            "/admin/workers.json": "diagnostics",
            "/admin/ready": "diagnostics",
            "/admin/live": "diagnostics",
            "/admin/ping": "diagnostics",
            "/admin/shutdown": "control",
            "/admin/reload": "control",
            "/admin/config/status": "diagnostics",
        }
        #: admin.security, a single turnout's rules, over the supervisor's own paths
        self.gate = AdminGate(self.config, own_paths)
        self.app = AdminApp(before=self._security)
        r = self.app.add_route
        r("GET", "/admin/metrics.json", self.metrics_json)
        r("GET", "/metrics.json", self.metrics_json)
        r("GET", "/admin/workers.json", self.workers_json)
        r("GET", "/admin/ready", self.ready)
        r("GET", "/admin/live", self.live)
        r("GET", "/admin/ping", self.ping)
        r("POST", "/admin/shutdown", self.shutdown)
        r("POST", "/admin/reload", self.reload)
        r("GET", "/admin/config/status", self.config_status)
        r("*", "/{tail:.*}", self.proxy)
        self.http: AdminHttpServer | None = None
        self.tls_watcher: Any = None
        self.port: int | None = None

    async def start(self) -> None:
        ssl_context = None
        if self.config.tls is not None:
            from ..admin import admin_tls

            ssl_context, self.tls_watcher = admin_tls(self.config.tls, self.supervisor.metrics)
        self.http = AdminHttpServer(self.app)
        try:
            self.port = await self.http.start(self.config.ip, self.config.port, ssl_context)
        except OSError as e:
            await self.close()
            raise TurnoutError(
                f"the admin server ({self.config.ip}:{self.config.port}) cannot listen: {e}; "
                "choose another admin port, or stop what holds it"
            ) from e

    async def close(self) -> None:
        if self.tls_watcher is not None:
            self.tls_watcher.stop()
            self.tls_watcher = None
        if self.http is not None:
            await self.http.close()
            self.http = None

    def _security(self, request: AdminRequest, route: str | None) -> AdminResponse | None:
        own = self.gate.categories.get(request.path)
        if own is None:
            return None  # forwarded: the worker applies the rules
        return self.gate.check(request, own)

    # -- workers ---------------------------------------------------------------------------
    async def _get(
        self, slot: Slot, method: str, path_qs: str, timeout: float = 15.0, **kw: Any
    ) -> AdminResponse:
        """One request to ``slot``'s own admin port (loopback); OSError or ValueError when it
        does not answer."""
        assert slot.admin_port is not None
        return await fetch("127.0.0.1", slot.admin_port, method, path_qs, timeout=timeout, **kw)

    async def worker_ready(self, slot: Slot) -> bool:
        try:
            return (await self._get(slot, "GET", "/admin/ready", timeout=2)).status == 200
        except (OSError, ValueError):
            return False

    def _answering(self) -> list[Slot]:
        """The workers that can answer now: ready first, then those still starting."""
        slots = [s for s in self.supervisor.slots if s.running()]
        return sorted(slots, key=lambda s: (s.state != "ready", s.index))

    async def _raw(self, slot: Slot) -> list[list[Any]] | None:
        try:
            r = await self._get(slot, "GET", "/admin/metrics/raw.json")
            if r.status != 200:
                return None
            data: list[list[Any]] = json.loads(r.body)
            return data
        except (OSError, ValueError):
            return None

    # -- handlers --------------------------------------------------------------------------
    async def metrics_json(self, request: AdminRequest) -> AdminResponse:
        worker = request.query.get("worker")
        if worker is not None:
            slot = self._slot(worker)
            if slot is None:
                return AdminResponse(status=404, text=f"no running worker {worker!r}\n")
            query = [(k, v) for k, v in request.query.items() if k != "worker"]
            path = request.path + ("?" + urllib.parse.urlencode(query) if query else "")
            return await self._forward(request, slot, path)
        exports = await asyncio.gather(*(self._raw(s) for s in self._answering()))
        merged = MetricsTree.merged(
            [*(e for e in exports if e is not None), self.supervisor.metrics.export_raw()],
            gauge_max,
        )
        view: Any = SimpleNamespace(linker=SimpleNamespace(metrics=merged))
        return await AdminServer.metrics_json(view, request)

    def _slot(self, index: str) -> Slot | None:
        for slot in self.supervisor.slots:
            if str(slot.index) == index and slot.running():
                return slot
        return None

    async def workers_json(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse.json([s.as_json() for s in self.supervisor.slots])

    async def ready(self, request: AdminRequest) -> AdminResponse:
        slots = [s for s in self.supervisor.slots if s.state != "failed"]
        if self.supervisor.stopping:
            return AdminResponse(status=503, text="draining")
        if slots and all(s.state == "ready" for s in slots):
            return AdminResponse(text="ready")
        return AdminResponse(status=503, text="starting")

    async def live(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse(text="ok")

    async def ping(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse(text="pong")

    async def shutdown(self, request: AdminRequest) -> AdminResponse:
        asyncio.get_running_loop().call_soon(self.supervisor.request_stop)
        return AdminResponse(text="shutting down\n")

    async def reload_worker(self, slot: Slot) -> dict[str, Any]:
        """``POST /admin/reload`` to one worker: its reload status (``status`` ``ok`` or
        ``failed``, ``errors``), or ``failed`` with why it did not answer."""
        try:
            r = await self._get(slot, "POST", "/admin/reload", timeout=60)
            status: dict[str, Any] = json.loads(r.body)
        except (OSError, ValueError) as e:
            status = {"status": "failed", "errors": [f"worker {slot.index}: {e}"]}
        status["worker"] = slot.index
        return status

    async def reload(self, request: AdminRequest) -> AdminResponse:
        """Every worker reloads; 200 when all applied the new configuration, else 400 with
        each worker's errors."""
        ok, results = await self.supervisor.reload()
        return AdminResponse.json(
            {"status": "ok" if ok else "failed", "workers": results}, status=200 if ok else 400
        )

    async def config_status(self, request: AdminRequest) -> AdminResponse:
        """The first worker's ``/admin/config/status`` and, under ``workers``, every worker's."""
        statuses = []
        for slot in self._answering():
            try:
                r = await self._get(slot, "GET", "/admin/config/status")
                status: dict[str, Any] = json.loads(r.body)
            except (OSError, ValueError) as e:
                status = {"status": "unknown", "errors": [str(e)]}
            status["worker"] = slot.index
            statuses.append(status)
        if not statuses:
            return AdminResponse(status=503, text="no worker is running\n")
        return AdminResponse.json({**statuses[0], "workers": statuses})

    async def proxy(self, request: AdminRequest) -> AdminResponse:
        slots = self._answering()
        if not slots:
            return AdminResponse(status=503, text="no worker is running\n")
        return await self._forward(request, slots[0], request.path_qs)

    async def _forward(self, request: AdminRequest, slot: Slot, path_qs: str) -> AdminResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        if request.headers.get("Content-Encoding"):
            headers["Content-Encoding"] = request.headers["Content-Encoding"]
        try:
            r = await self._get(
                slot, request.method, path_qs, headers=headers, body=await request.read()
            )
        except (OSError, ValueError) as e:
            return AdminResponse(status=502, text=f"worker {slot.index} did not answer: {e}\n")
        out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_BY_HOP}
        if r.headers.get("Content-Encoding"):
            out["Content-Encoding"] = r.headers["Content-Encoding"]
        return AdminResponse(status=r.status, body=r.body, headers=out)
