"""The line format: Linkerd's own telemeter tests (``InfluxDbTelemeterTest.scala``) where
turnout's tree corresponds, escaping per the line protocol reference, and the strict parser
the other tests rely on."""

from __future__ import annotations

import pytest
from turnout.api import MetricsTree
from turnout_telemeter_influxdb.lineprotocol import (
    escape_measurement,
    escape_tag,
    format_line,
    place_of,
    render,
)
from turnout_telemeter_influxdb.testing import LineProtocolError, parse_line, parse_lines

# -- Linkerd's tests, one by one ---------------------------------------------------------------


def test_counter():
    m = MetricsTree()
    counter = m.counter("foo", "bar", "bas")
    counter.incr()
    assert render(m) == "foo:bar,host=none bas=1\n"
    counter.incr()
    assert render(m) == "foo:bar,host=none bas=2\n"


def test_counters_with_no_scope():
    m = MetricsTree()
    m.counter("abc").incr()
    m.counter("def").incr(2)
    assert render(m) == "root,host=none abc=1,def=2\n"


def test_gauges():
    m = MetricsTree()
    v = [1.0]
    m.gauge("foo", "bar", "bas", fn=lambda: v[0])
    m.gauge("abc").set(1)
    assert render(m) == "foo:bar,host=none bas=1.0\nroot,host=none abc=1.0\n"
    v[0] = 2.0
    assert render(m) == "foo:bar,host=none bas=2.0\nroot,host=none abc=1.0\n"


def test_non_finite_gauges_are_left_out():
    m = MetricsTree()
    m.gauge("foo", "nan", fn=lambda: float("nan"))
    m.gauge("foo", "inf", fn=lambda: float("inf"))
    m.gauge("foo", "ok").set(3)
    assert render(m) == "foo,host=none ok=3.0\n"


def test_stat_fields_are_linkerds():
    m = MetricsTree()
    stat = m.stat("foo", "bar", "bas")
    assert render(m) == "foo:bar,host=none bas_count=0\n"
    stat.add(1.0)
    [point] = parse_lines(render(m))
    assert point.measurement == "foo:bar"
    assert sorted(point.fields) == [
        "bas_avg",
        "bas_count",
        "bas_max",
        "bas_min",
        "bas_p50",
        "bas_p90",
        "bas_p95",
        "bas_p99",
        "bas_p999",
        "bas_p9999",
        "bas_sum",
    ]
    assert point.fields["bas_count"] == 1
    # turnout's buckets hold ~4% relative error
    assert point.fields["bas_max"] == pytest.approx(1.0, rel=0.05)
    stat.add(2.0)
    [point] = parse_lines(render(m))
    assert point.fields["bas_count"] == 2
    assert point.fields["bas_max"] == pytest.approx(2.0, rel=0.05)
    assert point.fields["bas_min"] == pytest.approx(1.0, rel=0.05)
    assert point.fields["bas_avg"] == pytest.approx(1.5, rel=0.05)
    assert point.fields["bas_sum"] == pytest.approx(3.0, rel=0.05)


def test_path_stats_are_labelled():
    m = MetricsTree()
    m.counter("rt", "incoming", "service", "svc", "foo", "requests").incr()
    assert render(m) == "rt:service,host=none,rt=incoming,service=svc/foo requests=1\n"


def test_bound_stats_are_labelled():
    m = MetricsTree()
    m.counter("rt", "incoming", "client", "#", "bar", "requests").incr()
    assert render(m) == "rt:client,client=#/bar,host=none,rt=incoming requests=1\n"


def test_bound_stats_with_path_scope_are_labelled():
    m = MetricsTree()
    m.counter("rt", "incoming", "client", "#", "bar", "requests").incr()
    m.counter("rt", "incoming", "client", "#", "bar", "service", "svc", "foo", "requests").incr()
    assert render(m) == (
        "rt:client,client=#/bar,host=none,rt=incoming requests=1\n"
        "rt:client:service,client=#/bar,host=none,rt=incoming,service=svc/foo requests=1\n"
    )


def test_server_stats_are_labelled():
    m = MetricsTree()
    m.counter("rt", "incoming", "server", "127.0.0.1", "4141", "requests").incr()
    assert render(m) == "rt:server,host=none,rt=incoming,server=127.0.0.1/4141 requests=1\n"


# -- turnout's tree --------------------------------------------------------------------------


def test_deeper_scopes_keep_the_tags_and_the_host_comes_from_the_request():
    m = MetricsTree()
    client = ("rt", "http", "client", "$", "inet", "127.0.0.1", "8080")
    m.counter(*client, "requests").incr(3)
    m.counter(*client, "failures").incr(1)
    m.counter(*client, "failures", "ConnectionRefused").incr(1)
    m.gauge(*client, "loadbalancer", "size").set(1)
    m.counter(*client, "endpoint", "127.0.0.1:8080", "requests").incr(3)
    m.counter("rt", "http", "server", "127.0.0.1", "4140", "status", "200").incr(2)
    m.counter("rt", "http", "bindcache", "path", "misses").incr()
    out = render(m, "linkerd:9990")
    assert out == (
        "rt:bindcache:path,host=linkerd:9990,rt=http misses=1\n"
        "rt:client,client=$/inet/127.0.0.1/8080,host=linkerd:9990,rt=http failures=1,requests=3\n"
        "rt:client:endpoint,client=$/inet/127.0.0.1/8080,endpoint=127.0.0.1:8080,"
        "host=linkerd:9990,rt=http requests=3\n"
        "rt:client:failures,client=$/inet/127.0.0.1/8080,host=linkerd:9990,rt=http "
        "ConnectionRefused=1\n"
        "rt:client:loadbalancer,client=$/inet/127.0.0.1/8080,host=linkerd:9990,rt=http "
        "size=1.0\n"
        "rt:server:status,host=linkerd:9990,rt=http,server=127.0.0.1/4140 200=2\n"
    )
    parse_lines(out)


def test_an_empty_tree_is_an_empty_body():
    assert render(MetricsTree()) == ""


def test_place_of_a_service_id_with_many_segments():
    key = ("rt", "r", "service", "svc", "a", "b", "requests")
    place = place_of(key, frozenset({key[:-1]}))
    assert (place.measurement, place.tags, place.field) == (
        "rt:service",
        (("rt", "r"), ("service", "svc/a/b")),
        "requests",
    )


# -- escaping --------------------------------------------------------------------------------

NASTY = 'we b,x=y "q" back\\slash\ttab'


def test_escaping_round_trips_through_the_strict_parser():
    m = MetricsTree()
    m.counter("rt", NASTY, "service", "svc", NASTY, "requests").incr(4)
    m.counter("rt", NASTY, "client", "#", "io.l5d.fs", NASTY, "requests").incr(4)
    m.counter("rt", NASTY, "client", "#", "io.l5d.fs", NASTY, "failures", "a b=c,d").incr(1)
    m.counter("odd name", "x=y,z").incr(2)
    out = render(m, "host with space,and=equals")
    points = parse_lines(out)
    assert {p.measurement for p in points} == {
        "odd_name",
        "rt:client",
        "rt:client:failures",
        "rt:service",
    }
    for p in points:
        assert p.tags["host"] == "host with space,and=equals"
        assert p.timestamp is None
        assert p.tag_order == sorted(p.tag_order)
    by_name = {p.measurement: p for p in points}
    # control characters cannot be in line protocol: written as \t, which reads back as
    # a backslash and a t
    shown = NASTY.replace("\t", "\\t")
    assert by_name["rt:service"].tags == {
        "host": "host with space,and=equals",
        "rt": shown,
        "service": f"svc/{shown}",
    }
    assert by_name["rt:client"].tags["client"] == f"#/io.l5d.fs/{shown}"
    assert by_name["rt:client:failures"].fields == {"a b=c,d": 1.0}
    assert by_name["odd_name"].fields == {"x=y,z": 2.0}


def test_escape_functions():
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_tag("trailing\\") == "trailing\\\\"
    assert escape_tag("two\nlines") == "two\\nlines"
    line = format_line("m", [("t", "v"), ("empty", "")], {"s": 'say "hi" \\o/', "b": True})
    assert line == 'm,t=v s="say \\"hi\\" \\\\o/",b=true'
    assert parse_line(line).fields == {"s": 'say "hi" \\o/', "b": True}
    with pytest.raises(ValueError, match="non-finite"):
        format_line("m", [], {"x": float("nan")})


# -- the parser is strict (so that the other tests can fail) ----------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "m",  # no fields
        "m ",  # no fields
        "m,t=v",  # no fields
        "m f=",  # no value
        "m f=abc",  # not a number
        "m f=1.2.3",
        "m,t= f=1",  # empty tag value
        "m,=v f=1",  # empty tag key
        "m,t=a=b f=1",  # unescaped equals sign in a tag value
        "m,t=a,t=b f=1",  # repeated tag
        "m f=1,f=2",  # repeated field
        "m f=1 12x",  # bad timestamp
        'm f="open',  # unterminated string
        "m f=1 1 2",  # trailing text
        ",t=v f=1",  # empty measurement
        "_m f=1",  # reserved
        "m _f=1",  # reserved
    ],
)
def test_the_parser_rejects(line):
    with pytest.raises(LineProtocolError):
        parse_line(line)


def test_the_parser_accepts_the_reference_examples():
    p = parse_line(
        'my\\ meas\\,ure,tag\\ 1=v\\=1 f\\,1=1i,f2=-1.5e3,f3=t,f4="x\\"y" 1556813561098000000'
    )
    assert p.measurement == "my meas,ure"
    assert p.tags == {"tag 1": "v=1"}
    assert p.fields == {"f,1": 1, "f2": -1500.0, "f3": True, "f4": 'x"y'}
    assert p.timestamp == 1556813561098000000
    with pytest.raises(LineProtocolError, match="no newline"):
        parse_lines("m f=1")
