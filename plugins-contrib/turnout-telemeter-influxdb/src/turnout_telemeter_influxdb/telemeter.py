"""The ``io.l5d.influxdb`` telemeter's runtime: ``GET /admin/metrics/influxdb`` on the admin
server answers the metrics tree in line protocol (see :mod:`.lineprotocol`)."""

from __future__ import annotations

from turnout.api import AdminRequest, AdminResponse, AdminRoute, MetricsTree, Telemeter

from .config import PATH, InfluxDbConfig
from .lineprotocol import Renderer

__all__ = ["CONTENT_TYPE", "InfluxDbConfig", "InfluxDbTelemeter"]

CONTENT_TYPE = "text/plain; charset=utf-8"


class InfluxDbTelemeter(Telemeter):
    """Answers ``GET /admin/metrics/influxdb``; pushes nothing, traces nothing (Linkerd's
    neither: Telegraf pulls)."""

    def __init__(self, metrics: MetricsTree, *, path: str = PATH) -> None:
        self.metrics = metrics
        self.path = path
        self.renderer = Renderer(metrics)

    def admin_routes(self) -> list[AdminRoute]:
        return [AdminRoute("GET", self.path, self.handle, "diagnostics")]

    def render(self, host: str | None = None) -> str:
        """One scrape's body; ``host`` is the tag ``host`` (``none`` when None)."""
        return self.renderer.render(host or "none")

    async def handle(self, request: AdminRequest) -> AdminResponse:
        body = self.render(request.headers.get("Host"))
        return AdminResponse(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})
