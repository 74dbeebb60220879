"""The metrics tree: counters, gauges and histograms under Linkerd's names.

Metrics are addressed by a path of segments (``("rt", "http", "server", "127.0.0.1", "4140",
"requests")``) and exported flat as ``rt/http/server/127.0.0.1/4140/requests``, as Linkerd's
``/admin/metrics.json`` does. Updating a metric on the request path is one attribute
increment (counters) or one ``bisect`` into fixed buckets (histograms); nothing is formatted
until an exporter reads the tree.

Histograms report percentiles over a recent window: the current minute plus the previous
one (Linkerd snapshots and resets every minute); memory per histogram is fixed.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

Key = tuple[str, ...]

#: seconds per histogram window
WINDOW = 60.0


def _bounds() -> list[float]:
    # ~2% relative error from 1 µs to ~1 hour (for values in milliseconds) in 1,100 buckets
    out, v = [], 0.001
    while v < 4_000_000:
        out.append(v)
        v *= 1.02
    return out


_BOUNDS = _bounds()
_N = len(_BOUNDS) + 1
_epoch = [0]
_epoch_started = [time.monotonic()]


def tick() -> int:
    """Advance the histogram window if a minute has passed (the linker calls this)."""
    return _current_epoch()


def _current_epoch() -> int:
    now = time.monotonic()
    if now - _epoch_started[0] >= WINDOW:
        _epoch[0] += int((now - _epoch_started[0]) // WINDOW)
        _epoch_started[0] = now
    return _epoch[0]


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def incr(self, n: int = 1) -> None:
        self.value += n


class Gauge:
    """A value read when exported: either set explicitly or computed by a function."""

    __slots__ = ("fn", "value")

    def __init__(self, fn: Callable[[], float] | None = None) -> None:
        self.value: float = 0
        self.fn = fn

    def set(self, value: float) -> None:
        self.value = value

    def read(self) -> float:
        return self.fn() if self.fn is not None else self.value


class Histogram:
    """Bucketed distribution of values (milliseconds, counts, bytes) over a recent window."""

    __slots__ = ("counts", "epoch", "previous", "total_count")

    def __init__(self) -> None:
        self.counts: list[int] | None = None
        self.previous: list[int] | None = None
        self.epoch = _epoch[0]
        self.total_count = 0

    def add(self, value: float) -> None:
        if self.epoch != _epoch[0]:
            self._rotate()
        counts = self.counts
        if counts is None:
            counts = self.counts = [0] * _N
        counts[bisect.bisect_left(_BOUNDS, value)] += 1
        self.total_count += 1

    def _rotate(self) -> None:
        gap = _epoch[0] - self.epoch
        self.previous = self.counts if gap == 1 else None
        self.counts = None
        self.epoch = _epoch[0]

    def snapshot(self) -> dict[str, float]:
        """``count`` (all time) and, if the window has values, max/min/percentiles/sum/avg."""
        _current_epoch()
        if self.epoch != _epoch[0]:
            self._rotate()
        merged = [0] * _N
        for counts in (self.previous, self.counts):
            if counts:
                merged = [a + b for a, b in zip(merged, counts, strict=True)]
        n = sum(merged)
        out: dict[str, float] = {"count": self.total_count}
        if n == 0:
            return out
        nonzero = [i for i, c in enumerate(merged) if c]
        out["max"] = _value(nonzero[-1])
        out["min"] = _value(nonzero[0])
        for name, q in (
            ("p50", 0.5),
            ("p90", 0.9),
            ("p95", 0.95),
            ("p99", 0.99),
            ("p9990", 0.999),
            ("p9999", 0.9999),
        ):
            out[name] = _quantile(merged, n, q)
        total = sum(_value(i) * c for i, c in enumerate(merged) if c)
        out["sum"] = round(total, 3)
        out["avg"] = round(total / n, 3)
        return out


def _value(index: int) -> float:
    """A representative value of a bucket (its upper bound, rounded)."""
    if index >= len(_BOUNDS):
        return _BOUNDS[-1]
    v = _BOUNDS[index]
    return round(v, 3) if v >= 1 else float(f"{v:.3g}")


def _quantile(counts: list[int], n: int, q: float) -> float:
    rank = max(1, math.ceil(q * n))
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= rank:
            return _value(i)
    return _value(len(counts) - 1)  # pragma: no cover


class MetricsTree:
    """All metrics of a process, by path."""

    def __init__(self) -> None:
        self._metrics: dict[Key, Counter | Gauge | Histogram] = {}

    def counter(self, *path: str) -> Counter:
        return self._get(path, Counter)  # type: ignore[return-value]

    def gauge(self, *path: str, fn: Callable[[], float] | None = None) -> Gauge:
        g = self._get(path, Gauge)
        assert isinstance(g, Gauge)
        if fn is not None:
            g.fn = fn
        return g

    def stat(self, *path: str) -> Histogram:
        return self._get(path, Histogram)  # type: ignore[return-value]

    def _get(self, path: Key, cls: type) -> Any:
        metric = self._metrics.get(path)
        if metric is None:
            metric = self._metrics[path] = cls()
        elif not isinstance(metric, cls):
            raise TypeError(
                f"metric {'/'.join(path)} is a {type(metric).__name__}, not {cls.__name__}"
            )
        return metric

    def prune(self, *prefix: str) -> int:
        """Remove every metric under ``prefix`` (idle clients); returns how many."""
        doomed = [k for k in self._metrics if k[: len(prefix)] == prefix]
        for k in doomed:
            del self._metrics[k]
        return len(doomed)

    def items(self) -> Iterator[tuple[Key, Counter | Gauge | Histogram]]:
        return iter(list(self._metrics.items()))

    def flat(self, prefix: Key = ()) -> dict[str, float]:
        """Linkerd's flat ``/admin/metrics.json`` form."""
        out: dict[str, float] = {}
        for key, metric in sorted(self.items()):
            if key[: len(prefix)] != prefix:
                continue
            name = "/".join(key)
            if isinstance(metric, Counter):
                out[name] = metric.value
            elif isinstance(metric, Gauge):
                out[name] = metric.read()
            else:
                for stat, value in metric.snapshot().items():
                    out[f"{name}.{stat}"] = value
        return out

    def tree(self, prefix: Key = ()) -> dict[str, Any]:
        """Linkerd's ``?tree=1`` form: nested objects, ``counter``/``gauge``/``stat.*`` leaves."""
        root: dict[str, Any] = {}
        for key, metric in sorted(self.items()):
            if key[: len(prefix)] != prefix:
                continue
            node = root
            for part in key[len(prefix) :]:
                node = node.setdefault(part, {})
            if isinstance(metric, Counter):
                node["counter"] = metric.value
            elif isinstance(metric, Gauge):
                node["gauge"] = metric.read()
            else:
                for stat, value in metric.snapshot().items():
                    node[f"stat.{stat}"] = value
        return root
