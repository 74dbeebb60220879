"""Tracing through the HTTP router: propagation formats, spans per request and per attempt
(seen through the built-in recentRequests and tracelog telemeters)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from turnout.testing import http_request, wait_until
from turnout.testing.backend import http_response
from turnout.tracing import Tracing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def recent(proxy) -> list[dict]:
    with urllib.request.urlopen(proxy.admin_url + "/requests.json", timeout=5) as r:
        return json.load(r)


def backend_trace(req) -> dict[str, str]:
    return {
        n.lower(): v
        for n, v in req.headers
        if n.lower()
        in (
            "traceparent",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-parentspanid",
            "x-b3-sampled",
            "l5d-ctx-trace",
            "b3",
        )
    }


def test_every_request_traced_and_propagated_in_every_format(
    http_proxy, disco_dir, recording_backend
):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(telemetry=[{"kind": "io.l5d.recentRequests", "sampleRate": 1.0}])
    assert http_request(proxy.port, "GET", "/users?id=1", headers={"Host": "web"}).status == 200
    (req,) = backend.requests
    seen = backend_trace(req)
    trace_id = seen["x-b3-traceid"]
    assert len(trace_id) == 32
    # recentRequests stays in the process: its sampling is not forced on the next hop, and
    # no traceparent says "not sampled" either (W3C has no "undecided")
    assert "traceparent" not in seen
    assert "x-b3-parentspanid" in seen and "x-b3-sampled" not in seen
    ctx = Tracing.extract([(b"l5d-ctx-trace", seen["l5d-ctx-trace"].encode())])
    assert ctx is not None and f"{ctx.trace_id:032x}" == trace_id
    assert f"{ctx.span_id:016x}" == seen["x-b3-spanid"]
    (row,) = recent(proxy)
    assert row["traceId"] == trace_id
    assert row["method"] == "GET" and row["path"] == "/users" and row["status"] == 200
    assert row["service"] == "/svc/web" and row["client"] == "/#/io.l5d.fs/web"
    assert row["from"].startswith("127.0.0.1:")


def test_incoming_traceparent_is_continued(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(telemetry=[{"kind": "io.l5d.recentRequests", "sampleRate": 0.0}])
    headers = {"Host": "web", "traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "k=v"}
    assert http_request(proxy.port, headers=headers).status == 200
    (req,) = backend.requests
    seen = backend_trace(req)
    assert seen["x-b3-traceid"] == TRACE and seen["x-b3-parentspanid"] == SPAN
    assert seen["x-b3-spanid"] != SPAN  # a child span for the hop to the backend
    assert req.header_all("traceparent") == [f"00-{TRACE}-{seen['x-b3-spanid']}-01"]
    assert req.header("tracestate") == "k=v"  # vendor state travels on untouched
    assert [r["traceId"] for r in recent(proxy)] == [TRACE]  # sampled upstream: recorded


def test_not_sampled_requests_keep_their_headers(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(telemetry=[{"kind": "io.l5d.recentRequests", "sampleRate": 0.0}])
    b3 = f"{TRACE}-{SPAN}-0"
    assert http_request(proxy.port, headers={"Host": "web", "b3": b3}).status == 200
    (req,) = backend.requests
    assert backend_trace(req) == {"b3": b3}  # passed through, nothing added
    assert recent(proxy) == []


def test_without_a_tracer_nothing_is_added(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy()
    parent = f"00-{TRACE}-{SPAN}-01"
    assert http_request(proxy.port, headers={"Host": "web", "traceparent": parent}).status == 200
    (req,) = backend.requests
    assert backend_trace(req) == {"traceparent": parent}


def test_a_retry_is_a_second_client_span_of_the_same_server_span(
    http_proxy, disco_dir, recording_backend
):
    answers = iter([http_response(503, b"busy"), http_response(200, b"ok")])
    backend = recording_backend(lambda req: next(answers), name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(
        telemetry=[{"kind": "io.l5d.tracelog", "sampleRate": 1.0, "level": "INFO"}],
        router={
            "service": {
                "kind": "io.l5d.global",
                "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"},
                "retries": {},
            }
        },
    )
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    first, second = backend.requests
    a, b = backend_trace(first), backend_trace(second)
    assert a["x-b3-traceid"] == b["x-b3-traceid"]
    assert a["x-b3-parentspanid"] == b["x-b3-parentspanid"]
    assert a["x-b3-spanid"] != b["x-b3-spanid"]

    def spans() -> list[dict]:
        lines = [line for line in proxy.log().splitlines() if "turnout.tracelog" in line]
        return [json.loads(line.split("turnout.tracelog: ", 1)[1]) for line in lines]

    assert wait_until(lambda: len(spans()) >= 3, timeout=5), proxy.log()
    by_kind: dict[str, list[dict]] = {}
    for span in spans():
        by_kind.setdefault(span["kind"], []).append(span)
    (server,) = by_kind["SERVER"]
    clients = by_kind["CLIENT"]
    assert len(clients) == 2
    assert {c["parentId"] for c in clients} == {server["id"]} == {a["x-b3-parentspanid"]}
    assert {c["id"] for c in clients} == {a["x-b3-spanid"], b["x-b3-spanid"]}
    assert sorted(c["tags"]["http.status_code"] for c in clients) == ["200", "503"]
    assert server["tags"]["l5d.retries"] == "1" and server["tags"]["http.status_code"] == "200"
