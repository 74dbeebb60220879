"""Naming and label lifting of ``io.l5d.prometheus``: Prometheus conventions (default) and
Linkerd 1's names, checked on the text a scrape returns, parsed with prometheus-client's
own parsers (so the output is valid exposition format)."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from turnout.metrics import MetricsTree
from turnout_telemeter_prometheus.naming import anchors_of, split
from turnout_telemeter_prometheus.telemeter import PrometheusTelemeter

SERVER = ("rt", "http", "server", "127.0.0.1", "4140")
CLIENT = ("rt", "http", "client", "#", "io.l5d.fs", "foo")
INET_CLIENT = ("rt", "http", "client", "$", "inet", "127.1", "8888")
SERVICE = ("rt", "http", "service", "svc", "foo")


def scope_stats(m: MetricsTree, scope: tuple[str, ...], ok: int, ko: int) -> None:
    """What the routers create for a server, client or service scope."""
    success, failures = m.counter(*scope, "success"), m.counter(*scope, "failures")
    success.incr(ok)
    failures.incr(ko)
    m.sum_counter(*scope, "requests", parts=lambda: [success, failures])
    m.stat(*scope, "request_latency_ms")


@pytest.fixture
def tree() -> MetricsTree:
    m = MetricsTree()
    scope_stats(m, SERVER, 7, 1)
    scope_stats(m, CLIENT, 6, 1)
    scope_stats(m, INET_CLIENT, 1, 0)
    scope_stats(m, SERVICE, 7, 0)
    scope_stats(m, (*CLIENT, "service", "svc", "foo"), 6, 1)
    m.counter(*SERVER, "status", "200").incr(7)
    m.counter(*SERVER, "status", "502").incr(1)
    m.sum_counter(*SERVER, "status", "2XX", parts=lambda: [m.counter(*SERVER, "status", "200")])
    m.counter(*SERVER, "status", "error").incr(2)
    m.counter(*CLIENT, "failures", "com.twitter.finagle.ChannelClosedException").incr(1)
    m.counter(*CLIENT, "failures", "a.Outer", "b.Inner").incr(1)
    m.counter(*CLIENT, "exn", "java.net.ConnectException").incr(3)
    m.gauge(*CLIENT, "loadbalancer", "size").set(2)
    m.gauge(*CLIENT, "endpoint", "127.0.0.1:8888", "load", fn=lambda: 3)
    m.counter(*SERVICE, "retries", "total").incr(4)
    m.stat(*SERVICE, "retries", "per_request").add(1)
    m.gauge("process", "rss_bytes").set(50_000_000)
    m.gauge("process", "uptime_ms").set(1500)
    m.counter("namer", "#", "io.l5d.fs", "updates").incr(5)
    m.counter("rt", "http", "bindcache", "path", "misses").incr(2)
    return m


def scrape(m: MetricsTree, **options: object) -> dict[tuple[str, frozenset], float]:
    """Samples by (name, labels) after checking that the text parses."""
    text = PrometheusTelemeter(m, **options).render()[0].decode()  # type: ignore[arg-type]
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


# -- scopes ------------------------------------------------------------------------------------


def test_split_finds_ids_of_any_length_from_the_tree(tree):
    anchors = anchors_of(k for k, _ in tree.items())
    s = split((*CLIENT, "loadbalancer", "size"), anchors)
    assert (s.kind, s.client, s.rest) == (
        "client",
        ("#", "io.l5d.fs", "foo"),
        ("loadbalancer", "size"),
    )
    s = split((*INET_CLIENT, "requests"), anchors)
    assert s.client == ("$", "inet", "127.1", "8888")
    s = split((*CLIENT, "service", "svc", "foo", "requests"), anchors)
    assert (s.client, s.service, s.rest) == (
        ("#", "io.l5d.fs", "foo"),
        ("svc", "foo"),
        ("requests",),
    )
    s = split((*CLIENT, "endpoint", "127.0.0.1:8888", "load"), anchors)
    assert (s.endpoint, s.rest) == ("127.0.0.1:8888", ("load",))
    s = split((*SERVER, "status", "200"), anchors)
    assert (s.kind, s.server, s.rest) == ("server", ("127.0.0.1", "4140"), ("status", "200"))
    s = split(("rt", "http", "bindcache", "path", "misses"), anchors)
    assert (s.kind, s.router, s.rest) == ("router", "http", ("bindcache", "path", "misses"))
    assert split(("process", "rss_bytes"), anchors).kind == ""


def test_a_client_id_that_contains_service_or_metric_words():
    m = MetricsTree()
    weird = ("rt", "http", "client", "#", "io.l5d.fs", "service", "status")
    scope_stats(m, weird, 1, 0)
    m.gauge(*weird, "loadbalancer", "size").set(1)
    samples = scrape(m)
    client = "/#/io.l5d.fs/service/status"
    assert value(samples, "turnout_client_loadbalancer_size", router="http", client=client) == 1


def test_without_anchors_ids_end_at_the_first_metric_name():
    m = MetricsTree()
    m.gauge("rt", "http", "client", "#", "io.l5d.fs", "bar", "loadbalancer", "size").set(4)
    samples = scrape(m)
    client = "/#/io.l5d.fs/bar"
    assert value(samples, "turnout_client_loadbalancer_size", router="http", client=client) == 4


# -- Prometheus conventions (default) ------------------------------------------------------------


def test_prometheus_names_and_labels(tree):
    s = scrape(tree)
    server = {"router": "http", "server": "127.0.0.1:4140"}
    assert value(s, "turnout_server_requests_total", **server) == 8
    assert value(s, "turnout_server_success_total", **server) == 7
    assert value(s, "turnout_server_failures_total", **server) == 1
    client = {"router": "http", "client": "/#/io.l5d.fs/foo"}
    assert value(s, "turnout_client_requests_total", **client) == 7
    assert (
        value(s, "turnout_client_requests_total", router="http", client="/$/inet/127.1/8888") == 1
    )
    assert value(s, "turnout_client_loadbalancer_size", **client) == 2
    assert value(s, "turnout_client_endpoint_load", **client, endpoint="127.0.0.1:8888") == 3
    assert value(s, "turnout_client_service_requests_total", **client, service="/svc/foo") == 7
    service = {"router": "http", "service": "/svc/foo"}
    assert value(s, "turnout_service_requests_total", **service) == 7
    assert value(s, "turnout_service_retries_total", **service) == 4
    assert value(s, "turnout_router_bindcache_path_misses_total", router="http") == 2
    assert value(s, "turnout_process_rss_bytes") == 50_000_000
    assert value(s, "turnout_process_uptime_seconds") == 1.5
    assert value(s, "turnout_namer_io_l5d_fs_updates_total") == 5


def test_prometheus_status_codes_become_a_status_label(tree):
    s = scrape(tree)
    server = {"router": "http", "server": "127.0.0.1:4140"}
    assert value(s, "turnout_server_status_total", **server, status="200") == 7
    assert value(s, "turnout_server_status_total", **server, status="502") == 1
    assert value(s, "turnout_server_status_total", **server, status="error") == 2
    assert value(s, "turnout_server_status_class_total", **server, **{"class": "2XX"}) == 7


def test_prometheus_failures_by_exception_keep_failures_total_intact(tree):
    s = scrape(tree)
    client = {"router": "http", "client": "/#/io.l5d.fs/foo"}
    assert value(s, "turnout_client_failures_total", **client) == 1
    name = "turnout_client_failures_by_exception_total"
    exn = "com.twitter.finagle.ChannelClosedException"
    assert value(s, name, **client, exception=exn) == 1
    assert value(s, name, **client, exception="a.Outer:b.Inner") == 1
    exn = "java.net.ConnectException"
    assert value(s, "turnout_client_exceptions_total", **client, exception=exn) == 3


def test_prometheus_latency_histograms_in_seconds(tree):
    hist = tree.stat(*SERVER, "request_latency_ms")
    for ms in (0.2, 0.8, 3, 3, 40, 200, 90_000):
        hist.add(ms)
    s = scrape(tree)
    server = {"router": "http", "server": "127.0.0.1:4140"}
    name = "turnout_server_request_latency_seconds"
    buckets = {
        float(labels["le"]): v
        for (n, ls), v in s.items()
        if n == name + "_bucket" and (labels := dict(ls)).get("server") == "127.0.0.1:4140"
    }
    assert buckets[0.0005] == 1
    assert buckets[0.001] == 2
    assert buckets[0.005] == 4
    assert buckets[0.05] == 5
    assert buckets[0.25] == 6
    assert buckets[10.0] == 6
    assert buckets[math.inf] == 7
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert value(s, name + "_count", **server) == 7
    assert value(s, name + "_sum", **server) == pytest.approx(90.247, rel=0.05)


def test_custom_buckets_and_prefix(tree):
    tree.stat(*SERVER, "request_latency_ms").add(30)
    s = scrape(tree, buckets=[0.01, 0.1], prefix="edge_")
    name = "edge_turnout_server_request_latency_seconds_bucket"
    labels = {"router": "http", "server": "127.0.0.1:4140"}
    les = sorted(float(dict(ls)["le"]) for (n, ls), _ in s.items() if n == name)
    assert les == [0.01, 0.1, math.inf]
    assert value(s, name, **labels, le="0.01") == 0
    assert value(s, name, **labels, le="0.1") == 1
    assert ("edge_turnout_process_rss_bytes", frozenset()) in s


def test_other_stats_are_summaries(tree):
    s = scrape(tree)
    service = {"router": "http", "service": "/svc/foo"}
    name = "turnout_service_retries_per_request"
    assert value(s, name + "_count", **service) == 1
    assert value(s, name, **service, quantile="0.5") == pytest.approx(1, rel=0.05)


def test_histogram_totals_survive_window_rotations(tree):
    hist = tree.stat(*SERVER, "request_latency_ms")
    telemeter = PrometheusTelemeter(tree)
    name = "turnout_server_request_latency_seconds_count"
    server = {"router": "http", "server": "127.0.0.1:4140"}

    def count() -> float:
        text = telemeter.render()[0].decode()
        samples = {
            (x.name, frozenset(x.labels.items())): x.value
            for f in text_string_to_metric_families(text)
            for x in f.samples
        }
        return value(samples, name, **server)

    hist.add(1)
    assert count() == 1
    hist.add(2)
    tree.rotate()  # one rotation between scrapes
    hist.add(3)
    assert count() == 3
    hist.add(4)
    tree.rotate()
    tree.rotate()  # two: a window the scraper never saw (still counted)
    hist.add(5)
    assert count() == 5
    assert count() == 5  # a scrape without new values changes nothing
    telemeter.collector.totals.observe(tree)  # what run() does every 20 s
    tree.rotate()
    assert count() == 5


def test_a_pruned_and_recreated_metric_starts_a_new_series(tree):
    telemeter = PrometheusTelemeter(tree)
    tree.stat(*CLIENT, "request_latency_ms").add(1)
    telemeter.render()
    tree.prune(*CLIENT)
    scope_stats(tree, CLIENT, 1, 0)
    tree.stat(*CLIENT, "request_latency_ms").add(1)
    text = telemeter.render()[0].decode()
    assert (
        'turnout_client_request_latency_seconds_count{client="/#/io.l5d.fs/foo",router="http"} 1.0'
        in text
    )


# -- Linkerd 1 names ---------------------------------------------------------------------------


def test_linkerd_names_and_labels(tree):
    s = scrape(tree, naming="linkerd")
    assert value(s, "rt:client:requests", rt="http", client="#/io.l5d.fs/foo") == 7
    assert value(s, "rt:client:requests", rt="http", client="$/inet/127.1/8888") == 1
    assert value(s, "rt:server:requests", rt="http", server="127.0.0.1/4140") == 8
    assert value(s, "rt:service:requests", rt="http", service="svc/foo") == 7
    pair = {"rt": "http", "client": "#/io.l5d.fs/foo", "service": "svc/foo"}
    assert value(s, "rt:client:service:requests", **pair) == 7
    assert value(s, "rt:client:loadbalancer:size", rt="http", client="#/io.l5d.fs/foo") == 2
    assert value(s, "rt:server:status:200", rt="http", server="127.0.0.1/4140") == 7
    assert value(s, "rt:server:status:2XX", rt="http", server="127.0.0.1/4140") == 7
    assert value(s, "rt:bindcache:path:misses", rt="http") == 2
    assert value(s, "process:uptime_ms") == 1500
    assert value(s, "namer:_:io_l5d_fs:updates") == 5


def test_linkerd_exceptions(tree):
    s = scrape(tree, naming="linkerd")
    client = {"rt": "http", "client": "#/io.l5d.fs/foo"}
    assert value(s, "rt:client:failures", **client) == 1
    exn = "com.twitter.finagle.ChannelClosedException"
    assert value(s, "rt:client:failures", **client, exception=exn) == 1
    assert value(s, "rt:client:failures", **client, exception="a.Outer:b.Inner") == 1
    assert value(s, "rt:client:exceptions", **client, exception="java.net.ConnectException") == 3


def test_linkerd_stats(tree):
    hist = tree.stat(*CLIENT, "request_latency_ms")
    for ms in (1, 2, 3, 100):
        hist.add(ms)
    text = PrometheusTelemeter(tree, naming="linkerd").render()[0].decode()
    labels = 'client="#/io.l5d.fs/foo",rt="http"'
    assert f"rt:client:request_latency_ms_count{{{labels}}} 4.0" in text
    s = scrape(tree, naming="linkerd")
    client = {"rt": "http", "client": "#/io.l5d.fs/foo"}
    assert value(s, "rt:client:request_latency_ms_sum", **client) == pytest.approx(106, rel=0.05)
    assert value(s, "rt:client:request_latency_ms_avg", **client) == pytest.approx(26.5, rel=0.05)
    quantiles = {
        dict(ls)["quantile"]: v
        for (n, ls), v in s.items()
        if n == "rt:client:request_latency_ms" and dict(ls).get("client") == "#/io.l5d.fs/foo"
    }
    assert sorted(quantiles) == ["0", "0.5", "0.9", "0.95", "0.99", "0.999", "0.9999", "1"]
    assert quantiles["0"] == pytest.approx(1, rel=0.05)
    assert quantiles["0.5"] == pytest.approx(2, rel=0.05)
    assert quantiles["1"] == pytest.approx(100, rel=0.05)


def test_linkerd_stats_without_values_in_the_window_have_no_quantiles(tree):
    text = PrometheusTelemeter(tree, naming="linkerd").render()[0].decode()
    assert 'rt:client:request_latency_ms_count{client="#/io.l5d.fs/foo",rt="http"} 0.0' in text
    assert 'rt:client:request_latency_ms{client="#/io.l5d.fs/foo"' not in text


def test_linkerd_prefix():
    m = MetricsTree()
    scope_stats(m, CLIENT, 1, 0)
    s = scrape(m, naming="linkerd", prefix="linkerd_")
    assert value(s, "linkerd_rt:client:requests", rt="http", client="#/io.l5d.fs/foo") == 1


# -- escaping and format -------------------------------------------------------------------------


@pytest.mark.parametrize("naming", ["prometheus", "linkerd"])
def test_label_values_are_escaped(naming):
    m = MetricsTree()
    nasty = 'a"b\\c\nd'
    scope_stats(m, ("rt", "web", "service", "svc", nasty), 2, 0)
    text = PrometheusTelemeter(m, naming=naming).render()[0].decode()
    lead = "/" if naming == "prometheus" else ""
    assert f'service="{lead}svc/a\\"b\\\\c\\nd"' in text  # \" \\ \n, one line per sample
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == sum(len(f.samples) for f in text_string_to_metric_families(text))
    services = {
        x.labels["service"]
        for f in text_string_to_metric_families(text)
        for x in f.samples
        if "service" in x.labels
    }
    assert services == {("/" if naming == "prometheus" else "") + "svc/" + nasty}


@pytest.mark.parametrize("naming", ["prometheus", "linkerd"])
def test_scrapes_are_what_generate_latest_writes(tree, naming):
    """The cached renderer writes prometheus-client's own exposition, byte for byte."""
    for ms in (0.2, 3, 40, 90_000):
        tree.stat(*SERVER, "request_latency_ms").add(ms)
        tree.stat(*SERVICE, "retries", "per_request").add(ms)
    scope_stats(tree, ("rt", "web", "service", "svc", 'a"b\\c\nd'), 2, 0)
    tree.gauge("process", "big").set(12_345_678_901)
    tree.gauge("process", "small").set(1e-7)
    tree.gauge("process", "nan").set(float("nan"))
    tree.gauge("process", "x.y").set(1)
    tree.counter("process", "x_y").incr(1)  # a clash: dropped from both
    telemeter = PrometheusTelemeter(tree, naming=naming)
    for _ in range(2):  # the second time from the caches
        assert telemeter.render()[0] == generate_latest(telemeter.registry)
        tree.counter(*CLIENT, "success").incr(1)
        tree.stat(*CLIENT, "request_latency_ms").add(2)


def test_linkerd_names_whatever_the_accept_header(tree):
    body, content_type = PrometheusTelemeter(tree, naming="linkerd").render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b'rt:client:requests{client="#/io.l5d.fs/foo",rt="http"} 7.0' in body


def test_text_format_content_type(tree):
    _, content_type = PrometheusTelemeter(tree).render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


def test_a_name_clash_drops_one_metric_and_keeps_the_output_valid():
    m = MetricsTree()
    m.counter("process", "a.b").incr(1)
    m.gauge("process", "a_b").set(2)  # same sanitized name, another type
    m.gauge("process", "c", "count").set(3)
    m.stat("process", "c_ms")  # no clash: histogram turnout_process_c_seconds
    m.counter("process", "x").incr(1)
    m.gauge("process", "x_total").set(1)  # the counter's sample name
    s = scrape(m)
    assert value(s, "turnout_process_a_b_total") == 1
    assert ("turnout_process_a_b", frozenset()) not in s
    assert value(s, "turnout_process_x_total") == 1


def test_gauges_that_fail_are_skipped():
    m = MetricsTree()
    m.gauge("process", "broken", fn=lambda: 1 / 0)
    m.gauge("process", "fine").set(1)
    assert value(scrape(m), "turnout_process_fine") == 1
