"""A prometheus-client ``Collector`` that reads turnout's metrics tree at scrape time.

Nothing is registered on the request path: :meth:`TreeCollector.gather` walks
:meth:`MetricsTree.items` when Prometheus scrapes and groups the samples into one family per
name; :meth:`TreeCollector.collect` yields them as prometheus-client metric families (for
``generate_latest`` on the telemeter's private registry) and
:meth:`TreeCollector.render_text` writes the same text exposition directly, from escaped
series texts kept between scrapes. The per-key naming is cached too (a key's name never
changes while the set of client/service scopes stays the same).

Histograms of the tree keep per-bucket counts for the current and the previous minute only
(:class:`turnout.api.Histogram`), while Prometheus wants cumulative ``_bucket``/``_sum``/``_count``
series. :class:`HistogramTotals` therefore follows every histogram's windows (at each scrape
and every 20 s from :meth:`observe`) and accumulates their deltas into all-time per-bucket
totals.
"""

from __future__ import annotations

import logging
import math
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from turnout.api import BOUNDS, VALUES, Counter, Gauge, Histogram, MetricsTree, SumCounter

from .config import DEFAULT_BUCKETS
from .naming import Key, Kind, Naming, Series, anchors_of, split

log = logging.getLogger("turnout.telemeter.prometheus")

#: number of buckets of a turnout histogram (the last one holds values above the largest bound)
NBUCKETS = len(BOUNDS) + 1
_ZEROS = array("Q", bytes(8 * NBUCKETS))

#: summary quantiles of Prometheus naming (label value, key of ``Histogram.snapshot()``)
PROM_QUANTILES = (
    ("0.5", "p50"),
    ("0.9", "p90"),
    ("0.95", "p95"),
    ("0.99", "p99"),
    ("0.999", "p9990"),
)
#: Linkerd's summary lines: quantile 0 is the minimum, 1 the maximum
LINKERD_QUANTILES = (
    ("0", "min"),
    ("0.5", "p50"),
    ("0.9", "p90"),
    ("0.95", "p95"),
    ("0.99", "p99"),
    ("0.999", "p9990"),
    ("0.9999", "p9999"),
    ("1", "max"),
)


#: buckets compared at once when looking for the ones that changed (C-level slice compare)
_CHUNK = 16


def _changes(now: array[int], before: array[int]) -> Iterator[tuple[int, int]]:
    """``(bucket, increase)`` for every bucket where ``now`` differs from ``before``."""
    for start in range(0, NBUCKETS, _CHUNK):
        end = start + _CHUNK
        if now[start:end] != before[start:end]:
            for i in range(start, min(end, NBUCKETS)):
                if now[i] != before[i]:
                    yield i, now[i] - before[i]


class _Totals:
    """All-time per-bucket counts of one histogram, built from its window deltas."""

    __slots__ = (
        "count",
        "cumulative",
        "hist",
        "nonzero",
        "ref",
        "seen",
        "snap",
        "sum",
        "totals",
        "version",
    )

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self.ref: array[int] | None = None  # the window array last looked at
        self.seen = _ZEROS  # a copy of it as it was then
        self.totals = array("Q", _ZEROS)
        self.nonzero: set[int] = set()  # buckets of totals that hold values
        self.count = 0
        self.sum = 0.0  # in the tree's unit
        #: (count, scale, cumulative Prometheus bucket counts) of the last scrape
        self.cumulative: tuple[int, float, list[int]] | None = None
        #: bumped whenever the histogram's window changed; (version, snapshot) of the last one
        self.version = 0
        self.snap: tuple[int, dict[str, float]] | None = None

    def update(self) -> None:
        hist = self.hist
        cur, prev = hist.counts, hist.previous
        if self.ref is cur:
            if cur == self.seen:  # nothing new (C-level compare): the common case
                return
            pairs: Iterable[tuple[array[int], array[int]]] = ((cur, self.seen),)
        elif prev is not None and self.ref is prev:
            pairs = ((prev, self.seen), (cur, _ZEROS))  # one rotation since last time
        else:  # first look, or more than one rotation: the whole window is new
            pairs = ((cur, _ZEROS),) if prev is None else ((prev, _ZEROS), (cur, _ZEROS))
        self.version += 1
        totals, nonzero = self.totals, self.nonzero
        added = 0
        total = 0.0
        for now, before in pairs:
            for i, d in _changes(now, before):
                totals[i] += d
                nonzero.add(i)
                added += d
                total += d * VALUES[i]
        self.ref = cur
        self.seen = array("Q", cur)
        self.count += added
        self.sum += total
        missing = hist.count - self.count
        if missing > 0:
            # values of windows never seen (the loop was blocked for minutes): counted where
            # most values are, so that _count and the +Inf bucket stay equal to the tree's count
            i = max(nonzero, key=totals.__getitem__) if nonzero else NBUCKETS - 1
            totals[i] += missing
            nonzero.add(i)
            self.count += missing
            self.sum += missing * VALUES[i]

    def snapshot(self) -> dict[str, float]:
        """The histogram's :meth:`~turnout.api.Histogram.snapshot`, computed again only
        when its window changed (call :meth:`update` first)."""
        cached = self.snap
        if cached is None or cached[0] != self.version:
            cached = self.snap = (self.version, self.hist.snapshot())
        return cached[1]

    def buckets(self, scale: float, index: list[int], n: int) -> list[int]:
        """Cumulative counts of the ``n`` Prometheus buckets (``index`` maps tree buckets)."""
        cached = self.cumulative
        if cached is not None and cached[0] == self.count and cached[1] == scale:
            return cached[2]
        per = [0] * n
        totals = self.totals
        for i in self.nonzero:
            per[index[i]] += totals[i]
        cum, out = 0, []
        for c in per:
            cum += c
            out.append(cum)
        self.cumulative = (self.count, scale, out)
        return out


class HistogramTotals:
    """:class:`_Totals` of every histogram of a tree, by key."""

    def __init__(self) -> None:
        self._by_key: dict[Key, _Totals] = {}

    def get(self, key: Key, hist: Histogram) -> _Totals:
        """The up-to-date totals of ``hist`` (a new series if the key's histogram changed)."""
        state = self._by_key.get(key)
        if state is None or state.hist is not hist:
            state = self._by_key[key] = _Totals(hist)
        state.update()
        return state

    def retain(self, keys: set[Key]) -> None:
        """Forget histograms that left the tree (pruned clients)."""
        for key in [k for k in self._by_key if k not in keys]:
            del self._by_key[key]

    def observe(self, metrics: MetricsTree) -> None:
        """Fold every histogram's window into its totals (call more often than a minute)."""
        seen = set()
        for key, metric in metrics.items():
            if isinstance(metric, Histogram):
                self.get(key, metric)
                seen.add(key)
        self.retain(seen)


def _kind(metric: object) -> Kind:
    if isinstance(metric, Counter | SumCounter):
        return "counter"
    if isinstance(metric, Gauge):
        return "gauge"
    return "stat"


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
#: the text format's TYPE of each prometheus-client type
_TEXT_TYPES = {"unknown": "untyped"}


def escape_label_value(value: str) -> str:
    """Label value escaping of the text format: backslash, double quote and newline."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@dataclass(slots=True)
class _Entry:
    """What the collector keeps per key of the tree between scrapes."""

    cls: type
    series: Series | None
    labels: dict[str, str]
    #: label dicts of the histogram buckets or the summary quantiles (built on first use)
    extra: list[dict[str, str]] | None = None
    #: the text format's ``name{labels}`` of each sample, by slot (built on first use)
    prefixes: dict[int, str] = field(default_factory=dict)

    def prefix(self, slot: int, name: str, labels: dict[str, str]) -> str:
        text = self.prefixes.get(slot)
        if text is None:
            # as prometheus-client's generate_latest writes it: labels sorted by name
            if labels:
                pairs = ",".join(
                    f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items())
                )
                text = f"{name}{{{pairs}}}"
            else:
                text = name
            self.prefixes[slot] = text
        return text


#: one sample: (sample name, labels, value, entry, slot of the entry's prefix cache)
_Sample = tuple[str, dict[str, str], float, _Entry, int]


@dataclass(slots=True)
class _Family:
    name: str
    type: str
    doc: str
    samples: list[_Sample]
    series: set[tuple[tuple[str, str], ...]]


class _Families:
    """Metric families by name; refuses a series that would make the exposition invalid
    (a name used with two types, a sample name of another family, a repeated label set)."""

    def __init__(self) -> None:
        self.by_name: dict[str, _Family] = {}
        self.owners: dict[str, str] = {}  # sample name → family name

    def family(self, series: Series, suffixes: Sequence[str]) -> _Family | None:
        name = series.name
        fam = self.by_name.get(name)
        if fam is not None:
            if fam.type != series.type:
                return None
        else:
            names = [name + s for s in suffixes]
            owners = self.owners
            if any(owners.get(n, name) != name for n in names) or owners.get(name, name) != name:
                return None
            if not _METRIC_NAME.match(name):
                return None
            fam = self.by_name[name] = _Family(name, series.type, series.doc, [], set())
            for n in (name, *names):
                owners[n] = name
        if series.labels in fam.series:
            return None
        fam.series.add(series.labels)
        return fam


class TreeCollector(Collector):
    """The families of a :class:`~turnout.api.MetricsTree`, named by ``naming``.

    :meth:`collect` yields them as prometheus-client ``Metric`` objects (for
    ``generate_latest`` and any registry); :meth:`render_text` writes the same exposition
    (byte for byte: the tests compare them) with each series' escaped ``name{labels}`` text
    kept between scrapes, which makes a scrape several times cheaper.

    :param buckets: upper bounds (seconds) of the Prometheus histograms of latencies.
    """

    def __init__(
        self, metrics: MetricsTree, naming: Naming, buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        self.metrics = metrics
        self.naming = naming
        self.linkerd = type(naming).__name__ == "LinkerdNaming"
        self.buckets = tuple(sorted(buckets))
        self.totals = HistogramTotals()
        self._anchors: frozenset[Key] = frozenset()
        self._cache: dict[Key, _Entry] = {}
        self._bucket_maps: dict[float, tuple[list[int], list[str]]] = {}
        self._heads: dict[tuple[str, str, str], str] = {}
        self._refused: set[Key] = set()

    def describe(self) -> list[Metric]:
        return []  # names are only known at scrape time

    # -- outputs ---------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        for fam in self.gather():
            metric = Metric(fam.name, fam.doc, fam.type)
            for name, labels, value, _, _ in fam.samples:
                metric.add_sample(name, labels, value)
            yield metric

    def render_text(self) -> bytes:
        """The text exposition format 0.0.4, as ``generate_latest`` writes it."""
        out: list[str] = []
        append = out.append
        heads = self._heads
        for fam in self.gather():
            head = heads.get((fam.name, fam.type, fam.doc))
            if head is None:
                head = heads[(fam.name, fam.type, fam.doc)] = self._head(fam)
            append(head)
            for name, labels, value, entry, slot in fam.samples:
                append(f"{entry.prefix(slot, name, labels)} {floatToGoString(value)}\n")
        if len(heads) > 4 * len(out) + 1000:
            heads.clear()
        return "".join(out).encode("utf-8")

    @staticmethod
    def _head(fam: _Family) -> str:
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        doc = fam.doc.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {name} {doc}\n# TYPE {name} {_TEXT_TYPES.get(fam.type, fam.type)}\n"

    # -- naming ----------------------------------------------------------------------------
    def _entry(self, key: Key, metric: object) -> _Entry:
        entry = self._cache.get(key)
        if entry is None or entry.cls is not type(metric):
            series = self.naming.series(key, split(key, self._anchors), _kind(metric))
            labels = dict(series.labels) if series is not None else {}
            entry = self._cache[key] = _Entry(type(metric), series, labels)
        return entry

    def _bucket_map(self, scale: float) -> tuple[list[int], list[str]]:
        """For each tree bucket, the index of the first Prometheus bucket it fits in."""
        cached = self._bucket_maps.get(scale)
        if cached is None:
            bounds = [*self.buckets, math.inf]
            index, j = [], 0
            for i in range(NBUCKETS):
                upper = BOUNDS[i] * scale if i < len(BOUNDS) else math.inf
                while upper > bounds[j] * (1 + 1e-9):
                    j += 1
                index.append(j)
            cached = self._bucket_maps[scale] = (index, [floatToGoString(b) for b in bounds])
        return cached

    # -- reading the tree ------------------------------------------------------------------
    def gather(self) -> list[_Family]:
        """Read the tree: one :class:`_Family` per metric name, with its samples."""
        items = list(self.metrics.items())
        anchors = anchors_of(k for k, _ in items)
        if anchors != self._anchors:
            self._anchors = anchors
            self._cache.clear()
        if len(self._cache) > 2 * len(items) + 1000:
            present = {k for k, _ in items}
            self._cache = {k: v for k, v in self._cache.items() if k in present}
        families = _Families()
        hist_keys: set[Key] = set()
        for key, metric in items:
            entry = self._entry(key, metric)
            series = entry.series
            if series is None:
                continue
            if isinstance(metric, Histogram):
                hist_keys.add(key)
                ok = self._add_stat(families, entry, series, self.totals.get(key, metric))
            elif isinstance(metric, Gauge):
                try:
                    value = float(metric.read())
                except Exception:  # a gauge of something that just went away
                    continue
                ok = self._add_simple(families, entry, series, value * series.scale)
            else:
                ok = self._add_simple(families, entry, series, metric.value * series.scale)
            if not ok and key not in self._refused:
                self._refused.add(key)
                name = series.name
                log.warning("metric %s not exported: its name %s clashes", "/".join(key), name)
        self.totals.retain(hist_keys)
        return list(families.by_name.values())

    def _add_simple(self, families: _Families, entry: _Entry, series: Series, value: float) -> bool:
        suffix = "_total" if series.type == "counter" else ""
        fam = families.family(series, (suffix,) if suffix else ())
        if fam is None:
            return False
        fam.samples.append((series.name + suffix, entry.labels, value, entry, 0))
        return True

    def _add_stat(
        self, families: _Families, entry: _Entry, series: Series, totals: _Totals
    ) -> bool:
        labels = entry.labels
        scale = series.scale
        name = series.name
        if series.type == "histogram":
            fam = families.family(series, ("_bucket", "_count", "_sum"))
            if fam is None:
                return False
            index, les = self._bucket_map(scale)
            if entry.extra is None:
                entry.extra = [{**labels, "le": le} for le in les]
            append = fam.samples.append
            bucket = name + "_bucket"
            counts = totals.buckets(scale, index, len(les))
            for slot, (le_labels, c) in enumerate(zip(entry.extra, counts, strict=True)):
                append((bucket, le_labels, c, entry, slot))
            n = len(les)
            append((name + "_count", labels, totals.count, entry, n))
            append((name + "_sum", labels, totals.sum * scale, entry, n + 1))
            return True
        # a summary: all-time _count/_sum, quantiles over the recent window (1-2 minutes)
        fam = families.family(series, ("_count", "_sum"))
        if fam is None:
            return False
        quantiles = LINKERD_QUANTILES if self.linkerd else PROM_QUANTILES
        if entry.extra is None:
            entry.extra = [{**labels, "quantile": q} for q, _ in quantiles]
        append = fam.samples.append
        snap = totals.snapshot()
        if len(snap) > 1:
            for slot, (q_labels, (_, stat)) in enumerate(zip(entry.extra, quantiles, strict=True)):
                append((name, q_labels, snap[stat] * scale, entry, slot))
        n = len(quantiles)
        append((name + "_count", labels, totals.count, entry, n))
        append((name + "_sum", labels, totals.sum * scale, entry, n + 1))
        if self.linkerd and len(snap) > 1:
            avg = Series(name + "_avg", series.labels, "gauge", scale, series.doc + " (average)")
            fam = families.family(avg, ())
            if fam is not None:
                fam.samples.append((avg.name, labels, snap["avg"] * scale, entry, n + 2))
        return True
