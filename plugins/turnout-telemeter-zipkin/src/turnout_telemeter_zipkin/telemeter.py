"""``io.l5d.zipkin``: spans of sampled requests, exported to a Zipkin collector.

Spans are queued by the routers (a bounded deque: a slow or dead collector costs memory up to
``maxQueuedSpans`` and then drops the oldest, never blocks a request) and posted in batches as
Zipkin's JSON v2 (``POST http://<host>:<port><path>``) every ``flushIntervalMs``. Linkerd 1
sent Scribe (thrift) to port 9410; Zipkin itself and every Zipkin-compatible collector
(Jaeger, the OpenTelemetry collector's zipkin receiver, Grafana Tempo) accept the HTTP JSON
API, so that is what turnout speaks, on Zipkin's HTTP port 9411 by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from turnout.api import (
    BuildContext,
    Counter,
    MetricsTree,
    Span,
    Telemeter,
    TelemeterConfig,
    Tracer,
    option,
)

if TYPE_CHECKING:  # aiohttp is imported when spans are first sent
    import aiohttp

log = logging.getLogger("turnout.zipkin")


class ZipkinConfig(TelemeterConfig):
    """Trace sampled requests to a Zipkin collector (HTTP JSON v2)."""

    kind = "io.l5d.zipkin"
    host: str = option("localhost", doc="Collector host.")
    port: int = option(
        9411,
        min=1,
        max=65535,
        doc="Collector port (Zipkin's HTTP port; Linkerd's 9410 was Scribe).",
    )
    path: str = option("/api/v2/spans", doc="Collector path (turnout extension).")
    sample_rate: float = option(
        0.001, min=0.0, max=1.0, doc="Share of new traces recorded (callers' decisions win)."
    )
    batch_size: int = option(500, min=1, max=10_000, doc="Most spans per POST (turnout extension).")
    flush_interval_ms: int = option(
        1000, min=10, max=60_000, doc="How often queued spans are sent (turnout extension)."
    )
    max_queued_spans: int = option(
        10_000,
        min=1,
        max=1_000_000,
        doc="Spans kept while the collector is slow or down (turnout extension).",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.path.startswith("/"):
            yield "path", "must start with / (such as /api/v2/spans)"

    def new_telemeter(self, ctx: BuildContext) -> ZipkinTelemeter:
        return ZipkinTelemeter(self, ctx.metrics)


class ZipkinTelemeter(Telemeter, Tracer):
    """Queues spans (:meth:`record`, on the request path: one append) and sends them."""

    exports = True

    def __init__(self, config: ZipkinConfig, metrics: MetricsTree | None = None) -> None:
        self.config = config
        self.sample_rate = config.sample_rate
        self.url = f"http://{_url_host(config.host)}:{config.port}{config.path}"
        self.queue: deque[Span] = deque(maxlen=config.max_queued_spans)
        self._session: aiohttp.ClientSession | None = None
        self._last_error_log = 0.0
        scope = ("telemetry", "zipkin")
        if metrics is not None:
            self._sent = metrics.counter(*scope, "spans_sent")
            self._dropped = metrics.counter(*scope, "spans_dropped")
            self._failures = metrics.counter(*scope, "send_failures")
            metrics.gauge(*scope, "queued", fn=lambda: len(self.queue))
        else:
            self._sent, self._dropped, self._failures = Counter(), Counter(), Counter()

    # -- Telemeter -------------------------------------------------------------------------
    def tracer(self) -> Tracer:
        return self

    async def run(self) -> None:
        interval = self.config.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 2.0)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- Tracer ----------------------------------------------------------------------------
    def record(self, span: Span) -> None:
        queue = self.queue
        if len(queue) == queue.maxlen:
            self._dropped.value += 1  # the oldest goes
        queue.append(span)

    # -- export ----------------------------------------------------------------------------
    async def flush(self) -> None:
        """Send everything queued, a batch at a time; on failure keep the batch for later."""
        while self.queue:
            batch = [
                self.queue.popleft() for _ in range(min(len(self.queue), self.config.batch_size))
            ]
            if not await self._send(batch):
                room = (self.queue.maxlen or 0) - len(self.queue)
                keep = batch[-room:] if room > 0 else []
                self._dropped.value += len(batch) - len(keep)
                self.queue.extendleft(reversed(keep))
                return

    async def _send(self, batch: list[Span]) -> bool:
        import aiohttp  # (not at import time: every turnout process loads this plugin)

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        body = json.dumps([span_json(s) for s in batch], separators=(",", ":"))
        try:
            async with self._session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                if response.status >= 300:
                    text = (await response.text())[:200]
                    raise OSError(f"HTTP {response.status}: {text}")
        except (OSError, aiohttp.ClientError, TimeoutError) as e:
            self._failures.value += 1
            now = time.monotonic()
            if now - self._last_error_log > 30:  # once per 30 s, not once per batch
                self._last_error_log = now
                log.warning("zipkin: cannot send spans to %s: %s", self.url, e)
            return False
        self._sent.value += len(batch)
        return True


def span_json(span: Span) -> dict[str, Any]:
    """A span in Zipkin's JSON v2 model."""
    out: dict[str, Any] = {
        "traceId": f"{span.trace_id:032x}" if span.trace_id >> 64 else f"{span.trace_id:016x}",
        "id": f"{span.span_id:016x}",
        "kind": span.kind,
        "name": span.name,
        "timestamp": span.timestamp_us,
        "duration": max(span.duration_us, 1),
        "localEndpoint": {"serviceName": span.local_service},
    }
    if span.parent_id:
        out["parentId"] = f"{span.parent_id:016x}"
    if span.remote_ip:
        remote: dict[str, Any] = {}
        try:
            ip = ipaddress.ip_address(span.remote_ip)
            remote["ipv6" if ip.version == 6 else "ipv4"] = str(ip)
        except ValueError:
            remote["serviceName"] = span.remote_ip
        if span.remote_port:
            remote["port"] = span.remote_port
        out["remoteEndpoint"] = remote
    tags = dict(span.tags)
    if span.error:
        tags["error"] = span.error
    if tags:
        out["tags"] = tags
    if span.shared:
        out["shared"] = True
    if span.debug:
        out["debug"] = True
    return out


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
