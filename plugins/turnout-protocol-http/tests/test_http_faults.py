"""Faults and abuse found by attacking the router (issue 10): default timeouts, retry storms,
early responses, HTTP versions, malformed bodies, Expect, TRACE/OPTIONS, pooled connection
ageing and oversized response heads. Each test failed before its fix."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from urllib.parse import unquote

import pytest
from turnout.testing import RawClient, build_request, http_request, wait_until
from turnout.testing.backend import http_response

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SERVER_FAILURES = "rt/http/server/127.0.0.1/{port}/failures"
CLIENT = "rt/http/client/#/io.l5d.fs/web"


def metrics(proxy) -> dict:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=5) as r:
        return json.load(r)


def global_client(**options) -> dict:
    return {"client": {"kind": "io.l5d.global", **options}}


def err(r) -> str:
    return unquote(r.header("l5d-err") or "")


# -- 4: timeouts by default -------------------------------------------------------------------


def test_client_policy_has_a_response_timeout_and_pool_idle_time_by_default():
    from turnout.naming import Path
    from turnout.router.policy import (
        DEFAULT_POOL_IDLE_TIME_MS,
        DEFAULT_RESPONSE_IDLE_TIMEOUT_MS,
        client_policy,
    )
    from turnout_protocol_http.config import HttpServerConfig

    assert client_policy(None, Path.read("/#/x")).response_idle_timeout_ms == 60_000
    assert DEFAULT_RESPONSE_IDLE_TIMEOUT_MS == DEFAULT_POOL_IDLE_TIME_MS == 60_000
    assert HttpServerConfig().request_body_idle_timeout_ms == 30_000


def test_endpoint_that_never_answers_gets_504(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(lambda req: [600.0, http_response(200, b"never")])
    disco_dir.write("web", backend)
    proxy = http_proxy(router=global_client(responseIdleTimeoutMs=1000))
    start = time.monotonic()
    r = http_request(proxy.port, headers={"Host": "web"}, timeout=15)
    elapsed = time.monotonic() - start
    assert r.status == 504
    assert "responseIdleTimeoutMs" in err(r)
    assert 1.0 <= elapsed < 10  # checked once a second
    assert wait_until(lambda: all(c.closed for c in backend.connections), 5)
    assert metrics(proxy)[f"{CLIENT}/failures/response_timeout"] == 1


def test_stalled_response_body_is_cut(http_proxy, disco_dir, recording_backend):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst"
    backend = recording_backend(lambda req: [head, 600.0])
    disco_dir.write("web", backend)
    proxy = http_proxy(router=global_client(responseIdleTimeoutMs=1000))
    with RawClient("127.0.0.1", proxy.port, timeout=15) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        data, closed = c.read_until_close(10)
    assert closed and data.startswith(b"HTTP/1.1 200") and data.endswith(b"first")
    assert wait_until(lambda: all(c.closed for c in backend.connections), 5)


def test_request_body_that_stops_arriving_gets_408(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(server={"requestBodyIdleTimeoutMs": 1000})
    with RawClient("127.0.0.1", proxy.port, timeout=15) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\nabc")
        r = c.read_final(timeout=10)
        assert c.is_closed(5)
    assert r.status == 408
    assert "requestBodyIdleTimeoutMs" in err(r)
    # the endpoint connection that had the head and 3 bytes is closed too
    assert wait_until(lambda: all(c.closed for c in backend.connections), 5)
    m = metrics(proxy)
    assert m[SERVER_FAILURES.format(port=proxy.port) + "/request_timeout"] == 1


def test_server_timeout_ms(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(delay=5.0)
    disco_dir.write("web", backend)
    proxy = http_proxy(server={"timeoutMs": 300})
    start = time.monotonic()
    r = http_request(proxy.port, headers={"Host": "web"}, timeout=10)
    assert r.status == 503
    assert "timeoutMs of 300 ms" in err(r)
    assert 0.3 <= time.monotonic() - start < 4.5


def test_pooled_connections_age_out(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(router=global_client(clientSession={"idleTimeMs": 500}))
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert backend.connection_count == 1
    assert wait_until(lambda: all(c.closed for c in backend.connections), 5)


def test_client_session_life_time(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(router=global_client(clientSession={"lifeTimeMs": 300}))
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    time.sleep(0.5)
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert backend.connection_count == 2  # the first connection was too old to reuse


# -- 5: no retry storm --------------------------------------------------------------------------


def test_endpoint_that_closes_without_answering_sees_few_attempts(
    http_proxy, disco_dir, recording_backend
):
    backend = recording_backend(lambda req: None)  # closes without answering
    disco_dir.write("web", backend)
    proxy = http_proxy()
    r = http_request(proxy.port, headers={"Host": "web"})
    assert r.status == 502
    assert backend.request_count <= 2  # was 26
    m = metrics(proxy)
    assert m[f"{CLIENT}/retries/requeues"] <= 1


# -- 6: an early response is relayed ------------------------------------------------------------


class EarlyAnswer:
    """A backend that reads a request head, answers 413 and closes at once, leaving the body
    unread (its kernel then resets the connection under the rest of the upload)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(http_response(413, b"too big", [("Connection", "close")]))

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()


@pytest.fixture
def early_backend():
    backend = EarlyAnswer()
    yield backend
    backend.stop()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_early_413_before_the_body_is_read_is_relayed(http_proxy, disco_dir, early_backend, loop):
    disco_dir.write("web", f"127.0.0.1 {early_backend.port}")
    proxy = http_proxy(env={"TURNOUT_LOOP": loop})
    body = b"x" * (1 << 20)
    statuses = []
    for _ in range(10):
        with RawClient("127.0.0.1", proxy.port, timeout=10) as c:
            head = b"POST /up HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n\r\n" % len(body)
            with contextlib.suppress(OSError):  # (turnout may stop reading once answered)
                c.send(head + body)
            statuses.append(c.read_final(timeout=10).status)
    assert statuses == [413] * 10


# -- 7: HTTP versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [b"GET /a HTTP/2.0", b"GET /a HTTP/1.2", b"GET /a HTTP/3.0", b"GET /a"],
    ids=["2.0", "1.2", "3.0", "0.9"],
)
def test_versions_other_than_1x_get_505(http_proxy, disco_dir, recording_backend, request_line):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(request_line + b"\r\nHost: web\r\n\r\n")
        data, _ = c.read_until_close(5)
    assert data.startswith(b"HTTP/1.1 505 "), data[:60]
    assert backend.request_count == 0


# -- 8 and 15: malformed request bodies ---------------------------------------------------------

BAD_CHUNKED = {
    "te-tab": b"Transfer-Encoding: chunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "overflow": b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n",
    "bare-lf": b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    "space": b"Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
    "negative": b"Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", BAD_CHUNKED)
def test_malformed_chunked_body_is_400_and_never_forwarded(
    http_proxy, disco_dir, recording_backend, name
):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    # a pooled connection: a forwarded head would be written at once
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: web\r\n" + BAD_CHUNKED[name])
        r = c.read_final(timeout=5)
    assert r.status == 400
    assert r.has_header("l5d-err")
    time.sleep(0.2)
    assert [q.method for q in backend.requests] == ["GET"]


def test_malformed_body_after_the_head_was_forwarded_is_400(
    http_proxy, disco_dir, recording_backend
):
    backend = recording_backend(delay=5.0)
    disco_dir.write("web", backend)
    proxy = http_proxy()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert wait_until(lambda: backend.bytes_received > 0, 5)  # the head went upstream
        c.send(b"3\r\nabc\r\n-3\r\n")
        r = c.read_final(timeout=5)
    assert r.status == 400
    assert "malformed request" in err(r)
    assert wait_until(lambda: all(conn.closed for conn in backend.connections), 5)
    m = metrics(proxy)
    assert m[SERVER_FAILURES.format(port=proxy.port) + "/bad_request"] == 1


def test_client_framing_errors_never_eject_healthy_endpoints(
    http_proxy, disco_dir, recording_backend
):
    backends = [recording_backend(name=f"b{i}", delay=0.2) for i in range(3)]
    disco_dir.write("web", *backends)
    proxy = http_proxy()
    for _ in range(30):
        with RawClient("127.0.0.1", proxy.port) as c:
            c.send(b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n")
            time.sleep(0.02)  # (a separate read: the head is forwarded first)
            c.send(b"-3\r\nabc\r\n0\r\n\r\n")
            assert c.read_final(timeout=5).status == 400
    m = metrics(proxy)
    assert m.get(f"{CLIENT}/failure_accrual/removals", 0) == 0
    for _ in range(9):
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert all(b.request_count for b in backends)


# -- 10: Expect, TRACE, OPTIONS -----------------------------------------------------------------


def test_expect_100_continue_is_answered_by_turnout(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(send_continue=False)  # like most small servers
    disco_dir.write("web", backend)
    proxy = http_proxy()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(
            build_request(
                "POST", "/", {"Host": "web", "Content-Length": "5", "Expect": "100-continue"}
            )
        )
        assert c.read_response(timeout=5).status == 100  # without the body being sent first
        c.send(b"hello")
        assert c.read_final(timeout=5).status == 200
    req = backend.requests[0]
    assert req.body == b"hello"
    assert req.header("expect") is None


def test_trace_with_max_forwards_0_is_answered_by_turnout(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    r = http_request(
        proxy.port,
        "TRACE",
        "/t",
        {"Host": "web", "Max-Forwards": "0", "X-Probe": "1", "Cookie": "secret"},
    )
    assert r.status == 200
    assert r.header("content-type") == "message/http"
    assert r.body.startswith(b"TRACE /t HTTP/1.1\r\n")
    assert b"X-Probe: 1" in r.body and b"secret" not in r.body
    r = http_request(proxy.port, "OPTIONS", "/", {"Host": "web", "Max-Forwards": "0"})
    assert r.status == 200 and "GET" in (r.header("allow") or "")
    assert backend.request_count == 0
    r = http_request(proxy.port, "TRACE", "/t", {"Host": "web", "Max-Forwards": "3"})
    assert r.status == 200
    assert backend.requests[0].header("max-forwards") == "2"


def test_options_star_is_not_forwarded(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    r = http_request(proxy.port, "OPTIONS", "*", {"Host": "web"})
    assert r.status == 400
    assert backend.request_count == 0


# -- 14: response heads are bounded -------------------------------------------------------------


@pytest.mark.parametrize("size", [64 * 1024, 10 << 20])
def test_huge_response_head_is_502(http_proxy, disco_dir, recording_backend, size):
    line = b"X-Big: " + b"a" * 1000 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\n" + line * (size // len(line))

    def respond(req):
        return [head, b"Content-Length: 2\r\n\r\nok"]

    backend = recording_backend(respond)
    disco_dir.write("web", backend)
    proxy = http_proxy()
    r = http_request(proxy.port, headers={"Host": "web"}, timeout=15)
    assert r.status == 502
    assert "maxHeadersKB" in err(r)
    # one long header line (llhttp keeps it to itself until it ends) is bounded too
    backend2 = recording_backend(lambda req: [b"HTTP/1.1 200 OK\r\nX-A: " + b"b" * size])
    disco_dir.write("web", backend2)
    time.sleep(0.3)
    r = http_request(proxy.port, headers={"Host": "web"}, timeout=15)
    assert r.status == 502
    assert "maxHeadersKB" in err(r)


# -- 11: deadlines never fire early -------------------------------------------------------------


def test_total_timeout_never_answers_before_its_deadline(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(delay=5.0)
    disco_dir.write("web", backend)
    proxy = http_proxy(
        router={"service": {"kind": "io.l5d.global", "totalTimeoutMs": 50}},
    )
    results: list[float] = []

    def one() -> None:
        start = time.monotonic()
        r = http_request(proxy.port, headers={"Host": "web"}, timeout=10)
        assert r.status == 503
        results.append(time.monotonic() - start)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 20
    assert min(results) >= 0.05


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_abandoned_sockets_do_not_exhaust_descriptors(
    http_proxy, disco_dir, recording_backend, loop
):
    backend = recording_backend(lambda req: [600.0, http_response(200, b"never")])
    disco_dir.write("web", backend)
    proxy = http_proxy(env={"TURNOUT_LOOP": loop})
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", proxy.port))
        if i % 2:
            s.sendall(b"GET /never HTTP/1.1\r\nHost: web\r\n\r\n")
        else:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: web\r\nContent-Length: 100000\r\n\r\nabcd")
        s.close()
    # no connection of turnout's is left waiting for a client that has gone ...
    assert wait_until(lambda: close_wait(proxy.port) == 0, 5)
    # ... and every endpoint connection that carried one of those requests is closed
    assert wait_until(lambda: all(c.closed for c in backend.connections if c.requests), 5)


def close_wait(port: int) -> int:
    """Sockets of this machine in CLOSE_WAIT on local port ``port`` (from /proc/net/tcp)."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "08" and int(fields[1].split(":")[1], 16) == port:
                count += 1
    return count


# -- 10: error texts ----------------------------------------------------------------------------


def test_unresolvable_endpoint_host_says_so(http_proxy, disco_dir):
    disco_dir.write("web", "turnout-test.invalid 80")
    proxy = http_proxy()
    r = http_request(proxy.port, headers={"Host": "web"}, timeout=20)
    assert r.status == 502
    assert "cannot resolve host turnout-test.invalid" in err(r)
    assert "Future exception was never retrieved" not in proxy.log()


def test_request_trailers_cannot_smuggle_headers_turnout_controls(
    http_proxy, disco_dir, recording_backend
):
    """A backend may merge trailers into the headers: what turnout sets or drops in the head
    (x-forwarded-client-cert, l5d-*, Host, Via...) is not taken from trailers either."""
    from turnout.testing import chunked_body

    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    forged = [
        ("X-Forwarded-Client-Cert", "Hash=forged"),
        ("l5d-dtab", "/svc => /$/fail"),
        ("Host", "other"),
        ("Via", "1.1 evil"),
        ("X-Checksum", "5eb63bbbe0"),
    ]
    data = b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_body(
        [b"hello"], trailers=forged
    )
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(data)
        assert c.read_final().status == 200
    [req] = backend.requests
    assert req.trailers == [("X-Checksum", "5eb63bbbe0")]
