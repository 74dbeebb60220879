"""``io.l5d.statsd`` without a process: names, values, datagram packing, what one push
sends, and pushes to a real UDP socket (listening, then closed) from the event loop."""

from __future__ import annotations

import asyncio
import socket

import pytest
from turnout.metrics import MetricsTree
from turnout_telemeter_statsd.telemeter import (
    MAX_DATAGRAM,
    StatsdTelemeter,
    datagrams,
    metric_name,
    number,
)

CLIENT = ("rt", "http", "client", "#", "io.l5d.fs", "web")


def test_names_are_linkerds():
    assert (
        metric_name("linkerd", (*CLIENT, "requests"))
        == "linkerd.rt.http.client._.io_l5d_fs.web.requests"
    )
    assert (
        metric_name("linkerd", ("rt", "http", "server", "127.0.0.1", "4140", "status", "200"))
        == "linkerd.rt.http.server.127_0_0_1.4140.status.200"
    )
    assert metric_name("", ("process", "rss_bytes")) == "process.rss_bytes"
    # Linkerd's own test case: empty segments vanish, every odd character becomes _
    weird = ("foo", "$", "", "bar/baz.stuff#word?who//what^when*where\\why", "#/^/")
    assert metric_name("", weird) == "foo._.bar.baz_stuff_word_who.what_when_where_why._._"
    for bad in (":", "|", "@", "\n", " "):
        assert bad not in metric_name("a b:c", (f"x{bad}y",))


def test_numbers():
    assert number(5) == "5"
    assert number(5.0) == "5"
    assert number(0.25) == "0.25"
    assert number(1 / 3) == "0.333333"
    assert number(52_064_256.0) == "52064256"
    assert number(-2) == "-2"
    assert number(1e-9) == "0"


def test_datagrams_stay_under_the_limit_and_keep_every_line_in_order():
    lines = [f"linkerd.rt.http.client.c{i}.requests:{i}|c" for i in range(500)]
    payloads = list(datagrams(lines))
    assert len(payloads) > 1
    assert all(len(p) <= MAX_DATAGRAM for p in payloads)
    assert [line for p in payloads for line in p.decode().split("\n")] == lines
    assert list(datagrams(["x" * (MAX_DATAGRAM + 1), "ok:1|c"])) == [b"ok:1|c"]
    assert list(datagrams(["a" * 700, "b" * 731])) == [b"a" * 700 + b"\n" + b"b" * 731]
    assert len(list(datagrams(["a" * 700, "b" * 732]))) == 2


def test_counters_are_sent_as_deltas():
    m = MetricsTree()
    c = m.counter(*CLIENT, "success")
    t = StatsdTelemeter(m, prefix="linkerd")
    c.incr(3)
    assert t.lines() == ["linkerd.rt.http.client._.io_l5d_fs.web.success:3|c"]
    assert t.lines() == []  # unchanged: nothing sent
    c.incr(2)
    assert t.lines() == ["linkerd.rt.http.client._.io_l5d_fs.web.success:2|c"]
    m.prune(*CLIENT)
    m.counter(*CLIENT, "success").incr(1)  # a new counter under the same name
    assert t.lines() == ["linkerd.rt.http.client._.io_l5d_fs.web.success:1|c"]


def test_gauges_are_sent_every_time():
    m = MetricsTree()
    m.gauge("process", "rss_bytes").set(1000)
    m.gauge("process", "lag").set(-2.5)
    m.gauge("process", "broken", fn=lambda: 1 / 0)
    m.gauge("process", "nan").set(float("nan"))
    t = StatsdTelemeter(m, prefix="")
    expected = ["process.rss_bytes:1000|g", "process.lag:0|g", "process.lag:-2.5|g"]
    assert t.lines() == expected
    assert t.lines() == expected


def test_histograms_send_the_values_of_the_interval():
    m = MetricsTree()
    h = m.stat(*CLIENT, "request_latency_ms")
    t = StatsdTelemeter(m, prefix="l5d")
    assert t.lines() == []
    for v in (1, 2, 3, 4, 100):
        h.add(v)
    lines = dict(line.split(":", 1) for line in t.lines())
    name = "l5d.rt.http.client._.io_l5d_fs.web.request_latency_ms"
    assert lines[f"{name}.count"] == "5|c"
    stats = {
        k.rsplit(".", 1)[1]: float(v.split("|")[0]) for k, v in lines.items() if v.endswith("|g")
    }
    assert stats["min"] == pytest.approx(1, rel=0.05)
    assert stats["max"] == pytest.approx(100, rel=0.05)
    assert stats["avg"] == pytest.approx(22, rel=0.05)
    assert stats["p50"] == pytest.approx(3, rel=0.05)
    assert stats["p99"] == pytest.approx(100, rel=0.05)
    assert set(stats) == {"min", "max", "avg", "p50", "p90", "p95", "p99", "p9990"}
    assert t.lines() == []  # no new values: nothing
    h.add(7)
    m.rotate()  # a new window between two pushes
    h.add(9)
    lines = dict(line.split(":", 1) for line in t.lines())
    assert lines[f"{name}.count"] == "2|c"
    assert float(lines[f"{name}.min"].split("|")[0]) == pytest.approx(7, rel=0.05)


async def _run_for(telemeter: StatsdTelemeter, seconds: float) -> None:
    task = asyncio.create_task(telemeter.run())
    await asyncio.sleep(seconds)
    assert not task.done(), task.exception() if task.done() else None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await telemeter.close()


def test_pushes_reach_a_udp_listener(statsd):
    m = MetricsTree()
    c = m.counter("rt", "http", "server", "127.0.0.1", "4140", "requests")
    m.gauge("process", "threads").set(3)
    t = StatsdTelemeter(m, port=statsd.port, interval=0.02)

    async def scenario() -> None:
        task = asyncio.create_task(t.run())
        c.incr(4)
        await asyncio.sleep(0.1)
        c.incr(6)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        c.incr(1)  # sent by close()
        await t.close()

    asyncio.run(scenario())
    name = "linkerd.rt.http.server.127_0_0_1.4140.requests"
    assert statsd.wait_for(lambda: statsd.total(name) == 11)
    assert statsd.last("linkerd.process.threads") == 3
    assert t.sent >= 2


def test_big_pushes_are_split_into_datagrams(statsd):
    m = MetricsTree()
    for i in range(300):
        m.counter(
            "rt", "http", "client", "$", "inet", "127.0.0.1", str(10000 + i), "requests"
        ).incr(i + 1)
    t = StatsdTelemeter(m, port=statsd.port, interval=0.02)
    asyncio.run(_run_for(t, 0.1))
    assert statsd.wait_for(lambda: len(statsd.lines()) >= 300)
    assert len(statsd.datagrams) > 1
    assert all(len(d) <= MAX_DATAGRAM for d in statsd.datagrams)
    assert statsd.total("linkerd.rt.http.client._.inet.127_0_0_1.10299.requests") == 300


def test_a_closed_port_never_raises():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: ICMP port unreachable
    m = MetricsTree()
    c = m.counter("process", "x")
    t = StatsdTelemeter(m, port=port, interval=0.01)

    async def scenario() -> None:
        task = asyncio.create_task(t.run())
        for _ in range(10):
            c.incr()
            await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await t.close()

    asyncio.run(scenario())
    assert t.sent >= 2


def test_flush_before_connecting_drops_quietly():
    m = MetricsTree()
    m.counter("process", "x").incr()
    t = StatsdTelemeter(m)
    assert t.flush() == 0
    assert t.dropped == 1
