"""Merging the metrics of ``workers: N`` (``MetricsTree.export_raw`` → ``MetricsTree.merged``):
counters added, histograms merged bucket by bucket (percentiles of all the values, never an
average of percentiles), gauges added or the highest where a sum means nothing."""

from __future__ import annotations

import json

from turnout.metrics import MetricsTree
from turnout.workers import resolve
from turnout.workers.admin import gauge_max


def worker(requests: int, latencies: list[float], connections: int, size: int) -> MetricsTree:
    tree = MetricsTree()
    tree.counter("rt", "http", "server", "requests").incr(requests)
    hist = tree.stat("rt", "http", "server", "request_latency_ms")
    for ms in latencies:
        hist.add(ms)
    tree.gauge("rt", "http", "server", "connections").set(connections)
    tree.gauge("rt", "http", "client", "#/io.l5d.fs/web", "loadbalancer", "size").set(size)
    return tree


def test_counters_add_gauges_add_or_take_the_highest_histograms_merge() -> None:
    a = worker(10, [1.0] * 99, connections=3, size=2)
    b = worker(5, [100.0], connections=4, size=2)
    a.rotate()  # (a's values now in the previous window: still merged)
    exports = [json.loads(json.dumps(t.export_raw())) for t in (a, b)]  # (through JSON)
    merged = MetricsTree.merged(exports, gauge_max).flat()
    assert merged["rt/http/server/requests"] == 15
    assert merged["rt/http/server/connections"] == 7
    assert merged["rt/http/client/#/io.l5d.fs/web/loadbalancer/size"] == 2
    assert merged["rt/http/server/request_latency_ms.count"] == 100
    # the p50 and p99 of the 100 values, not an average of each worker's percentiles
    assert (
        merged["rt/http/server/request_latency_ms.p50"]
        == a.flat()["rt/http/server/request_latency_ms.p50"]
    )
    assert merged["rt/http/server/request_latency_ms.p99"] < 50
    assert merged["rt/http/server/request_latency_ms.max"] >= 99
    # segments holding "/" stay one segment (the client's id)
    tree = MetricsTree.merged(exports, gauge_max).tree(("rt", "http", "client"))
    assert tree["#/io.l5d.fs/web"]["loadbalancer"]["size"]["gauge"] == 2


def test_retired_windows_count() -> None:
    a = worker(0, [5.0] * 3, 0, 0)
    a.rotate()
    a.rotate()  # (the values are retired: counted, no longer in the percentiles)
    merged = MetricsTree.merged([a.export_raw(), a.export_raw()], gauge_max).flat()
    assert merged["rt/http/server/request_latency_ms.count"] == 6
    assert "rt/http/server/request_latency_ms.p50" not in merged


def test_which_gauges_take_the_highest() -> None:
    assert gauge_max(("rt", "r", "client", "x", "loadbalancer", "size"))
    assert gauge_max(("rt", "r", "client", "x", "available"))
    assert gauge_max(("process", "uptime_ms"))
    assert not gauge_max(("rt", "r", "server", "127.0.0.1", "4140", "connections"))
    assert not gauge_max(("process", "rss_bytes"))


def test_auto_is_the_cpus_this_process_may_use() -> None:
    import os

    assert resolve("auto") == len(os.sched_getaffinity(0))
    assert resolve(3) == 3
