"""Abuse that real HTTP/2 servers defend against, sent to a running turnout over a socket:
each is limited and counted in the metrics (``rt/h2/server/<ip>/<port>/h2/<case>``), the
connection ends with a GOAWAY carrying the right code, and nothing reaches the backend that
should not. (The codec's own tests check the same limits without sockets.)"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import hpack
import pytest
from turnout.testing import wait_until
from turnout_h2_frames import (
    CONTINUATION,
    END_HEADERS,
    END_STREAM,
    GET,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    Peer,
    frame,
    settings,
)
from turnout_h2_grpc import GrpcClient
from turnout_h2_rawclient import RawClient, grpc_frame

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7


def metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=10) as r:
        values: dict[str, Any] = json.load(r)
        return values


def counter(proxy: Any, name: str) -> int:
    return int(metrics(proxy).get(f"rt/h2/server/127.0.0.1/{proxy.port}/h2/{name}", 0))


@pytest.fixture
def web(nginx_backend: Any) -> Any:
    return nginx_backend("web", http2=True, access_log=True)


@pytest.fixture
def connect() -> Any:
    """``connect(proxy)``: a :class:`Peer` that has the server's SETTINGS (closed after the
    test)."""
    peers: list[Peer] = []

    def open_one(proxy: Any) -> Peer:
        peer = Peer(proxy.port)
        peers.append(peer)
        assert peer.until(lambda p: any(f[0] == SETTINGS for f in p.frames))
        return peer

    yield open_one
    for peer in peers:
        peer.close()


def test_rapid_reset(h2_proxy, web, connect):
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    peer = connect(proxy)
    enc = hpack.Encoder()
    wire = b""
    for i in range(3000):
        sid = 1 + 2 * i
        wire += frame(HEADERS, END_HEADERS, sid, enc.encode(GET))
        wire += frame(RST_STREAM, 0, sid, b"\0\0\0\x08")
    peer.send(wire)
    assert peer.until(lambda p: p.goaway() is not None, timeout=20), peer.frames[-3:]
    assert peer.goaway() == ENHANCE_YOUR_CALM
    assert wait_until(lambda: counter(proxy, "rapid_reset") == 1, timeout=10)
    # the burst allowance (1000) at most was seen; the rest never became requests
    time.sleep(0.5)
    assert len(web.requests()) <= 1001


def test_continuation_flood(h2_proxy, web, connect):
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    peer = connect(proxy)
    block = hpack.Encoder().encode([*GET, *[(b"x-%d" % i, b"v" * 20) for i in range(60)]])
    wire = frame(HEADERS, END_STREAM, 1, block[:10])
    rest = block[10:]
    for i in range(0, len(rest), 10):
        last = i + 10 >= len(rest)
        wire += frame(CONTINUATION, END_HEADERS if last else 0, 1, rest[i : i + 10])
    peer.send(wire)
    assert peer.until(lambda p: p.goaway() is not None)
    assert peer.goaway() == ENHANCE_YOUR_CALM
    assert wait_until(lambda: counter(proxy, "continuation_flood") == 1, timeout=10)
    assert web.requests() == []


def test_hpack_bomb(h2_proxy, web, connect):
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    peer = connect(proxy)
    enc = hpack.Encoder()
    big = (b"x-bomb", b"a" * 2000)
    bomb = frame(HEADERS, END_HEADERS | END_STREAM, 1, enc.encode([*GET, big]))
    bomb += frame(HEADERS, END_HEADERS | END_STREAM, 3, enc.encode([*GET, *[big] * 300]))
    assert len(bomb) < 5000  # ~600 KB once decoded
    peer.send(bomb)
    assert peer.until(lambda p: p.goaway() is not None)
    assert peer.goaway() == ENHANCE_YOUR_CALM
    assert wait_until(lambda: counter(proxy, "header_list_too_large") == 1, timeout=10)
    time.sleep(0.3)
    assert len(web.requests()) <= 1  # (stream 1, 2 KB of headers, is a fair request)


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_control_frame_flood(h2_proxy, web, kind, connect):
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    peer = connect(proxy)
    one = settings() if kind == "settings" else frame(PING, 0, 0, b"12345678")
    peer.send(one * 3000)
    assert peer.until(lambda p: p.goaway() is not None, timeout=20)
    assert peer.goaway() == ENHANCE_YOUR_CALM
    assert wait_until(lambda: counter(proxy, "control_flood") == 1, timeout=10)
    acks = [f for f in peer.frames if f[0] in (PING, SETTINGS)]
    assert len(acks) <= 1100


def test_too_many_concurrent_streams(h2_proxy, grpc_backend, connect):
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
        server={"maxConcurrentStreamsPerConnection": 2},
    )
    peer = connect(proxy)
    # (connect() acknowledged the server's SETTINGS: the limit is known to apply)
    enc = hpack.Encoder()
    grpc = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"t"),
        (b":path", b"/test.Echo/Slow"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    wire = b""
    for sid in (1, 3, 5):
        wire += frame(HEADERS, END_HEADERS, sid, enc.encode(grpc))
        wire += frame(0, END_STREAM, sid, grpc_frame(b"3"))
    peer.send(wire)
    assert peer.until(lambda p: p.rst(5) is not None or p.goaway() is not None)
    # nghttp2 refuses the third stream, and once the client has acknowledged the limit
    # (we did) ends the connection (RFC 9113 §5.1.2 allows PROTOCOL_ERROR)
    assert peer.rst(5) == REFUSED_STREAM or peer.goaway() == PROTOCOL_ERROR, peer.frames
    assert wait_until(lambda: counter(proxy, "too_many_streams") == 1, timeout=10)
    time.sleep(0.5)
    assert backend.calls["Slow"] <= 2  # the refused stream never reached the backend


def test_zero_window_stall_is_reset(h2_proxy, grpc_backend, connect):
    """A client that opens its window to nothing: the stream is reset after sendTimeoutMs
    and the endpoint's stream cancelled; turnout holds no more than a window meanwhile."""
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
        server={"sendTimeoutMs": 1500},
    )
    raw = RawClient(proxy.port, window=0)
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"t"),
        (b":path", b"/test.Echo/ServerStream"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    sid = raw.request(headers, grpc_frame(b"1000:1000"))
    events = raw.read(
        lambda ev: any(
            getattr(e, "stream_id", 0) == sid and type(e).__name__ == "StreamReset" for e in ev
        ),
        timeout=15,
    )
    assert any(type(e).__name__ == "StreamReset" for e in events), events
    assert wait_until(lambda: counter(proxy, "stalled_streams") == 1, timeout=10)
    # and the connection still serves
    with GrpcClient(proxy.port) as client:
        assert client.unary("Unary", b"x", timeout=10) == b"cat:x"
    raw.close()


def test_a_client_that_stops_reading_its_socket_is_closed(h2_proxy, grpc_backend, connect):
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
        server={"sendTimeoutMs": 1500, "initialStreamWindowBytes": 16 << 20},
    )
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    enc = hpack.Encoder()
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"t"),
        (b":path", b"/test.Echo/Big"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    # our window: 16 MB for the stream and the connection (SETTINGS + WINDOW_UPDATE)
    sock.sendall(
        PREFACE
        + settings((4, (16 << 20)))
        + frame(8, 0, 0, (16 << 20).to_bytes(4, "big"))
        + frame(HEADERS, END_HEADERS, 1, enc.encode(headers))
        + frame(0, END_STREAM, 1, grpc_frame(str(48 << 20).encode()))
    )
    # never read: the socket buffers (several MB on loopback) fill, turnout's transport
    # pauses, then gives up
    assert wait_until(lambda: counter(proxy, "stalled_connections") == 1, timeout=20)
    sock.close()
