"""The ``io.l5d.prometheus`` telemeter's runtime: a prometheus-client registry over the tree,
served on the admin server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from turnout.api import WINDOW, AdminRequest, AdminResponse, AdminRoute, MetricsTree, Telemeter

from .collector import TreeCollector
from .config import DEFAULT_BUCKETS, PrometheusConfig
from .naming import NAMINGS

__all__ = ["CONTENT_TYPE", "PrometheusConfig", "PrometheusTelemeter"]

#: the text exposition format (what prometheus-client calls ``CONTENT_TYPE_PLAIN_0_0_4``)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PrometheusTelemeter(Telemeter):
    """Answers ``GET <path>`` with the tree in Prometheus' text format (0.0.4).

    ``registry`` is a private prometheus-client registry holding the tree's collector (what
    ``generate_latest(registry)`` writes is what a scrape returns); scrapes are answered by
    the collector's :meth:`~TreeCollector.render_text`, the same bytes with each series'
    escaped text kept between scrapes. The text format is served whatever the ``Accept``
    header asks: every Prometheus version reads it, and OpenMetrics would rename Linkerd's
    ``rt:client:...`` names (colons are escaped there).
    """

    def __init__(
        self,
        metrics: MetricsTree,
        *,
        path: str = "/admin/metrics/prometheus",
        prefix: str = "",
        naming: str = "prometheus",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.metrics = metrics
        self.path = path
        self.collector = TreeCollector(metrics, NAMINGS[naming](prefix), tuple(buckets))
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def admin_routes(self) -> list[AdminRoute]:
        # diagnostics, as in Linkerd (only /admin/metrics itself is in the ui category)
        return [AdminRoute("GET", self.path, self.handle, "diagnostics")]

    def render(self) -> tuple[bytes, str]:
        """One scrape: (body, content type)."""
        return self.collector.render_text(), CONTENT_TYPE

    async def handle(self, request: AdminRequest) -> AdminResponse:
        body, content_type = self.render()
        return AdminResponse(body=body, headers={"Content-Type": content_type})

    async def run(self) -> None:
        # fold histogram windows into the cumulative buckets more often than they rotate, so
        # that no window is missed when Prometheus scrapes rarely (or not yet)
        while True:
            self.collector.totals.observe(self.metrics)
            await asyncio.sleep(WINDOW / 3)
