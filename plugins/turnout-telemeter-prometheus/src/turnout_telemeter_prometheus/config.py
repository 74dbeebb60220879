"""The config class of ``io.l5d.prometheus`` (registered at start-up; it imports nothing
heavy: prometheus-client is loaded only when a configuration uses the telemeter)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from turnout.api import BuildContext, TelemeterConfig, option

if TYPE_CHECKING:
    from .telemeter import PrometheusTelemeter

#: default histogram buckets for latencies, in seconds
DEFAULT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class PrometheusConfig(TelemeterConfig):
    """Serves every metric of the tree in Prometheus' text format on the admin server.

    ``naming: prometheus`` (the default) follows Prometheus' conventions
    (``turnout_client_requests_total{router="http", client="/#/io.l5d.fs/foo"}``, latencies
    in seconds as histograms); ``naming: linkerd`` gives Linkerd 1's names
    (``rt:client:requests{rt="http", client="#/io.l5d.fs/foo"}``) for existing dashboards.
    """

    kind = "io.l5d.prometheus"
    path: str = option("/admin/metrics/prometheus", doc="Admin path of the metrics page.")
    prefix: str = option("", doc="Prepended to every metric name.")
    naming: Literal["prometheus", "linkerd"] = option(
        "prometheus",
        doc="Metric names: Prometheus conventions (turnout_..., labels, seconds) or Linkerd "
        "1's (rt:client:requests{rt=...}).",
    )
    buckets: list[float] = option(
        default_factory=lambda: list(DEFAULT_BUCKETS),
        doc="Upper bounds, in seconds, of the latency histograms (naming: prometheus).",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.path.startswith("/"):
            yield "path", "must start with /"
        if not self.buckets:
            yield "buckets", "needs at least one bound"
        elif any(b <= 0 for b in self.buckets) or sorted(set(self.buckets)) != self.buckets:
            yield "buckets", "must be positive and strictly increasing"
        elif not all(math.isfinite(b) for b in self.buckets):
            yield "buckets", "must be finite (the +Inf bucket is always added)"

    def new_telemeter(self, ctx: BuildContext) -> PrometheusTelemeter:
        from .telemeter import PrometheusTelemeter  # prometheus-client only when used

        return PrometheusTelemeter(
            ctx.metrics,
            path=self.path,
            prefix=self.prefix,
            naming=self.naming,
            buckets=self.buckets,
        )
