"""Telemeters: what ``telemetry:`` entries build (metrics exporters and tracers).

A telemeter kind registers a :class:`turnout.config.TelemeterConfig` subclass through
``turnout_register_telemeters``; its ``new_telemeter(ctx)`` returns a :class:`Telemeter`.
The linker then:

- adds the telemeter's :meth:`~Telemeter.admin_routes` to the admin server (Prometheus'
  ``/admin/metrics/prometheus``, recentRequests' ``/requests``...; a route's ``nav`` label
  puts a link to it in the dashboard's navigation);
- runs :meth:`~Telemeter.run` in the background while it serves (a statsd pusher, a span
  exporter) and calls :meth:`~Telemeter.close` at shutdown;
- gives its :meth:`~Telemeter.tracer` (if any) to every router, which then records a server
  span and a client span per sampled request (see :mod:`turnout.tracing`).

Metrics are read from ``ctx.metrics`` (:class:`turnout.metrics.MetricsTree`) when a scrape or
a push happens, never on the request path.
"""

from __future__ import annotations

from .admin_routes import AdminRoute
from .tracing import Tracer


class Telemeter:
    """Base class of telemeter runtimes; override what applies (everything is optional)."""

    def admin_routes(self) -> list[AdminRoute]:
        """Routes this telemeter adds to the admin server."""
        return []

    def tracer(self) -> Tracer | None:
        """A tracer to receive the spans of sampled requests, or None."""
        return None

    async def run(self) -> None:
        """Background work while turnout serves (cancelled at shutdown)."""

    async def close(self) -> None:
        """Flush and release resources at shutdown (after the routers stopped and
        :meth:`run` was cancelled: nothing runs concurrently with it)."""
