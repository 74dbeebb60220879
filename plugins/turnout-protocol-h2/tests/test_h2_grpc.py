"""``protocol: h2`` end to end with real grpcio clients and servers through a started turnout:
every call shape, cancellation, deadlines, errors, retries, flow control."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import grpc
import h2.events
import pytest
from turnout.testing import free_port, wait_until
from turnout_h2_grpc import GrpcClient
from turnout_h2_rawclient import RawClient, ended, grpc_frame

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GRPC_ROUTER = {"identifier": {"kind": "io.l5d.header.path", "segments": 1}}


def metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=10) as r:
        values: dict[str, Any] = json.load(r)
        return values


def inet(backend: Any) -> str:
    return f"/$/inet/127.0.0.1/{backend.port}"


def grpc_request(path: bytes, **extra: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"test"),
        (b":path", path),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    return headers + [(k.replace("_", "-").encode(), v) for k, v in extra.items()]


def headers_of(events: list[Any], sid: int) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for e in events:
        if (
            isinstance(e, h2.events.ResponseReceived | h2.events.TrailersReceived)
            and e.stream_id == sid
        ):
            out.update(dict(e.headers))
    return out


def test_every_call_shape(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    with GrpcClient(proxy.port) as client:
        assert client.unary("Unary", b"hello", timeout=10) == b"cat:hello"
        stream = client.method("unary_stream", "ServerStream")(b"100", timeout=10)
        assert [int(m) for m in stream] == list(range(100))
        joined = client.method("stream_unary", "ClientStream")(
            iter([b"%d" % i for i in range(50)]), timeout=10
        )
        assert joined == b",".join(b"%d" % i for i in range(50))
        # bidirectional in lock step: each answer arrives before the next request is sent,
        # so nothing waits for the end of either stream
        outbox: list[bytes] = []
        ready = threading.Event()

        def requests():
            for i in range(20):
                outbox.append(b"m%d" % i)
                ready.clear()
                yield b"m%d" % i
                assert ready.wait(10), "no answer before the next request"

        answers = []
        for answer in client.method("stream_stream", "Bidi")(requests(), timeout=20):
            answers.append(answer)
            ready.set()
        assert answers == [b"cat:m%d" % i for i in range(20)]
    values = metrics(proxy)
    assert values["rt/h2/service/svc/test.Echo/success"] == 4
    # Linkerd's h2 stream stats, per server
    server = f"rt/h2/server/127.0.0.1/{proxy.port}"
    assert wait_until(lambda: metrics(proxy).get(f"{server}/stream/stream_success") == 4)
    values = metrics(proxy)
    assert values[f"{server}/request/stream/stream_success"] == 4
    assert values[f"{server}/response/stream/stream_success"] == 4
    assert values[f"{server}/response/stream/data_bytes.count"] == 4
    assert values[f"{server}/stream/total_latency_ms.count"] == 4
    assert values[f"{server}/stream/stream_failures"] == 0
    assert values[f"rt/h2/server/127.0.0.1/{proxy.port}/requests"] == 4


def test_linkerd_headers_reach_the_backend(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    with GrpcClient(proxy.port) as client:
        meta = dict(
            line.split("=", 1)
            for line in client.unary("Meta", b"", timeout=10, metadata=[("l5d-dtab", "/x => /y")])
            .decode()
            .splitlines()
        )
    assert meta["l5d-dst-service"] == "/svc/test.Echo"
    assert meta["l5d-dst-client"] == inet(backend)
    assert meta["l5d-ctx-dtab"] == "/x=>/y"
    assert "l5d-dtab" not in meta
    assert meta["via"].endswith("2 turnout")


def test_large_messages_both_ways_under_flow_control(h2_proxy, grpc_backend):
    """8 MB each way through 64 KB windows: credit flows back as bytes are taken."""
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    size = 8 << 20
    with GrpcClient(proxy.port) as client:
        assert len(client.unary("Big", str(size).encode(), timeout=30)) == size
        request = b"y" * size
        joined = client.method("stream_unary", "ClientStream")(iter([request]), timeout=30)
        assert joined == request


def test_a_slow_reader_does_not_make_turnout_buffer(h2_proxy, grpc_backend):
    """A client that returns no credit stalls the backend's stream: the backend produces only
    what the windows on the way allow, not the 100 MB it was asked for."""
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    rss_before = proxy.rss_kib()
    raw = RawClient(proxy.port)
    sid = raw.request(grpc_request(b"/test.Echo/ServerStream"), grpc_frame(b"10000:10000"))
    # read what turnout sends but never acknowledge it (no WINDOW_UPDATE from us)
    raw.conn.receive_data = _no_credit(raw.conn)
    raw.read(lambda ev: False, timeout=3)
    produced = backend.produced
    time.sleep(1.0)
    assert backend.produced - produced < 50, "the backend kept producing"
    # the windows: ours to turnout (65535), turnout's to the backend (65535 per stream), grpc's
    # own buffers; 10 KB messages
    assert 5 < backend.produced and backend.produced * 10_000 < 8 << 20, backend.produced
    assert proxy.rss_kib() - rss_before < 20_000
    raw.conn.reset_stream(sid)
    raw.flush()
    raw.close()


def _no_credit(conn: Any) -> Any:
    original = conn.receive_data

    def receive(data: bytes) -> list[Any]:
        events = original(data)
        conn.clear_outbound_data_buffer()  # (drops our WINDOW_UPDATEs: we take nothing)
        return list(events)

    return receive


def test_cancellation_reaches_the_backend(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    with GrpcClient(proxy.port) as client:
        future = client.method("unary_unary", "Slow").future(b"30", timeout=60)
        assert wait_until(lambda: backend.calls["Slow"] == 1, timeout=10)
        future.cancel()
        assert wait_until(lambda: backend.cancelled["Slow"] == 1, timeout=10)
    assert wait_until(lambda: metrics(proxy).get("rt/h2/h2/client_cancellations") == 1, timeout=10)
    server = f"rt/h2/server/127.0.0.1/{proxy.port}"
    assert wait_until(lambda: metrics(proxy).get(f"{server}/stream/stream_failures") == 1)


def test_client_deadline_cancels_upstream(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    with GrpcClient(proxy.port) as client, pytest.raises(grpc.RpcError) as err:
        client.unary("Slow", b"30", timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_until(lambda: backend.cancelled["Slow"] == 1, timeout=10)


def test_grpc_timeout_is_a_deadline_of_turnout(h2_proxy, grpc_backend):
    """A caller that sends grpc-timeout but does not enforce it itself gets
    DEADLINE_EXCEEDED from turnout, and the backend's call is cancelled."""
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    raw = RawClient(proxy.port)
    started = time.monotonic()
    sid = raw.request(grpc_request(b"/test.Echo/Slow", grpc_timeout=b"300m"), grpc_frame(b"30"))
    events = raw.read(ended(sid), timeout=10)
    assert time.monotonic() - started < 8
    got = headers_of(events, sid)
    assert got[b"grpc-status"] == b"4", got
    assert b"l5d-err" in got
    assert wait_until(lambda: backend.cancelled["Slow"] == 1, timeout=10)
    raw.close()


def test_dead_backend_is_unavailable_within_the_connect_timeout(h2_proxy):
    proxy = h2_proxy(f"/svc/test.Echo => /$/inet/127.0.0.1/{free_port()}", **GRPC_ROUTER)
    started = time.monotonic()
    with GrpcClient(proxy.port) as client, pytest.raises(grpc.RpcError) as err:
        client.unary("Unary", b"x", timeout=20)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 10
    assert "connect" in err.value.details()


def test_no_route_is_unavailable(h2_proxy):
    proxy = h2_proxy("/svc/other => /$/inet/127.0.0.1/1", **GRPC_ROUTER, bindingTimeoutMs=500)
    with GrpcClient(proxy.port) as client, pytest.raises(grpc.RpcError) as err:
        client.unary("Unary", b"x", timeout=20)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Unable to route request" in err.value.details()


def test_error_statuses_pass_through_and_are_classified(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => {inet(backend)}",
        **GRPC_ROUTER,
        service={"responseClassifier": {"kind": "io.l5d.h2.grpc.default"}},
    )
    with GrpcClient(proxy.port) as client:
        for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
            with pytest.raises(grpc.RpcError) as err:
                client.unary("Fail", str(code.value[0]).encode(), timeout=10)
            assert err.value.code() == code
        assert client.unary("Unary", b"ok", timeout=10) == b"cat:ok"
    values = metrics(proxy)
    assert values["rt/h2/service/svc/test.Echo/failures"] == 2
    assert values["rt/h2/service/svc/test.Echo/success"] == 1
    assert values["rt/h2/service/svc/test.Echo/failures/grpc_status_5"] == 1


def test_unavailable_is_retried_by_the_default_grpc_classifier(h2_proxy, grpc_backend):
    backend = grpc_backend("cat", fail_first=2)
    proxy = h2_proxy(
        f"/svc/test.Echo => {inet(backend)}",
        **GRPC_ROUTER,
        service={
            "responseClassifier": {"kind": "io.l5d.h2.grpc.default"},
            "retries": {"budget": {"minRetriesPerSec": 10, "percentCanRetry": 1.0}},
        },
    )
    with GrpcClient(proxy.port) as client:
        assert client.unary("Flaky", b"", timeout=10) == b"cat:ok"
    assert backend.calls["Flaky"] == 3
    values = metrics(proxy)
    assert values["rt/h2/service/svc/test.Echo/retries/total"] == 2


def test_never_retryable_does_not_retry(h2_proxy, grpc_backend):
    backend = grpc_backend("cat", fail_first=1)
    proxy = h2_proxy(
        f"/svc/test.Echo => {inet(backend)}",
        **GRPC_ROUTER,
        service={
            "responseClassifier": {"kind": "io.l5d.h2.grpc.neverRetryable"},
            "retries": {"budget": {"minRetriesPerSec": 10}},
        },
    )
    with GrpcClient(proxy.port) as client, pytest.raises(grpc.RpcError) as err:
        client.unary("Flaky", b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert backend.calls["Flaky"] == 1


def test_many_concurrent_calls_on_one_connection(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER)
    with GrpcClient(proxy.port) as client:
        method = client.method("unary_unary", "Unary")
        futures = [method.future(b"%d" % i, timeout=30) for i in range(300)]
        assert [f.result() for f in futures] == [b"cat:%d" % i for i in range(300)]
    values = metrics(proxy)
    assert values[f"rt/h2/server/127.0.0.1/{proxy.port}/success"] == 300
    # one endpoint connection carried the 300 streams (multiplexed)
    client_id = f"$/inet/127.0.0.1/{backend.port}"
    assert values[f"rt/h2/client/{client_id}/connects"] == 1, values


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_both_event_loops(h2_proxy, grpc_backend, loop):
    backend = grpc_backend("cat")
    env = {"TURNOUT_LOOP": loop}  # (uvloop is the default where installed)
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER, env=env)
    with GrpcClient(proxy.port) as client:
        assert client.unary("Unary", b"x", timeout=10) == b"cat:x"
        assert len(list(client.method("unary_stream", "ServerStream")(b"50", timeout=10))) == 50


def test_tls_to_the_endpoint_with_alpn_h2(h2_proxy, tmp_path):
    """client.tls: turnout opens TLS to a grpcio server (ALPN h2), checking its certificate
    against the CA and the commonName; a wrong commonName is a failed connect (UNAVAILABLE)."""
    import trustme
    from turnout_h2_grpc import GrpcBackend

    ca = trustme.CA()
    cert = ca.issue_cert("backend.test")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(ca_path)
    backend = GrpcBackend("tls")
    backend.tls = (cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes())
    backend.start()
    try:
        dtab = f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}"
        tls = {"trustCertsBundle": str(ca_path)}
        good = h2_proxy(dtab, **GRPC_ROUTER, client={"tls": {**tls, "commonName": "backend.test"}})
        with GrpcClient(good.port) as client:
            assert client.unary("Unary", b"x", timeout=10) == b"tls:x"
        bad = h2_proxy(dtab, **GRPC_ROUTER, client={"tls": {**tls, "commonName": "other.test"}})
        with GrpcClient(bad.port) as client, pytest.raises(grpc.RpcError) as err:
            client.unary("Unary", b"x", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "certificate" in err.value.details().lower(), err.value.details()
        assert backend.calls["Unary"] == 1
    finally:
        backend.stop()


def test_response_idle_timeout_bounds_the_wait_for_response_headers(h2_proxy, grpc_backend):
    """client.responseIdleTimeoutMs, when set: no response headers by then is answered
    DEADLINE_EXCEEDED and the endpoint's stream cancelled (unset, h2 streams may wait: core's
    60 s default is not applied to them)."""
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => {inet(backend)}",
        **GRPC_ROUTER,
        client={"responseIdleTimeoutMs": 300},
    )
    started = time.monotonic()
    with GrpcClient(proxy.port) as client, pytest.raises(grpc.RpcError) as err:
        client.unary("Slow", b"20", timeout=30)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "responseIdleTimeoutMs" in err.value.details()
    assert time.monotonic() - started < 15
    assert wait_until(lambda: backend.cancelled["Slow"] == 1, timeout=10)
    with GrpcClient(proxy.port) as client:  # a quick answer is not affected
        assert client.unary("Unary", b"x", timeout=10) == b"cat:x"


def test_traces_spans_and_propagates_the_context(h2_proxy, grpc_backend):
    """The stack's spans for h2 (io.l5d.tracelog): a SERVER and a CLIENT span per call, named
    by the method, tagged with the path and the gRPC status; the caller's B3 context is
    continued and the client span's context goes to the backend (B3, l5d-ctx-trace,
    traceparent, l5d-reqid)."""
    backend = grpc_backend("cat")
    tracelog = [{"kind": "io.l5d.tracelog", "sampleRate": 1.0, "level": "INFO"}]
    proxy = h2_proxy(f"/svc/test.Echo => {inet(backend)}", **GRPC_ROUTER, telemetry=tracelog)
    trace_id = "463ac35c9f6413ad48485a3953bb6124"
    caller = [
        ("x-b3-traceid", trace_id),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ]
    with GrpcClient(proxy.port) as client:
        text = client.unary("Meta", b"", timeout=10, metadata=caller).decode()
    meta = dict(line.split("=", 1) for line in text.splitlines())
    assert meta["x-b3-traceid"] == trace_id
    assert meta["x-b3-parentspanid"] == "a2fb4a1d1a96d312"
    assert meta["l5d-reqid"] == trace_id
    assert "l5d-ctx-trace" in meta and meta["traceparent"].startswith(f"00-{trace_id}-")

    def spans() -> list[dict[str, Any]]:
        marker = "turnout.tracelog: "
        lines = [line for line in proxy.log().splitlines() if marker in line]
        return [json.loads(line.split(marker, 1)[1]) for line in lines]

    assert wait_until(lambda: len(spans()) >= 2, timeout=10), proxy.log()
    server = next(s for s in spans() if s["kind"] == "SERVER")
    client_span = next(s for s in spans() if s["kind"] == "CLIENT")
    assert server["traceId"] == client_span["traceId"] == trace_id
    assert server["id"] == "a2fb4a1d1a96d312"  # (the caller's span, shared as Zipkin does)
    assert client_span["id"] == meta["x-b3-spanid"]
    assert server["name"] == "POST"
    assert server["tags"]["http.path"] == "/test.Echo/Meta"
    assert server["tags"]["grpc.status_code"] == "0"
    assert server["tags"]["l5d.service"] == "/svc/test.Echo"


def test_a_stream_failing_after_a_message_is_retried_from_its_held_start(h2_proxy, grpc_backend):
    """io.l5d.h2.grpc.default with retries: the response's headers and first message are held
    (within retryBufferSize.responseBytes, for classificationTimeoutMs); its trailers say
    UNAVAILABLE, so the call is sent again and the caller sees only the second, whole stream.
    Without retries, the held message and the status are relayed as they were."""
    backend = grpc_backend("cat", fail_first=1)
    service = {"responseClassifier": {"kind": "io.l5d.h2.grpc.default"}}
    proxy = h2_proxy(
        f"/svc/test.Echo => {inet(backend)}",
        **GRPC_ROUTER,
        service={**service, "retries": {"budget": {"minRetriesPerSec": 10}}},
    )
    with GrpcClient(proxy.port) as client:
        got = list(client.method("unary_stream", "FlakyStream")(b"5", timeout=10))
    assert got == [b"cat:%d" % i for i in range(5)]
    assert backend.calls["FlakyStream"] == 2
    assert metrics(proxy)["rt/h2/service/svc/test.Echo/retries/total"] == 1

    other = grpc_backend("dog", fail_first=1)
    plain = h2_proxy(f"/svc/test.Echo => {inet(other)}", **GRPC_ROUTER, service=service)
    seen: list[bytes] = []
    with GrpcClient(plain.port) as client, pytest.raises(grpc.RpcError) as err:
        seen.extend(client.method("unary_stream", "FlakyStream")(b"5", timeout=10))
    assert seen == [b"partial"] and err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert other.calls["FlakyStream"] == 1
