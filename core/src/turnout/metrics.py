"""The metrics tree: counters, gauges and histograms under Linkerd's names.

Metrics are addressed by a path of segments (``("rt", "http", "server", "127.0.0.1", "4140",
"requests")``) and exported flat as ``rt/http/server/127.0.0.1/4140/requests``, as Linkerd's
``/admin/metrics.json`` does. Updating a metric on the request path is one attribute
increment (counters) or one ``bisect`` into fixed buckets (histograms); nothing is formatted
until an exporter reads the tree.

Histograms report percentiles over a recent window: the current minute plus the previous
one (Linkerd snapshots and resets every minute); memory per histogram is fixed (~4.5 KB).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

Key = tuple[str, ...]

#: seconds per histogram window
WINDOW = 60.0


def _bounds() -> list[float]:
    # ~4% relative error from 1 µs to ~1 hour (for values in milliseconds) in ~560 buckets
    out, v = [], 0.001
    while v < 4_000_000:
        out.append(v)
        v *= 1.04
    return out


_BOUNDS = _bounds()
#: the upper bounds of the histogram buckets (the last bucket is everything above)
BOUNDS: tuple[float, ...] = tuple(_BOUNDS)
_N = len(_BOUNDS) + 1
_ZEROS = array("Q", bytes(8 * _N))
#: what the hot path calls to find a value's bucket: ``hist.counts[bucket(v)] += 1``
bucket = functools.partial(bisect.bisect_left, _BOUNDS)


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def incr(self, n: int = 1) -> None:
        self.value += n


class Counted(Protocol):
    """Anything with a count: a :class:`Counter`, a :class:`SumCounter`, a protocol's own."""

    @property
    def value(self) -> int: ...


class SumCounter:
    """A counter whose value is the sum of others (``requests`` = success + failures):
    one increment fewer on the request path. Exported like a :class:`Counter`."""

    __slots__ = ("parts",)

    def __init__(self, parts: Callable[[], Sequence[Counted]]) -> None:
        self.parts = parts

    @property
    def value(self) -> int:
        return sum(c.value for c in self.parts())


class DerivedCounter(SumCounter):
    """A counter kept outside the tree (a plain int attribute the data path increments,
    possibly in compiled code), read when exported: ``fn()``. Exported like a
    :class:`Counter` (it is a :class:`SumCounter`, of one value)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], int]) -> None:
        self.fn = fn

    @property
    def value(self) -> int:
        return self.fn()


class RequestCounts:
    """Outcomes of the requests of one scope (a server, a service, a client): ``success``
    and ``failures`` counts, and ``latency``, its latency histogram
    (``latency.counts[bucket(ms)] += 1``). Protocols increment these attributes on the
    request path and may supply their own class with the same attributes (a compiled one);
    the tree exports ``success``, ``failures`` (and ``requests``) as derived counters."""

    __slots__ = ("failures", "latency", "success")

    def __init__(self, latency: Histogram) -> None:
        self.success = 0
        self.failures = 0
        self.latency = latency


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
    """Bucketed distribution of values (milliseconds, counts, bytes) over a recent window.

    ``add`` is one ``bisect`` and one increment; the hot path may inline it as
    ``hist.counts[bucket(value)] += 1``. :meth:`MetricsTree.rotate` (called every
    :data:`WINDOW` seconds by the linker) starts a new window.
    """

    __slots__ = ("_cache", "_rotations", "counts", "previous", "retired")

    def __init__(self) -> None:
        self.counts = array("Q", _ZEROS)
        self.previous: array[int] | None = None
        self.retired = 0  # values in windows older than ``previous``
        self._cache: tuple[tuple[int, int], dict[str, float]] | None = None
        self._rotations = 0

    def add(self, value: float) -> None:
        self.counts[bucket(value)] += 1

    def rotate(self) -> None:
        if self.previous is not None:
            self.retired += sum(self.previous)
        self.previous = self.counts
        self.counts = array("Q", _ZEROS)
        self._rotations += 1

    @property
    def count(self) -> int:
        return self.retired + sum(self.previous or ()) + sum(self.counts)

    def snapshot(self) -> dict[str, float]:
        """``count`` (all time) and, if the window has values, max/min/percentiles/sum/avg.

        Computed with C-level passes over the buckets, and cached: values are only ever
        added to the current window, so an unchanged count means an unchanged snapshot.
        """
        previous = self.previous
        merged = (
            self.counts
            if previous is None
            else array("Q", map(operator.add, self.counts, previous))
        )
        n = sum(merged)
        key = (n, self._rotations)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return dict(cached[1])
        out: dict[str, float] = {
            "count": self.retired + (sum(previous) if previous else 0) + sum(self.counts)
        }
        if n:
            cumulative = list(itertools.accumulate(merged))
            out["max"] = VALUES[bisect.bisect_left(cumulative, n)]
            out["min"] = VALUES[bisect.bisect_right(cumulative, 0)]
            for name, q in _QUANTILES:
                out[name] = VALUES[bisect.bisect_left(cumulative, max(1, math.ceil(q * n)))]
            total = sum(map(operator.mul, VALUES, merged))
            out["sum"] = round(total, 3)
            out["avg"] = round(total / n, 3)
        self._cache = (key, out)
        return dict(out)


_QUANTILES = (
    ("p50", 0.5),
    ("p90", 0.9),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p9990", 0.999),
    ("p9999", 0.9999),
)


Metric = Counter | SumCounter | DerivedCounter | Gauge | Histogram
_M = TypeVar("_M", Counter, Gauge, Histogram)


def _value(index: int) -> float:
    """A representative value of a bucket (its upper bound, rounded)."""
    if index >= len(_BOUNDS):
        return _BOUNDS[-1]
    v = _BOUNDS[index]
    return round(v, 3) if v >= 1 else float(f"{v:.3g}")


#: the representative value of every bucket (``VALUES[i]`` for bucket ``i``); the first
#: bucket (values up to 0.001, zero included: "no retries") stands for 0
VALUES: tuple[float, ...] = (0.0, *(_value(i) for i in range(1, _N)))


def bucket_value(index: int) -> float:
    """The representative value (upper bound) of histogram bucket ``index``."""
    return VALUES[index] if 0 <= index < _N else VALUES[-1]


class MetricsTree:
    """All metrics of a process, by path."""

    def __init__(self) -> None:
        self._metrics: dict[Key, Metric] = {}
        #: the metrics sorted by path, rebuilt only when metrics are added or removed
        self._sorted: list[tuple[Key, Metric]] | None = None

    def counter(self, *path: str) -> Counter:
        return self._get(path, Counter)

    def sum_counter(self, *path: str, parts: Callable[[], Sequence[Counted]]) -> SumCounter:
        """A counter exported as the sum of ``parts()`` (never incremented itself)."""
        metric = self._metrics.get(path)
        if metric is None:
            metric = self._metrics[path] = SumCounter(parts)
            self._sorted = None
        elif not isinstance(metric, SumCounter):
            raise TypeError(f"metric {'/'.join(path)} is a {type(metric).__name__}, not SumCounter")
        return metric

    def derived_counter(self, *path: str, fn: Callable[[], int]) -> DerivedCounter:
        """A counter exported as ``fn()`` (a count kept elsewhere); it replaces whatever was
        at ``path``."""
        metric = self._metrics[path] = DerivedCounter(fn)
        self._sorted = None
        return metric

    def request_counts(
        self,
        *scope: str,
        factory: Callable[[Histogram], Any] = RequestCounts,
    ) -> tuple[Any, DerivedCounter, DerivedCounter, SumCounter, Histogram]:
        """``success``, ``failures``, ``requests`` and ``request_latency_ms`` under ``scope``,
        kept in ``factory(histogram)`` (a :class:`RequestCounts` or a class like it).
        Returns (counts, success, failures, requests, latency histogram)."""
        latency = self.stat(*scope, "request_latency_ms")
        counts = factory(latency)
        success = self.derived_counter(*scope, "success", fn=lambda: counts.success)
        failures = self.derived_counter(*scope, "failures", fn=lambda: counts.failures)
        requests = self._metrics[(*scope, "requests")] = SumCounter(lambda: [success, failures])
        return counts, success, failures, requests, latency

    def gauge(self, *path: str, fn: Callable[[], float] | None = None) -> Gauge:
        g = self._get(path, Gauge)
        assert isinstance(g, Gauge)
        if fn is not None:
            g.fn = fn
        return g

    def stat(self, *path: str) -> Histogram:
        return self._get(path, Histogram)

    def _get(self, path: Key, cls: type[_M]) -> _M:
        metric = self._metrics.get(path)
        if metric is None:
            created = self._metrics[path] = cls()
            self._sorted = None
            return created
        if not isinstance(metric, cls):
            raise TypeError(
                f"metric {'/'.join(path)} is a {type(metric).__name__}, not {cls.__name__}"
            )
        return metric

    def prune(self, *prefix: str) -> int:
        """Remove every metric under ``prefix`` (idle clients); returns how many."""
        doomed = [k for k in self._metrics if k[: len(prefix)] == prefix]
        for k in doomed:
            del self._metrics[k]
        if doomed:
            self._sorted = None
        return len(doomed)

    def prune_scopes(self, scopes: Iterable[Key], keep: Iterable[Key] = ()) -> int:
        """Remove every metric under any of ``scopes`` but those under a longer scope in
        ``keep`` (names nest: ``service/svc/a/b/...`` lives under ``service/svc/a``), in one
        pass over the tree; returns how many."""
        doomed_scopes = set(scopes)
        kept = set(keep) - doomed_scopes
        lengths = sorted({len(s) for s in doomed_scopes | kept}, reverse=True)
        doomed = []
        for k in self._metrics:
            for n in lengths:  # the longest scope holding k decides
                if n >= len(k):
                    continue
                head = k[:n]
                if head in kept:
                    break
                if head in doomed_scopes:
                    doomed.append(k)
                    break
        for k in doomed:
            del self._metrics[k]
        if doomed:
            self._sorted = None
        return len(doomed)

    def rotate(self) -> None:
        """Start a new histogram window (every :data:`WINDOW` seconds)."""
        for metric in list(self._metrics.values()):
            if isinstance(metric, Histogram):
                metric.rotate()

    def items(self) -> Iterator[tuple[Key, Metric]]:
        return iter(list(self._metrics.items()))

    def sorted_items(self) -> list[tuple[Key, Metric]]:
        """Every metric, sorted by path (cached while no metric is added or removed)."""
        if self._sorted is None:
            self._sorted = sorted(self._metrics.items())
        return self._sorted

    def flat(self, prefix: Key = ()) -> dict[str, float]:
        """Linkerd's flat ``/admin/metrics.json`` form."""
        out: dict[str, float] = {}
        for key, metric in self.sorted_items():
            if key[: len(prefix)] != prefix:
                continue
            name = "/".join(key)
            if isinstance(metric, Counter | SumCounter):
                out[name] = metric.value
            elif isinstance(metric, Gauge):
                out[name] = metric.read()
            else:
                for stat, value in metric.snapshot().items():
                    out[f"{name}.{stat}"] = value
        return out

    def export_raw(self) -> list[list[Any]]:
        """Every metric with what merging it with other processes' needs (``workers: N``):
        ``[path segments, "counter" | "gauge", value]`` or ``[path segments, "stat",
        {"retired": n, "window": [[bucket, count], ...]}]`` (the histogram's buckets of the
        current and previous window, summed; only the non-empty ones)."""
        out: list[list[Any]] = []
        for key, metric in self.sorted_items():
            if isinstance(metric, Counter | SumCounter):
                out.append([list(key), "counter", metric.value])
            elif isinstance(metric, Gauge):
                out.append([list(key), "gauge", metric.read()])
            else:
                window = metric.counts
                if metric.previous is not None:
                    window = array("Q", map(operator.add, window, metric.previous))
                buckets = [[i, n] for i, n in enumerate(window) if n]
                out.append([list(key), "stat", {"retired": metric.retired, "window": buckets}])
        return out

    @classmethod
    def merged(
        cls, exports: Iterable[list[list[Any]]], gauge_max: Callable[[Key], bool]
    ) -> MetricsTree:
        """A tree holding the sum of several :meth:`export_raw` results: counters added,
        histograms merged bucket by bucket (so percentiles are those of all the values, never
        averages of percentiles), gauges added, or the highest when ``gauge_max(key)`` says a
        sum means nothing (a load balancer's size: every process has the same endpoints)."""
        tree = cls()
        for export in exports:
            for segments, kind, value in export:
                key = tuple(segments)
                if kind == "counter":
                    tree.counter(*key).value += int(value)
                elif kind == "gauge":
                    gauge = tree.gauge(*key)
                    gauge.set(max(gauge.value, value) if gauge_max(key) else gauge.value + value)
                elif kind == "stat":
                    hist = tree.stat(*key)
                    hist.retired += int(value["retired"])
                    for index, count in value["window"]:
                        hist.counts[int(index)] += int(count)
        return tree

    def tree(self, prefix: Key = ()) -> dict[str, Any]:
        """Linkerd's ``?tree=1`` form: nested objects, ``counter``/``gauge``/``stat.*`` leaves."""
        root: dict[str, Any] = {}
        for key, metric in self.sorted_items():
            if key[: len(prefix)] != prefix:
                continue
            node = root
            for part in key[len(prefix) :]:
                node = node.setdefault(part, {})
            if isinstance(metric, Counter | SumCounter):
                node["counter"] = metric.value
            elif isinstance(metric, Gauge):
                node["gauge"] = metric.read()
            else:
                for stat, value in metric.snapshot().items():
                    node[f"stat.{stat}"] = value
        return root
