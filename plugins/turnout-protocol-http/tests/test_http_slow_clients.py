"""Slow clients (B3, B11 L4/L5/L8): request header timeout and idle keep-alive timeout."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from turnout.testing import RawClient, build_request, http_request, http_response, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture
def web(http_proxy, disco_dir, recording_backend):
    def start(**server):
        backend = recording_backend()
        disco_dir.write("web", backend)
        return http_proxy(server=server), backend

    return start


def test_request_head_not_complete_in_time_gets_408(web):
    proxy, backend = web(requestHeaderTimeoutMs=500)
    with RawClient("127.0.0.1", proxy.port) as c:
        start = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: web\r\n")  # never finished
        r = c.read_final(timeout=8)
        elapsed = time.monotonic() - start
        assert r.status == 408
        assert c.is_closed(2)
    # checked by a once-a-second sweep; a loaded machine may be late, never early
    assert 0.4 <= elapsed < 6.0, elapsed
    assert backend.bytes_received == 0


def test_trickled_head_gets_408(web):
    proxy, _ = web(requestHeaderTimeoutMs=700)
    with RawClient("127.0.0.1", proxy.port) as c:
        start = time.monotonic()
        for byte in b"GET / HTTP/1.1\r\nHost: web\r\nX-Slow: " + b"a" * 100:
            c.send(bytes([byte]))
            if c.is_closed(0.05):
                break
        elapsed = time.monotonic() - start
        data, closed = c.read_until_close(2)
    assert closed
    assert data.startswith(b"HTTP/1.1 408")
    assert elapsed < 6.0  # (a head trickled for 0.7 s is cut, not read for its 10 s)


def test_second_request_on_a_keep_alive_connection_has_the_same_header_timeout(web):
    proxy, _ = web(requestHeaderTimeoutMs=500)
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        assert c.read_final().status == 200
        c.send(b"GET / HTTP/1.1\r\nHost: w")  # the second head stalls
        r = c.read_final(timeout=4)
        assert r.status == 408
        assert c.is_closed(2)


def test_idle_keep_alive_connection_is_closed(web):
    proxy, _ = web(idleTimeoutMs=500)
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        assert c.read_final().status == 200
        start = time.monotonic()
        assert c.is_closed(8)
        elapsed = time.monotonic() - start
        assert c.buffer == b""  # closed silently, no 408 on an idle connection
    assert 0.4 <= elapsed < 6.0, elapsed


def test_connection_in_use_is_not_idle(web):
    proxy, _ = web(idleTimeoutMs=800)
    with RawClient("127.0.0.1", proxy.port) as c:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # a request every 300 ms for 2.5 s
            c.send(build_request("GET", "/", {"Host": "web"}))
            assert c.read_final().status == 200
            time.sleep(0.3)
        assert not c.eof


def reset(client: RawClient) -> None:
    """Close with an RST (SO_LINGER 0): an abortive close, not a half-close."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


@pytest.fixture
def slow_then_fast(http_proxy, disco_dir, recording_backend):
    def respond(req):
        return [3.0 if req.target == "/slow" else 0.0, http_response(200, b"ok")]

    backend = recording_backend(respond)
    disco_dir.write("web", backend)
    return http_proxy(), backend


def upstream_closed(backend) -> bool:
    return all(c.closed for c in backend.connections if c.requests)


def test_client_reset_cancels_the_upstream_request_on_a_pooled_connection(slow_then_fast):
    proxy, backend = slow_then_fast
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200  # warm the pool
    backend.reset()
    client = RawClient("127.0.0.1", proxy.port)
    client.send(build_request("GET", "/slow", {"Host": "web"}))
    backend.wait_requests(1)
    reset(client)
    assert wait_until(lambda: upstream_closed(backend), 1.5)


def test_client_reset_cancels_the_upstream_request_on_a_new_connection(slow_then_fast):
    proxy, backend = slow_then_fast
    client = RawClient("127.0.0.1", proxy.port)
    client.send(build_request("GET", "/slow", {"Host": "web"}))
    backend.wait_requests(1)
    reset(client)
    assert wait_until(lambda: upstream_closed(backend), 1.5)


def test_client_half_close_during_a_response_still_gets_all_of_it(
    http_proxy, disco_dir, recording_backend
):
    body = b"x" * 100_000
    backend = recording_backend(
        lambda req: [http_response(200, body)[:-50_000], 1.5, body[-50_000:]]
    )
    disco_dir.write("web", backend)
    proxy = http_proxy()
    with RawClient("127.0.0.1", proxy.port) as client:
        client.send(build_request("GET", "/slow", {"Host": "web"}))
        client.sock.settimeout(5)
        assert client.sock.recv(1, socket.MSG_PEEK)  # the response has begun
        client.sock.shutdown(socket.SHUT_WR)
        r = client.read_final(timeout=6)
    assert (r.status, r.body) == (200, body)


def test_abandoned_requests_free_both_sides_at_once(slow_then_fast):
    """A client that sends a request (or part of its body) and closes frees its socket and
    the endpoint connection at once, not when the endpoint answers (issue 10, item 12)."""
    proxy, backend = slow_then_fast
    partial = RawClient("127.0.0.1", proxy.port)
    partial.send(b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 100000\r\n\r\nabcd")
    never = RawClient("127.0.0.1", proxy.port)
    never.send(build_request("GET", "/slow", {"Host": "web"}))
    assert wait_until(lambda: len(backend.connections) == 2, 5)
    partial.close()
    never.close()
    assert wait_until(lambda: all(c.closed for c in backend.connections), 1.5)
