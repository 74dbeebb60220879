"""Bodies end to end: Content-Length and chunked bodies streamed both ways, trailers,
HEAD/204/304, Expect: 100-continue, close-delimited responses, HTTP/1.0 clients,
pipelining and upstream keep-alive."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import subprocess
import time

import pytest
from turnout.testing import (
    CLOSE,
    RawClient,
    build_request,
    chunked_body,
    http_request,
    http_response,
    parse_response,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def web(http_proxy, disco_dir, recording_backend):
    """``web(response=None, **backend options)`` -> (turnout, backend) for service web."""

    def start(response=None, **kw):
        backend = recording_backend(response, **kw)
        disco_dir.write("web", backend)
        return http_proxy(), backend

    return start


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--noproxy", "*", *args],
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_content_length_request_body_with_curl(web, tmp_path):
    proxy, backend = web()
    data = os.urandom(3 * MIB + 17)
    (tmp_path / "up").write_bytes(data)
    result = curl("-H", "Host: web", "--data-binary", f"@{tmp_path / 'up'}", proxy.url("/up"))
    assert result.returncode == 0, result.stderr
    [req] = backend.requests
    assert req.header("Content-Length") == str(len(data))
    assert not req.chunked
    assert (req.body_size, req.body_sha256) == (len(data), sha(data))


def test_chunked_request_body_with_curl(web, tmp_path):
    proxy, backend = web()
    data = os.urandom(2 * MIB + 5)
    (tmp_path / "up").write_bytes(data)
    result = curl(
        "-H",
        "Host: web",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        f"@{tmp_path / 'up'}",
        proxy.url("/up"),
    )
    assert result.returncode == 0, result.stderr
    [req] = backend.requests
    assert req.chunked
    assert req.header("Content-Length") is None
    assert (req.body_size, req.body_sha256) == (len(data), sha(data))


def test_content_length_response_body(web, tmp_path):
    data = os.urandom(4 * MIB + 3)
    proxy, _ = web(http_response(200, data))
    out = tmp_path / "down"
    result = curl("-H", "Host: web", "-o", str(out), "-D", "-", proxy.url("/"))
    assert result.returncode == 0, result.stderr
    assert f"Content-Length: {len(data)}".encode() in result.stdout
    assert sha(out.read_bytes()) == sha(data)


def test_chunked_response_body_and_trailers(web):
    chunks = [os.urandom(n) for n in (1, 1000, 70_000, 5, 300_000)]
    body = chunked_body(chunks, trailers=[("X-Checksum", "abc123")])
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" + body
    )
    proxy, _ = web(response)
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web", "TE": "trailers"}))
        r = c.read_final()
    assert r.framing == "chunked"
    assert sha(r.body) == sha(b"".join(chunks))
    assert ("X-Checksum", "abc123") in r.trailers


def test_chunked_request_trailers_are_forwarded(web):
    proxy, backend = web()
    data = (
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        + chunked_body([b"hello ", b"world"], trailers=[("X-Checksum", "5eb63bbbe0")])
    )
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(data)
        assert c.read_final().status == 200
    [req] = backend.requests
    assert req.body == b"hello world"
    assert req.trailers == [("X-Checksum", "5eb63bbbe0")]


def test_request_body_is_streamed_not_buffered(web):
    proxy, backend = web()
    total = 8 * MIB
    first = os.urandom(256 * 1024)
    with RawClient("127.0.0.1", proxy.port, timeout=10) as c:
        c.send(build_request("POST", "/", {"Host": "web", "Content-Length": str(total)}) + first)
        # the backend sees the start of the body while most of it is not even sent yet
        assert wait_until(lambda: backend.bytes_received > 128 * 1024, 5)
        rest = os.urandom(total - len(first))
        c.send(rest)
        assert c.read_final().status == 200
    assert backend.requests[0].body_sha256 == sha(first + rest)


def test_response_body_is_streamed_not_buffered(web):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    proxy, _ = web([head + b"5\r\nfirst\r\n", 5.0, b"4\r\nlast\r\n0\r\n\r\n"])
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        start = time.monotonic()
        assert c.wait_for(b"first", 4.0), "the first chunk was held back"
        assert time.monotonic() - start < 4.0  # before the last chunk was even sent
        r = c.read_final(timeout=10)
    assert r.body == b"firstlast"


def test_head_response_has_headers_but_no_body(web):
    proxy, backend = web(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-H: 1\r\n\r\n")
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("HEAD", "/", {"Host": "web"}))
        r = c.read_final(head=True)
        assert r.status == 200
        assert r.header("Content-Length") == "1234"
        assert r.header("X-H") == "1"
        # nothing follows the head: the next response on this connection parses cleanly
        c.send(build_request("HEAD", "/", {"Host": "web"}))
        assert c.read_final(head=True).header("Content-Length") == "1234"
        assert c.buffer == b""
    assert backend.requests[0].method == "HEAD"


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses(web, status):
    proxy, _ = web(http_response(status, length=False) if status == 204 else http_response(status))
    with RawClient("127.0.0.1", proxy.port) as c:
        for _ in range(2):  # and the connection stays usable
            c.send(build_request("GET", "/", {"Host": "web"}))
            r = c.read_final()
            assert r.status == status
            assert r.body == b""
            assert r.header("Transfer-Encoding") is None
        assert not c.is_closed(0.2)
        assert c.buffer == b""


def test_expect_100_continue(web):
    proxy, backend = web()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(
            build_request(
                "POST", "/", {"Host": "web", "Content-Length": "5", "Expect": "100-continue"}
            )
        )
        interim = c.read_response()
        assert interim.status == 100
        c.send(b"hello")
        final = c.read_final()
        assert final.status == 200
    assert backend.requests[0].body == b"hello"


def test_close_delimited_upstream_response_is_relayed_completely(web):
    data = os.urandom(300_000)
    proxy, _ = web(
        [b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n", data, CLOSE]
    )
    # an HTTP/1.1 client gets it chunked (or close-delimited), complete
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        r = c.read_final(timeout=5)
    assert sha(r.body) == sha(data)
    # an HTTP/1.0 client gets it as is, ended by the close
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}, version="HTTP/1.0"))
        raw, closed = c.read_until_close(5)
    assert closed
    r10 = parse_response(raw)
    assert r10.header("Transfer-Encoding") is None
    assert sha(r10.body) == sha(data)


def test_http10_client_gets_a_non_chunked_body(web):
    body = chunked_body([b"one ", b"two ", b"three"])
    proxy, _ = web(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}, version="HTTP/1.0"))
        raw, closed = c.read_until_close(5)
    assert closed
    r = parse_response(raw)
    assert r.version == "HTTP/1.0"
    assert r.header("Transfer-Encoding") is None
    assert r.body == b"one two three"


def test_http10_keep_alive_client(web):
    proxy, _ = web(http_response(200, b"ok"))
    with RawClient("127.0.0.1", proxy.port) as c:
        for _ in range(2):
            c.send(
                build_request(
                    "GET", "/", {"Host": "web", "Connection": "keep-alive"}, version="HTTP/1.0"
                )
            )
            r = c.read_final()
            assert (r.status, r.body) == (200, b"ok")
            assert r.header("Connection").lower() == "keep-alive"


def test_pipelined_requests_are_answered_in_order(web):
    def respond(req):
        delay = 0.3 if req.target == "/1" else 0.0  # the first is the slowest
        return [delay, http_response(200, req.target.encode())]

    proxy, backend = web(respond)
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(b"".join(build_request("GET", f"/{i}", {"Host": "web"}) for i in (1, 2, 3)))
        bodies = [c.read_final().body for _ in range(3)]
    assert bodies == [b"/1", b"/2", b"/3"]
    assert [r.target for r in backend.requests] == ["/1", "/2", "/3"]


def test_pipelined_post_bodies(web):
    proxy, backend = web()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(
            build_request("POST", "/a", {"Host": "web"}, b"first")
            + build_request(
                "POST",
                "/b",
                {"Host": "web", "Transfer-Encoding": "chunked"},
                chunked_body([b"second"]),
            )
            + build_request("GET", "/c", {"Host": "web"})
        )
        statuses = [c.read_final().status for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert [(r.target, r.body) for r in backend.requests] == [
        ("/a", b"first"),
        ("/b", b"second"),
        ("/c", b""),
    ]


def test_bytes_after_a_connection_close_request_are_ignored(web):
    proxy, backend = web()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(
            build_request("GET", "/1", {"Host": "web"}, close=True)
            + build_request("GET", "/2", {"Host": "web"})
        )
        data, closed = c.read_until_close(3)
    assert closed
    r = parse_response(data)
    assert (r.status, r.body) == (200, b"backend /1\n")
    assert [q.target for q in backend.requests] == ["/1"]


def test_client_half_close_before_the_response_abandons_the_request(web):
    """A half-close cannot be told from a client that went away (nginx answers 499 and
    Finagle interrupts the request): the exchange ends and its endpoint connection closes."""
    proxy, backend = web(lambda req: [30.0, http_response(200, b"late")])
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/half", {"Host": "web"}))
        backend.wait_requests(1)
        c.sock.shutdown(socket.SHUT_WR)
        data, closed = c.read_until_close(5)
    assert closed and data == b""
    assert wait_until(lambda: all(conn.closed for conn in backend.connections), 5)


def test_transfer_codings_other_than_chunked_are_not_lost(web):
    compressed = gzip.compress(b"hello gzip")
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    proxy, _ = web(head + chunked_body([compressed]))
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        r = c.read_final()
    assert (
        r.status == 502
        or r.body == b"hello gzip"
        or "gzip" in (r.header("Transfer-Encoding") or "")
    )


def test_upstream_closing_an_idle_connection_is_noticed(web):
    def respond(req):
        return [http_response(200, b"ok"), 0.05, CLOSE]  # keep-alive, then close when idle

    proxy, backend = web(respond)
    for _ in range(3):
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
        assert wait_until(lambda: all(c.closed for c in backend.connections), 2)
    assert backend.connection_count == 3


def test_upstream_connection_close_response_is_not_reused(web):
    proxy, backend = web(http_response(200, b"ok", [("Connection", "close")]))
    for _ in range(3):
        r = http_request(proxy.port, headers={"Host": "web"})
        assert r.status == 200
        assert r.header("Connection") in (None, "close")  # hop-by-hop: not relayed as is
    assert backend.connection_count == 3


def test_early_response_before_the_request_body_ends_announces_the_close(web):
    proxy, _ = web(http_response(413, b"too big"), respond_after="head")
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(
            build_request("POST", "/", {"Host": "web", "Content-Length": "100000"}) + b"x" * 1000
        )
        r = c.read_final()
        assert (r.status, r.body) == (413, b"too big")
        assert c.is_closed(2)
    assert r.header("Connection") == "close"


def test_upstream_connections_are_reused(web):
    proxy, backend = web()
    for i in range(20):  # a new client connection each time
        assert http_request(proxy.port, "GET", f"/{i}", {"Host": "web"}).status == 200
    with RawClient("127.0.0.1", proxy.port) as c:  # and one client connection
        for i in range(20):
            c.send(build_request("POST", f"/{i}", {"Host": "web"}, b"x" * i))
            assert c.read_final().status == 200
    assert backend.request_count == 40
    assert backend.connection_count == 1


def test_bodyless_get_gets_no_framing_headers_upstream(web):
    proxy, backend = web()
    http_request(proxy.port, "GET", "/", {"Host": "web"})
    http_request(proxy.port, "DELETE", "/", {"Host": "web", "Content-Length": "0"})
    get, delete = backend.requests
    assert get.header("Transfer-Encoding") is None and get.header("Content-Length") is None
    assert delete.header("Content-Length") == "0"
    assert delete.header("Transfer-Encoding") is None
