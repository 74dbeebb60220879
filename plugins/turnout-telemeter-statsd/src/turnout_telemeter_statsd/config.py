"""The config class of ``io.l5d.statsd`` (experimental, as in Linkerd)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from turnout.api import BuildContext, TelemeterConfig, option

if TYPE_CHECKING:
    from .telemeter import StatsdTelemeter


class StatsdConfig(TelemeterConfig):
    """Pushes the metrics tree to a statsd server over UDP every ``gaugeIntervalMs``:
    counters as deltas (``|c``), gauges (``|g``) and, for each histogram, the count of new
    values (``.count|c``) with their min/max/avg/percentiles (``.p99|g``). Experimental, as in
    Linkerd: requires ``experimental: true``."""

    kind = "io.l5d.statsd"
    experimental_required = True
    prefix: str = option("linkerd", doc="Prepended to every metric name (with a dot).")
    hostname: str = option("127.0.0.1", doc="Host of the statsd server.")
    port: int = option(8125, min=1, max=65535, doc="UDP port of the statsd server.")
    gauge_interval_ms: int = option(
        10000, min=10, doc="Milliseconds between two pushes (of every metric, not only gauges)."
    )
    sample_rate: float = option(
        0.01,
        min=0.0,
        max=1.0,
        doc="Accepted for Linkerd compatibility; unused: turnout sends aggregated values, so "
        "nothing is sampled.",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.hostname:
            yield "hostname", "must not be empty"

    def new_telemeter(self, ctx: BuildContext) -> StatsdTelemeter:
        from .telemeter import StatsdTelemeter

        return StatsdTelemeter(
            ctx.metrics,
            prefix=self.prefix,
            host=self.hostname,
            port=self.port,
            interval=self.gauge_interval_ms / 1000,
        )
