"""io.l5d.opentelemetry: spans reach a collector double that checks the OTLP/HTTP JSON
encoding; the caller's context is continued; the collector's answers (partial success,
throttling, rejections) are handled as OTLP says; a slow or dead collector never hurts
requests."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from turnout.config import TelemeterConfig
from turnout.config.schema import Validator
from turnout.config.source import read_text
from turnout.plugin_manager import load_plugins
from turnout.testing import free_port, http_request, http_response, wait_until
from turnout.tracing import Span
from turnout_telemeter_opentelemetry import plugin
from turnout_telemeter_opentelemetry.telemeter import (
    OpenTelemetryConfig,
    OpenTelemetryTelemeter,
    partial_success,
    retry_after_seconds,
    server_span_id,
    span_json,
)
from turnout_telemeter_opentelemetry.testing import (
    OtlpCollector,
    attribute_dict,
    request_problems,
    span_problems,
)

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"
T0 = 1_700_000_000_000_000  # µs


def _body(telemeter: OpenTelemetryTelemeter, spans: list[Span]) -> dict[str, Any]:
    body, sent, rest = asyncio.run(telemeter._encode(spans))
    assert sent == spans and rest == []
    return json.loads(body)


def _metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=5) as r:
        return json.load(r)


def _metric(proxy: Any, name: str) -> Any:
    return _metrics(proxy).get(f"telemetry/opentelemetry/{name}", 0)


def _kinds(spans: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    server = next(s for s in spans if s["kind"] == 2)
    client = next(s for s in spans if s["kind"] == 3)
    return server, client


# -- the encoding -------------------------------------------------------------------------------


def test_spans_are_valid_otlp_json():
    telemeter = OpenTelemetryTelemeter(
        OpenTelemetryConfig(service_name="mesh", resource_attributes={"team": "edge"})
    )
    server = Span(
        int(TRACE, 16),
        int(SPAN, 16),
        None,
        "get",
        "SERVER",
        T0,
        2500,
        "edge",
        "10.0.0.7",
        51000,
        {
            "http.method": "GET",
            "http.path": "/users",
            "http.status_code": "503",
            "l5d.router": "edge",
            "l5d.service": "/svc/web",
            "l5d.retries": "1",
        },
        shared=True,
        error="status 503",
    )
    client = Span(
        int(TRACE, 16),
        0xABC,
        int(SPAN, 16),
        "get",
        "CLIENT",
        T0 + 100,
        1500,
        "edge",
        "127.0.0.1",
        8080,
        {"http.method": "GET", "http.status_code": "503", "l5d.client": "/#/io.l5d.fs/web"},
        error="status 503",
    )
    request = _body(telemeter, [client, server])
    assert request_problems(request) == []
    (rs,) = request["resourceSpans"]
    assert attribute_dict(rs["resource"]["attributes"]) == {"service.name": "mesh", "team": "edge"}
    (ss,) = rs["scopeSpans"]
    assert ss["scope"]["name"] == "turnout" and ss["scope"]["version"]
    c, s = ss["spans"]
    # the server span continues the caller's span: its child, with an id of its own, which
    # is the parent the client span names
    assert s["traceId"] == c["traceId"] == TRACE
    assert s["parentSpanId"] == SPAN and s["spanId"] != SPAN
    assert s["spanId"] == f"{server_span_id(int(TRACE, 16), int(SPAN, 16)):016x}"
    assert c["parentSpanId"] == s["spanId"] and c["spanId"] == "0000000000000abc"
    assert (s["kind"], c["kind"]) == (2, 3)
    assert (s["flags"], c["flags"]) == (0x301, 0x101)  # sampled; parent remote / local
    assert s["name"] == c["name"] == "GET"
    assert s["startTimeUnixNano"] == "1700000000000000000"
    assert s["endTimeUnixNano"] == "1700000000002500000"
    assert c["startTimeUnixNano"] == "1700000000000100000"
    assert s["status"] == {"code": 2, "message": "status 503"}
    assert attribute_dict(s["attributes"]) == {
        "http.request.method": "GET",
        "url.path": "/users",
        "http.response.status_code": 503,
        "network.peer.address": "10.0.0.7",
        "network.peer.port": 51000,
        "l5d.router": "edge",
        "l5d.service": "/svc/web",
        "l5d.retries": 1,
        "error.type": "503",
    }
    assert attribute_dict(c["attributes"]) == {
        "http.request.method": "GET",
        "http.response.status_code": 503,
        "server.address": "127.0.0.1",
        "server.port": 8080,
        "l5d.router": "edge",
        "l5d.client": "/#/io.l5d.fs/web",
        "error.type": "503",
    }
    assert {"key": "server.port", "value": {"intValue": "8080"}} in c["attributes"]
    # a new trace (not shared): a root server span; an unknown method; 64-bit trace ids
    root = span_json(Span(5, 6, None, "brew", "SERVER", T0, 1, "x", tags={"http.method": "BREW"}))
    assert "parentSpanId" not in root and root["flags"] == 0x101
    assert root["traceId"] == "00000000000000000000000000000005" and root["name"] == "HTTP"
    assert attribute_dict(root["attributes"])["http.request.method"] == "_OTHER"
    assert attribute_dict(root["attributes"])["http.request.method_original"] == "BREW"
    assert "status" not in root and span_problems(root) == []


def test_the_collector_double_refuses_what_otlp_forbids():
    good = {
        "traceId": "5B8EFFF798038103D269B633813FC60C",  # hex is case-insensitive
        "spanId": "eee19b7ec3c1b174",
        "name": "GET",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000000000001",
        "attributes": [{"key": "a", "value": {"intValue": "1"}}],
        "status": {"code": 2, "message": "x"},
    }
    assert span_problems(good) == []

    def bad(**changes: Any) -> list[str]:
        span = copy.deepcopy(good)
        for key, value in changes.items():
            if value is None:
                del span[key]
            else:
                span[key] = value
        return span_problems(span)

    assert bad(traceId="W47/95gDgQPSabYzgT/GDA==")  # base64, as plain protobuf JSON has it
    assert bad(traceId="0" * 32)  # all zero
    assert bad(spanId="eee19b7ec3c1b1")  # too short
    assert bad(parentSpanId="0" * 16)
    assert bad(kind="SPAN_KIND_SERVER")  # enum names are not allowed
    assert bad(kind=0)
    assert bad(startTimeUnixNano=1700000000000000000)  # an int64 is a string
    assert bad(startTimeUnixNano="1700000000000000")  # microseconds
    assert bad(endTimeUnixNano="1699999999999999999")  # ends before it starts
    assert bad(start_time_unix_nano="1700000000000000000")  # snake_case
    assert "lowerCamelCase" in bad(trace_id=TRACE)[0]
    assert bad(name="")
    assert bad(attributes=[{"key": "a", "value": "x"}])  # not an AnyValue
    assert bad(attributes=[{"key": "a", "value": {"intValue": 1}}])  # int64 as a number
    assert bad(attributes=[{"key": "a", "value": {"stringValue": "x", "boolValue": True}}])
    assert bad(attributes=[{"key": "a", "value": {"boolValue": True}}] * 2)  # duplicate key
    assert bad(status={"code": "STATUS_CODE_ERROR"})
    assert bad(flags=1 << 12)
    assert request_problems({"resourceSpans": []})  # an empty envelope
    assert request_problems({"resource_spans": []})
    assert not request_problems({"resourceSpans": [{"scopeSpans": [{"spans": [good]}]}]})


def test_bounded_queue_drops_the_oldest():
    telemeter = OpenTelemetryTelemeter(OpenTelemetryConfig(max_queued_spans=3))
    for i in range(1, 6):
        telemeter.record(Span(1, i, None, "get", "SERVER", T0, 1, "x"))
    assert [s.span_id for s in telemeter.queue] == [3, 4, 5]
    assert telemeter._dropped.value == 2
    telemeter._requeue([Span(1, 9, None, "get", "SERVER", T0, 1, "x")])  # no room: dropped
    assert len(telemeter.queue) == 3 and telemeter._dropped.value == 3


def test_collector_answers_are_read_as_otlp_says():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    now = 1_700_000_000.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:30 GMT", now=now) == 10.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:10 GMT", now=now) == 0.0
    ok = b'{"partialSuccess":{"rejectedSpans":"2","errorMessage":"too old"}}'
    assert partial_success(ok, "application/json", 5) == (2, "too old")
    assert partial_success(b'{"partialSuccess":{"rejectedSpans":3}}', "application/json", 5) == (
        3,
        "",
    )
    assert (
        partial_success(b'{"partialSuccess":{"rejectedSpans":"9"}}', "application/json", 5)[0] == 5
    )
    assert partial_success(b"{}", "application/json", 5) == (0, "")
    assert partial_success(b"", "application/json", 5) == (0, "")
    assert partial_success(b"\x0a\x00", "application/x-protobuf", 5) == (0, "")


def test_a_batch_is_split_before_the_body_grows_too_large(monkeypatch):
    from turnout_telemeter_opentelemetry import telemeter as module

    monkeypatch.setattr(module, "MAX_BODY_BYTES", 3000)
    telemeter = OpenTelemetryTelemeter(OpenTelemetryConfig())
    spans = [Span(7, i, None, "get", "SERVER", T0, 1, "x") for i in range(1, 101)]
    body, sent, rest = asyncio.run(telemeter._encode(spans))
    assert 0 < len(sent) < 100 and len(body) <= 3000
    assert sent + rest == spans
    request = json.loads(body)
    assert request_problems(request) == []
    assert len(request["resourceSpans"][0]["scopeSpans"][0]["spans"]) == len(sent)


def _read(yaml_text: str) -> tuple[Any, list[str]]:
    registry = load_plugins({}, autoload=False, extra=[plugin]).registry
    source, problems = read_text(yaml_text, "t.yaml")
    validator = Validator(source, registry)
    config = validator.build(TelemeterConfig, source.data)
    return config, [str(p) for p in problems + validator.problems]


def test_config_is_checked_and_headers_are_redacted():
    config, problems = _read(
        "kind: io.l5d.opentelemetry\nendpoint: https://otlp.example.com:443/otlp\n"
        "headers: {Authorization: Bearer s3cret}\n"
    )
    assert problems == []
    assert isinstance(config, OpenTelemetryConfig)
    shown = config.to_dict(redact=True)
    assert shown["headers"] == "<redacted>" and "s3cret" not in json.dumps(shown)
    assert OpenTelemetryTelemeter(config).url == "https://otlp.example.com:443/otlp/v1/traces"
    for endpoint, expected in [
        ("otel:4318", "http:// or https://"),
        ("ftp://otel:4318", "http:// or https://"),
        ("http://", "no host"),
        ("http://otel:99999", "Port"),
        ("http://otel:4318/v1/traces", "/v1/traces is appended"),
        ("http://user:pw@otel:4318", "credentials"),
        ("http://otel:4318?x=1", "query"),
        ("http://otel :4318", "base URL"),
    ]:
        _, problems = _read(f"kind: io.l5d.opentelemetry\nendpoint: '{endpoint}'\n")
        assert len(problems) == 1 and "endpoint" in problems[0], (endpoint, problems)
        assert expected in problems[0], (endpoint, problems)
        assert "pw" not in problems[0]
    _, problems = _read(
        "kind: io.l5d.opentelemetry\nheaders: {'bad name': x, Content-Type: text/plain, "
        'X-Key: "caf\\xe9\\n"}\nresourceAttributes: {service.name: x}\n'
    )
    assert len(problems) == 4, problems
    assert not any("caf" in p for p in problems)  # header values are never shown


def test_turnout_check_reports_a_bad_endpoint(tmp_path):
    path = tmp_path / "l5d.yaml"
    path.write_text(
        "admin: {port: 9990}\n"
        "telemetry:\n"
        "- kind: io.l5d.opentelemetry\n"
        "  endpoint: otel-collector:4318\n"
        "routers:\n"
        "- protocol: http\n"
        "  dtab: /svc => /#/io.l5d.fs;\n"
        "  servers: [{port: 4140}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "l5d.yaml:4:13: telemetry[0].endpoint: expected an http:// or https:// URL" in out, out


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_server_and_client_spans_reach_the_collector(
    otlp_collector, otel_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = otel_proxy(
        otlp_collector.endpoint,
        headers={"Authorization": "Bearer s3cret"},
        serviceName="mesh-edge",
        resourceAttributes={"deployment.environment.name": "test"},
    )
    headers = {"Host": "web", "traceparent": f"00-{TRACE}-{SPAN}-01"}
    assert http_request(proxy.port, "GET", "/users?id=7", headers=headers).status == 200
    spans = otlp_collector.wait_spans(2)
    assert otlp_collector.errors == []
    server, client = _kinds(spans)
    # the server span continues the caller's span; the client span is its child, and the
    # parent the backend saw in traceparent
    assert server["traceId"] == client["traceId"] == TRACE
    assert server["parentSpanId"] == SPAN and server["spanId"] != SPAN
    assert client["parentSpanId"] == server["spanId"]
    (req,) = backend.requests
    version, trace_id, parent_id, flags = req.header("traceparent").split("-")
    assert (version, trace_id, parent_id, flags) == ("00", TRACE, client["spanId"], "01")
    sattrs, cattrs = attribute_dict(server["attributes"]), attribute_dict(client["attributes"])
    assert sattrs["http.request.method"] == "GET" and sattrs["url.path"] == "/users"
    assert sattrs["http.response.status_code"] == 200
    assert sattrs["network.peer.address"] == "127.0.0.1"
    assert sattrs["l5d.router"] == "edge" and sattrs["l5d.service"] == "/svc/web"
    assert cattrs["server.address"] == "127.0.0.1" and cattrs["server.port"] == backend.port
    assert cattrs["l5d.client"] == "/#/io.l5d.fs/web"
    assert "status" not in server and "status" not in client
    assert int(server["startTimeUnixNano"]) <= int(client["startTimeUnixNano"])
    assert int(client["endTimeUnixNano"]) <= int(server["endTimeUnixNano"])
    index = otlp_collector.spans.index(server)
    assert otlp_collector.resources[index] == {
        "service.name": "mesh-edge",
        "deployment.environment.name": "test",
    }
    assert otlp_collector.scopes[index]["name"] == "turnout"
    export = otlp_collector.exports[0]
    assert export.headers["Authorization"] == "Bearer s3cret"
    assert export.headers["Content-Type"] == "application/json"
    assert export.headers["User-Agent"].startswith("turnout-telemeter-opentelemetry/")
    with urllib.request.urlopen(proxy.admin_url + "/config.json", timeout=5) as r:
        shown = r.read().decode()
    assert "s3cret" not in shown and '"headers": "<redacted>"' in shown.replace('":"', '": "')
    assert wait_until(lambda: _metric(proxy, "spans_sent") == 2, timeout=10)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_failures_have_an_error_status(otlp_collector, otel_proxy, disco_dir, recording_backend):
    backend = recording_backend(http_response(500, b"boom"), name="web")
    disco_dir.write("web", backend)
    dead = free_port()  # nothing listens there: every attempt fails to connect
    disco_dir.write("dead", f"127.0.0.1 {dead}")
    proxy = otel_proxy(otlp_collector.endpoint)
    assert http_request(proxy.port, headers={"Host": "web"}).status == 500
    server, client = _kinds(otlp_collector.wait_spans(2))
    assert client["status"] == {"code": 2, "message": "status 500"}
    assert attribute_dict(client["attributes"])["error.type"] == "500"
    assert server["status"]["code"] == 2
    assert attribute_dict(server["attributes"])["http.response.status_code"] == 500

    otlp_collector.spans.clear()
    assert http_request(proxy.port, headers={"Host": "nowhere"}).status == 502
    (span,) = otlp_collector.wait_spans(1)
    assert span["kind"] == 2 and span["status"] == {"code": 2, "message": "no_route"}
    assert attribute_dict(span["attributes"])["error.type"] == "no_route"

    otlp_collector.spans.clear()
    assert http_request(proxy.port, headers={"Host": "dead"}).status >= 500
    assert wait_until(lambda: any(s["kind"] == 2 for s in otlp_collector.spans), timeout=10)
    server = next(s for s in otlp_collector.spans if s["kind"] == 2)
    attempts = [s for s in otlp_collector.spans if s["kind"] == 3]
    assert server["status"]["code"] == 2
    assert attempts  # each failed attempt (requeued) is a client span with an error
    for attempt in attempts:
        assert attempt["status"] == {"code": 2, "message": "connect"}
        assert attempt["parentSpanId"] == server["spanId"]
        assert attribute_dict(attempt["attributes"])["server.port"] == dead
    resends = sorted(
        attribute_dict(a["attributes"]).get("http.request.resend_count", 0) for a in attempts
    )
    assert resends == list(range(len(attempts)))
    assert otlp_collector.errors == []


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_503_with_retry_after_is_retried_after_the_wait(
    otlp_collector, otel_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    otlp_collector.fail(503, retry_after="1")
    proxy = otel_proxy(otlp_collector.endpoint)
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    spans = otlp_collector.wait_spans(2)
    assert len(spans) == 2 and otlp_collector.errors == []
    first, second = otlp_collector.exports[:2]
    assert first.status == 503 and second.status == 200
    assert first.spans == second.spans == 2  # the same batch, sent again
    assert second.at - first.at >= 0.9  # Retry-After: 1
    assert wait_until(lambda: _metric(proxy, "spans_sent") == 2, timeout=10)
    metrics = _metrics(proxy)
    assert metrics["telemetry/opentelemetry/send_retries"] == 1
    assert metrics["telemetry/opentelemetry/send_failures"] == 1
    assert metrics["telemetry/opentelemetry/spans_rejected"] == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_partial_success_and_bad_requests_are_counted_never_resent(
    otlp_collector, otel_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    otlp_collector.reject_spans = 1
    proxy = otel_proxy(otlp_collector.endpoint)
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    otlp_collector.wait_spans(1)
    assert wait_until(lambda: _metric(proxy, "spans_rejected") == 1, timeout=10)
    assert _metric(proxy, "spans_sent") == 1
    otlp_collector.reject_spans = 0
    otlp_collector.fail(400)  # bad data: never retried
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert wait_until(lambda: _metric(proxy, "spans_rejected") == 3, timeout=10)
    otlp_collector.fail(401)  # credentials: never retried either
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert wait_until(lambda: _metric(proxy, "spans_rejected") == 5, timeout=10)
    time.sleep(0.5)  # several flushes: nothing is sent again
    assert [e.status for e in otlp_collector.exports] == [200, 400, 401]
    assert len(otlp_collector.spans) == 1 and otlp_collector.errors == []
    metrics = _metrics(proxy)
    assert metrics["telemetry/opentelemetry/send_retries"] == 0
    assert metrics["telemetry/opentelemetry/queued"] == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_dead_collector_keeps_a_bounded_queue_delivered_when_it_is_back(
    otel_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    collector = OtlpCollector()  # not started yet: nothing listens on its port
    proxy = otel_proxy(collector.endpoint, maxQueuedSpans=6)
    for _ in range(5):
        started = time.monotonic()
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
        assert time.monotonic() - started < 5.0  # not held up by the 10 s export timeout
    assert wait_until(lambda: _metric(proxy, "send_failures") >= 1, timeout=10)
    assert wait_until(lambda: _metric(proxy, "queued") == 6, timeout=10)  # kept, bounded
    assert _metric(proxy, "spans_dropped") == 4  # the oldest went
    collector.start()
    try:
        spans = collector.wait_spans(6, timeout=30)  # after the backoff
        assert collector.errors == [] and len(spans) == 6
        assert wait_until(lambda: _metric(proxy, "spans_sent") == 6, timeout=10)
        assert _metric(proxy, "queued") == 0
        # the newest spans were kept: the last three requests, whole
        assert len({s["traceId"] for s in spans}) == 3
    finally:
        collector.stop()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_slow_collector_does_not_slow_requests(
    otlp_collector, otel_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    otlp_collector.delay = 2.0  # every export takes 2 s
    proxy = otel_proxy(otlp_collector.endpoint)
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
    assert slowest < 1.0
    otlp_collector.wait_spans(40, timeout=20)
    assert otlp_collector.errors == []


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_sample_rate_zero_sends_nothing(otlp_collector, otel_proxy, disco_dir, recording_backend):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = otel_proxy(otlp_collector.endpoint, sampleRate=0.0)
    for _ in range(5):
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    time.sleep(0.5)  # ten flush intervals
    assert otlp_collector.posts == 0 and otlp_collector.spans == []
    # not sampled here, and the next hop is told so (it must not start a trace mid-request)
    assert backend.requests[0].header("traceparent").endswith("-00")
    assert _metric(proxy, "queued") == 0 and _metric(proxy, "spans_sent") == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_queued_spans_are_sent_at_shutdown(
    otlp_collector, otel_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = otel_proxy(otlp_collector.endpoint, flushIntervalMs=60_000)
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    time.sleep(0.2)
    assert otlp_collector.posts == 0  # not due yet
    assert proxy.stop() == 0  # SIGTERM: drain, then the telemeter's last flush
    assert len(otlp_collector.spans) == 2 and otlp_collector.errors == []


@pytest.mark.timeout(60)
def test_close_waits_for_the_export_in_flight_then_sends_the_rest(otlp_collector):
    otlp_collector.delay = 0.3
    telemeter = OpenTelemetryTelemeter(
        OpenTelemetryConfig(endpoint=otlp_collector.endpoint, flush_interval_ms=10)
    )

    async def main() -> None:
        runner = asyncio.create_task(telemeter.run())
        for i in range(1, 4):
            telemeter.record(Span(7, i, None, "get", "SERVER", T0, 1, "x"))
        await asyncio.sleep(0.1)  # run() is exporting the first three, slowly
        telemeter.record(Span(7, 4, None, "get", "SERVER", T0, 1, "x"))
        await telemeter.close()
        assert runner.done() or not telemeter.queue
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    asyncio.run(main())
    assert [e.spans for e in otlp_collector.exports] == [3, 1]
    assert len(otlp_collector.spans) == 4 and otlp_collector.errors == []
    assert telemeter._session is None and telemeter._sent.value == 4
