"""The ``io.l5d.statsd`` telemeter's runtime: a periodic UDP push of the metrics tree.

Every interval (``gaugeIntervalMs``) it reads the tree and sends:

- each counter's increase since the previous push: ``<name>:<delta>|c`` (nothing when it did
  not change);
- each gauge's value: ``<name>:<value>|g`` (a negative value is sent as ``0|g`` then
  ``-5|g``, since a signed gauge value means "change by" in statsd);
- for each histogram that got values since the previous push, their number
  ``<name>.count:<n>|c`` and their statistics as gauges ``<name>.min``, ``.max``, ``.avg``,
  ``.p50``, ``.p90``, ``.p95``, ``.p99``, ``.p9990`` (``|g``), computed from the histogram's
  buckets (about 4% resolution). Timers (``|ms``) are not used: statsd computes percentiles
  from individual samples, which a bucketed histogram no longer has.

Names are Linkerd's: ``<prefix>.`` + the path with every character outside ``[A-Za-z0-9]``
replaced by ``_`` and ``/`` by ``.`` (``linkerd.rt.http.client._.io_l5d_fs.web.requests``;
empty segments are skipped).
Lines are packed into datagrams of at most :data:`MAX_DATAGRAM` bytes. Sending never blocks
the event loop and never raises: a missing statsd server only costs dropped datagrams.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from array import array
from collections.abc import Iterator

from turnout.api import (
    BOUNDS,
    VALUES,
    Counter,
    Gauge,
    Histogram,
    MetricsTree,
    SumCounter,
    Telemeter,
)

log = logging.getLogger("turnout.telemeter.statsd")

#: largest UDP payload sent (the usual statsd advice for networks with a 1500-byte MTU)
MAX_DATAGRAM = 1432
#: seconds between two warnings about an unreachable statsd
WARN_EVERY = 300
#: datagrams still queued in the transport beyond which a push is dropped
MAX_BUFFERED = 256 * 1024

Key = tuple[str, ...]

NBUCKETS = len(BOUNDS) + 1
_ZEROS = array("Q", bytes(8 * NBUCKETS))
#: gauge suffix and quantile sent for each histogram
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p9990", 0.999))

_DISALLOWED = re.compile(r"[^/A-Za-z0-9]")
_PREFIX_DISALLOWED = re.compile(r"[^A-Za-z0-9_.\-]")


def metric_name(prefix: str, key: Key) -> str:
    """Linkerd's statsd name of a tree path (see the module docstring)."""
    name = _DISALLOWED.sub("_", "/".join(key))
    name = ".".join(part for part in name.split("/") if part)  # no empty graphite node
    prefix = _PREFIX_DISALLOWED.sub("_", prefix).strip(".")
    return f"{prefix}.{name}" if prefix else name


def number(value: float) -> str:
    """A statsd value: integers without a decimal point, others with at most 6 decimals."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


class _Window:
    """Follows one histogram's windows and returns the values added since the last look."""

    __slots__ = ("hist", "ref", "seen")

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self.ref: array[int] | None = None  # the window array looked at last time
        self.seen = _ZEROS  # a copy of it as it was then

    def new_values(self) -> dict[int, int]:
        """``{bucket index: count}`` of the values recorded since the previous call (at the
        first call: every value of the current window)."""
        cur, prev = self.hist.counts, self.hist.previous
        if self.ref is cur:
            pairs: tuple[tuple[array[int], array[int] | None], ...] = ((cur, self.seen),)
        elif prev is not None and self.ref is prev:
            pairs = ((prev, self.seen), (cur, None))  # the window rotated once
        else:  # first look, or rotated more than once (an older window is lost)
            pairs = ((cur, None),) if prev is None else ((prev, None), (cur, None))
        out: dict[int, int] = {}
        for now, before in pairs:
            if before is None:
                for i, c in enumerate(now):
                    if c:
                        out[i] = out.get(i, 0) + c
            else:
                for i, (a, b) in enumerate(zip(now, before, strict=True)):
                    if a != b:
                        out[i] = out.get(i, 0) + a - b
        self.ref = cur
        self.seen = array("Q", cur)
        return out


def summary(counts: dict[int, int]) -> tuple[int, list[tuple[str, float]]]:
    """(number of values, [(stat, value)]) of a bucket → count map."""
    indices = sorted(counts)
    n = sum(counts.values())
    total = sum(VALUES[i] * c for i, c in counts.items())
    stats = [("min", VALUES[indices[0]]), ("max", VALUES[indices[-1]]), ("avg", total / n)]
    for name, q in QUANTILES:
        rank, seen = max(1, math.ceil(q * n)), 0
        for i in indices:
            seen += counts[i]
            if seen >= rank:
                stats.append((name, VALUES[i]))
                break
    return n, stats


def datagrams(lines: list[str], limit: int = MAX_DATAGRAM) -> Iterator[bytes]:
    """``lines`` joined by newlines into payloads of at most ``limit`` bytes (a line longer
    than that is dropped)."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode("ascii", "replace")
        if len(data) > limit:
            log.debug("statsd line too long for a datagram, dropped: %s", line[:100])
            continue
        extra = len(data) + (1 if batch else 0)
        if size + extra > limit:
            yield b"\n".join(batch)
            batch, size, extra = [], 0, len(data)
        batch.append(data)
        size += extra
    if batch:
        yield b"\n".join(batch)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: StatsdTelemeter) -> None:
        self.owner = owner

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: statsd is down; the next push tries again
        owner = self.owner
        owner.errors += 1
        now = time.monotonic()
        if now - owner.last_warning > WARN_EVERY:
            owner.last_warning = now
            log.warning(
                "statsd at %s:%d: %s (%d errors so far; next warning in %ds at the earliest)",
                owner.host,
                owner.port,
                exc,
                owner.errors,
                WARN_EVERY,
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner.transport is not None and self.owner.transport.is_closing():
            self.owner.transport = None


class StatsdTelemeter(Telemeter):
    """Pushes ``metrics`` to statsd at ``host:port`` every ``interval`` seconds."""

    def __init__(
        self,
        metrics: MetricsTree,
        *,
        prefix: str = "linkerd",
        host: str = "127.0.0.1",
        port: int = 8125,
        interval: float = 10.0,
    ) -> None:
        self.metrics = metrics
        self.prefix = prefix
        self.host = host
        self.port = port
        self.interval = interval
        self.transport: asyncio.DatagramTransport | None = None
        #: datagrams sent, datagrams dropped, errors reported by the socket
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.last_warning = -math.inf
        self._names: dict[Key, str] = {}
        self._counters: dict[Key, tuple[object, float]] = {}
        self._windows: dict[Key, _Window] = {}
        self._connect_failed = False

    # -- reading the tree --------------------------------------------------------------------
    def _name(self, key: Key) -> str:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = metric_name(self.prefix, key)
        return name

    def lines(self) -> list[str]:
        """The statsd lines of one push (and the state for the next one's deltas)."""
        out: list[str] = []
        present: set[Key] = set()
        for key, metric in self.metrics.items():
            present.add(key)
            if isinstance(metric, Counter | SumCounter):
                value = metric.value
                last = self._counters.get(key)
                delta = value if last is None or last[0] is not metric else value - last[1]
                self._counters[key] = (metric, value)
                if delta < 0:  # reset: report what it counts now
                    delta = value
                if delta:
                    out.append(f"{self._name(key)}:{number(delta)}|c")
            elif isinstance(metric, Gauge):
                try:
                    reading = float(metric.read())
                except Exception:  # the gauge's object just went away
                    continue
                if math.isnan(reading) or math.isinf(reading):
                    continue
                name = self._name(key)
                if reading < 0:
                    out.append(f"{name}:0|g")
                out.append(f"{name}:{number(reading)}|g")
            elif isinstance(metric, Histogram):
                window = self._windows.get(key)
                if window is None or window.hist is not metric:
                    window = self._windows[key] = _Window(metric)
                counts = window.new_values()
                if not counts:
                    continue
                n, stats = summary(counts)
                name = self._name(key)
                out.append(f"{name}.count:{n}|c")
                out.extend(f"{name}.{stat}:{number(v)}|g" for stat, v in stats)
        if len(self._names) > len(present) + 1000 or len(self._counters) > len(present):
            self._forget(present)
        else:
            for key in [k for k in self._windows if k not in present]:
                del self._windows[key]
        return out

    def _forget(self, present: set[Key]) -> None:
        self._names = {k: v for k, v in self._names.items() if k in present}
        self._counters = {k: v for k, v in self._counters.items() if k in present}
        self._windows = {k: v for k, v in self._windows.items() if k in present}

    # -- sending -------------------------------------------------------------------------------
    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), remote_addr=(self.host, self.port)
            )
        except OSError as e:  # unresolvable host, no route...
            if not self._connect_failed:
                log.warning("statsd at %s:%d unreachable: %s", self.host, self.port, e)
            self._connect_failed = True
            return
        self._connect_failed = False
        self.transport = transport

    def flush(self) -> int:
        """Send one push now; returns the number of datagrams handed to the socket."""
        lines = self.lines()
        transport = self.transport
        if transport is None or transport.is_closing():
            self.dropped += 1 if lines else 0
            return 0
        buffered = getattr(transport, "get_write_buffer_size", lambda: 0)()
        if buffered > MAX_BUFFERED:
            self.dropped += 1
            return 0
        n = 0
        for payload in datagrams(lines):
            try:
                transport.sendto(payload)
            except OSError as e:  # never raised by asyncio's transports; kept as a guard
                self.errors += 1
                log.debug("statsd send failed: %s", e)
                continue
            n += 1
        self.sent += n
        return n

    async def run(self) -> None:
        while True:
            if self.transport is None or self.transport.is_closing():
                await self._connect()
            await asyncio.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # a bug reading some metric must not stop the pushes
                log.exception("statsd push failed")

    async def close(self) -> None:
        """Send the last counts, then close the socket."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            try:
                self.flush()
            except Exception:
                log.exception("last statsd push failed")
            transport.close()
        self.transport = None
