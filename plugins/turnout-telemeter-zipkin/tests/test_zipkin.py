"""io.l5d.zipkin: spans reach a collector double that checks Zipkin's v2 model; the caller's
context is continued; a dead collector never hurts requests."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from turnout.testing import http_request, wait_until
from turnout.tracing import Span
from turnout_telemeter_zipkin.telemeter import ZipkinConfig, ZipkinTelemeter, span_json
from turnout_telemeter_zipkin.testing import ZipkinCollector, span_problems

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def test_span_json_is_valid_zipkin_v2():
    span = Span(
        int(TRACE, 16),
        0xABC,
        0x123,
        "get",
        "CLIENT",
        1_700_000_000_000_000,
        1500,
        "edge",
        "::1",
        8080,
        {"http.status_code": "503"},
        error="status 503",
    )
    out = span_json(span)
    assert span_problems(out) == []
    assert out["traceId"] == TRACE and out["id"] == "0000000000000abc"
    assert out["parentId"] == "0000000000000123"
    assert out["remoteEndpoint"] == {"ipv6": "::1", "port": 8080}
    assert out["tags"] == {"http.status_code": "503", "error": "status 503"}
    short = span_json(Span(5, 6, None, "get", "SERVER", 1_700_000_000_000_000, 1, "x", shared=True))
    assert short["traceId"] == "0000000000000005" and short["shared"] is True
    assert "parentId" not in short and span_problems(short) == []


def test_the_collector_double_refuses_what_zipkin_would():
    assert span_problems({"traceId": "XYZ", "id": "1"})  # not hex, wrong lengths
    assert span_problems({"traceId": "0" * 16, "id": "1" * 16})  # all-zero trace id
    assert span_problems({"traceId": "1" * 16, "id": "1" * 16, "kind": "server"})
    assert span_problems({"traceId": "1" * 16, "id": "1" * 16, "timestamp": 1700000000})  # s
    assert span_problems({"traceId": "1" * 16, "id": "1" * 16, "tags": {"a": 1}})
    assert not span_problems({"traceId": "1" * 32, "id": "2" * 16})


def test_bounded_queue_drops_the_oldest():
    telemeter = ZipkinTelemeter(ZipkinConfig(max_queued_spans=3))
    for i in range(1, 6):
        telemeter.record(Span(1, i, None, "get", "SERVER", 1, 1, "x"))
    assert [s.span_id for s in telemeter.queue] == [3, 4, 5]
    assert telemeter._dropped.value == 2


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_server_and_client_spans_reach_the_collector(
    collector, traced_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = traced_proxy(collector.port)
    headers = {"Host": "web", "traceparent": f"00-{TRACE}-{SPAN}-01"}
    assert http_request(proxy.port, "GET", "/users?id=7", headers=headers).status == 200
    spans = collector.wait_spans(2)
    assert collector.errors == []
    server = next(s for s in spans if s["kind"] == "SERVER")
    client = next(s for s in spans if s["kind"] == "CLIENT")
    # the server span continues the caller's span (Zipkin's shared span); the client span is
    # its child, and the id the backend saw
    assert server["traceId"] == client["traceId"] == TRACE
    assert server["id"] == SPAN and server.get("shared") is True
    assert client["parentId"] == SPAN
    (req,) = backend.requests
    assert req.header("x-b3-spanid") == client["id"]
    assert client["remoteEndpoint"] == {"ipv4": "127.0.0.1", "port": backend.port}
    assert server["remoteEndpoint"]["ipv4"] == "127.0.0.1"
    assert server["localEndpoint"] == {"serviceName": "edge"}
    assert server["tags"]["http.path"] == "/users" and server["tags"]["http.status_code"] == "200"
    assert server["tags"]["l5d.service"] == "/svc/web"
    assert client["tags"]["l5d.client"] == "/#/io.l5d.fs/web"
    assert server["duration"] >= client["duration"] >= 1
    assert server["timestamp"] <= client["timestamp"]


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_failures_are_tagged(collector, traced_proxy, disco_dir):
    proxy = traced_proxy(collector.port)
    assert http_request(proxy.port, headers={"Host": "nowhere"}).status == 502
    (span,) = collector.wait_spans(1)
    assert span["kind"] == "SERVER" and span["tags"]["http.status_code"] == "502"
    assert span["tags"]["error"] == "no_route"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_dead_collector_costs_nothing_and_spans_arrive_when_it_is_back(
    traced_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    collector = ZipkinCollector()  # not started yet: nothing listens on its port
    proxy = traced_proxy(collector.port)
    for _ in range(5):
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    metrics = lambda: json.load(  # noqa: E731
        urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=5)
    )
    assert wait_until(lambda: metrics().get("telemetry/zipkin/send_failures", 0) >= 1, timeout=10)
    assert metrics()["telemetry/zipkin/queued"] == 10  # kept, not lost
    collector.start()
    try:
        spans = collector.wait_spans(10)
        assert collector.errors == []
        assert len({s["traceId"] for s in spans}) == 5
        assert wait_until(lambda: metrics()["telemetry/zipkin/spans_sent"] == 10, timeout=10)
    finally:
        collector.stop()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_sample_rate_zero_records_only_what_callers_sampled(
    collector, traced_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = traced_proxy(collector.port, sampleRate=0.0)
    for _ in range(5):
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    headers = {"Host": "web", "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"}
    assert http_request(proxy.port, headers=headers).status == 200
    collector.wait_spans(2)
    time.sleep(0.3)  # a few more flushes: nothing else arrives
    assert {s["traceId"] for s in collector.spans} == {TRACE} and len(collector.spans) == 2
    # not sampled here: the decision goes on with the trace id (as Finagle's does), so the
    # next proxy does not start recording in the middle of this request
    first = backend.requests[0]
    assert first.header("x-b3-sampled") == "0" and first.header("traceparent").endswith("-00")
    assert first.header("traceparent").split("-")[1] == first.header("x-b3-traceid").zfill(32)
    assert backend.requests[-1].header("x-b3-traceid") == TRACE
