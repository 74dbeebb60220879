"""The metrics tree: histogram snapshots (percentiles over the window, caching), flat and
tree forms, pruning."""

from __future__ import annotations

import pytest
from turnout.metrics import BOUNDS, Histogram, MetricsTree, bucket, bucket_value


def test_snapshot_percentiles_within_bucket_precision():
    h = Histogram()
    for v in range(1, 1001):  # 1..1000 ms
        h.add(float(v))
    s = h.snapshot()
    assert s["count"] == 1000
    for name, expected in (("p50", 500), ("p90", 900), ("p99", 990), ("max", 1000), ("min", 1)):
        assert s[name] == pytest.approx(expected, rel=0.05), name
    assert s["avg"] == pytest.approx(500.5, rel=0.05)


def test_snapshot_cache_follows_new_values_and_rotation():
    h = Histogram()
    h.add(10.0)
    first = h.snapshot()
    assert h.snapshot() == first
    h.add(1000.0)
    assert h.snapshot()["max"] == pytest.approx(1000, rel=0.05)  # not the cached one
    h.rotate()
    assert h.snapshot()["count"] == 2 and h.snapshot()["max"] == pytest.approx(1000, rel=0.05)
    h.rotate()  # both values left the window: only the all-time count remains
    assert h.snapshot() == {"count": 2}
    h.add(5.0)
    assert h.snapshot()["p50"] == pytest.approx(5, rel=0.05)
    snap = h.snapshot()
    snap["count"] = -1  # callers may modify what they get
    assert h.snapshot()["count"] == 3


def test_bucket_values():
    assert bucket_value(bucket(100.0)) == pytest.approx(100, rel=0.04)
    assert bucket_value(10**9) == bucket_value(len(BOUNDS))


def test_flat_tree_and_prune_stay_consistent():
    m = MetricsTree()
    m.counter("rt", "b", "requests").incr(2)
    m.gauge("rt", "a", "load", fn=lambda: 3)
    m.stat("rt", "a", "latency").add(1.0)
    flat = m.flat()
    assert list(flat)[:2] == ["rt/a/latency.count", "rt/a/latency.max"]  # sorted by path
    assert flat["rt/b/requests"] == 2 and flat["rt/a/load"] == 3
    m.counter("rt", "0", "new")  # added after a read: appears (the sorted cache is rebuilt)
    assert "rt/0/new" in m.flat()
    assert m.tree(("rt", "b")) == {"requests": {"counter": 2}}
    assert m.prune("rt", "a") == 2  # the gauge and the histogram
    assert "rt/a/load" not in m.flat() and "rt/0/new" in m.flat()
