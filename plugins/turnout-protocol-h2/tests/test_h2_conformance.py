"""Conformance of the router's server side, written from RFC 9113 (HTTP/2) and RFC 7541
(HPACK) after h2spec's sections that apply to a proxy: a scripted client sends raw frame
sequences to a running turnout (over a real socket) and checks the error the RFC requires
(a connection error: GOAWAY with the code; a stream error: RST_STREAM with the code) or the
behaviour (PING answered, unknown frames ignored). A real h2c nginx is the backend; nothing
malformed may reach it."""

from __future__ import annotations

import struct
import time
from typing import Any

import hpack
import pytest
from turnout.testing import wait_until
from turnout_h2_frames import (
    ACK,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GET,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY,
    PROTOCOL_ERROR,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    Peer,
    frame,
    headers,
    settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def router(tmp_path_factory: Any) -> Any:
    """One turnout (h2 router) in front of one h2c nginx for the whole module."""
    from turnout.testing import TurnoutProcess, free_port
    from turnout.testing.nginx import NginxBackend
    from turnout_h2_proxy import h2_config

    web = NginxBackend("web", http2=True, access_log=True, workdir=tmp_path_factory.mktemp("ng"))
    web.start()
    proc = TurnoutProcess(
        h2_config(f"/svc => /$/inet/127.0.0.1/{web.port}", free_port(), free_port()),
        workdir=tmp_path_factory.mktemp("turnout"),
    ).start()
    yield proc, web
    proc.kill()
    print(f"--- turnout log ---\n{proc.log()}")
    assert "Traceback" not in proc.log()
    proc.cleanup()
    web.stop()


def connection_error(code: int) -> Any:
    return ("goaway", code)


def stream_error(code: int, sid: int = 1) -> Any:
    return ("rst", code, sid)


_bad_hpack_index = frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80")  # index 0
_hpack_out_of_range = frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\x80\x01")
_table_update_too_big = frame(
    HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe1\xff\x03" + hpack.Encoder().encode(GET)
)

CASES: list[tuple[str, bytes, Any]] = [
    # §4.2 frame size
    (
        "4.2 DATA larger than SETTINGS_MAX_FRAME_SIZE",
        headers(1, GET, END_HEADERS) + frame(DATA, 0, 1, b"x" * 16385),
        connection_error(FRAME_SIZE_ERROR),
    ),
    # §4.3 header compression
    (
        "4.3 undecodable header block",
        frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"),
        connection_error(COMPRESSION_ERROR),
    ),
    # §5.1 stream states
    ("5.1 DATA on an idle stream", frame(DATA, 0, 1, b"x"), connection_error(PROTOCOL_ERROR)),
    (
        "5.1 RST_STREAM on an idle stream",
        frame(RST_STREAM, 0, 1, b"\0\0\0\x08"),
        connection_error(PROTOCOL_ERROR),
    ),
    (
        "5.1 WINDOW_UPDATE on an idle stream",
        frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\x01"),
        connection_error(PROTOCOL_ERROR),
    ),
    (
        "5.1 DATA on a half-closed (remote) stream",
        headers(1, GET) + frame(DATA, 0, 1, b"x"),
        ("either", STREAM_CLOSED, 1),
    ),
    # §5.1.1 stream identifiers
    ("5.1.1 even-numbered stream from a client", headers(2, GET), connection_error(PROTOCOL_ERROR)),
    # RFC 9113 asks for a connection error here; libnghttp2 ignores the HEADERS on purpose
    # (it cannot tell a late frame of a stream it closed from a new one: nghttp2's
    # session_on_request_headers_received). What a proxy must do holds: the stream is not
    # served, nothing reaches the backend, the connection goes on.
    (
        "5.1.1 stream id lower than a previous one",
        headers(5, GET) + headers(3, GET),
        ("ignored", 3),
    ),
    # §5.5 extensions
    (
        "5.5 unknown frame type is ignored",
        frame(0x20, 0, 0, b"hello") + frame(PING, 0, 0, b"p" * 8),
        ("ping", b"p" * 8),
    ),
    # §6.1 DATA
    ("6.1 DATA on stream 0", frame(DATA, 0, 0, b"x"), connection_error(PROTOCOL_ERROR)),
    (
        "6.1 DATA padding longer than the payload",
        headers(1, GET, END_HEADERS) + frame(DATA, PADDED, 1, b"\x05ab"),
        connection_error(PROTOCOL_ERROR),
    ),
    # §6.2 HEADERS
    ("6.2 HEADERS on stream 0", headers(0, GET), connection_error(PROTOCOL_ERROR)),
    (
        "6.2 HEADERS without END_HEADERS followed by another frame",
        frame(HEADERS, END_STREAM, 1, hpack.Encoder().encode(GET)) + frame(PING, 0, 0, b"\0" * 8),
        connection_error(PROTOCOL_ERROR),
    ),
    # §6.3 PRIORITY
    (
        "6.3 PRIORITY of 4 bytes",
        frame(PRIORITY, 0, 1, b"\0\0\0\0"),
        ("either", FRAME_SIZE_ERROR, 1),
    ),
    # §6.4 RST_STREAM
    (
        "6.4 RST_STREAM on stream 0",
        frame(RST_STREAM, 0, 0, b"\0\0\0\x08"),
        connection_error(PROTOCOL_ERROR),
    ),
    (
        "6.4 RST_STREAM of 3 bytes",
        headers(1, GET, END_HEADERS) + frame(RST_STREAM, 0, 1, b"\0\0\0"),
        connection_error(FRAME_SIZE_ERROR),
    ),
    # §6.5 SETTINGS
    (
        "6.5 SETTINGS ACK with a payload",
        settings((1, 4096), flags=ACK),
        connection_error(FRAME_SIZE_ERROR),
    ),
    ("6.5 SETTINGS on a stream", settings(sid=1), connection_error(PROTOCOL_ERROR)),
    (
        "6.5 SETTINGS length not a multiple of 6",
        frame(SETTINGS, 0, 0, b"\0\x01\0\0\0"),
        connection_error(FRAME_SIZE_ERROR),
    ),
    ("6.5.2 ENABLE_PUSH of 2", settings((2, 2)), connection_error(PROTOCOL_ERROR)),
    (
        "6.5.2 INITIAL_WINDOW_SIZE above 2^31-1",
        settings((4, 2**31)),
        connection_error(FLOW_CONTROL_ERROR),
    ),
    ("6.5.2 MAX_FRAME_SIZE below 16384", settings((5, 16383)), connection_error(PROTOCOL_ERROR)),
    ("6.5.2 MAX_FRAME_SIZE above 2^24-1", settings((5, 2**24)), connection_error(PROTOCOL_ERROR)),
    # §6.7 PING
    (
        "6.7 PING is answered with the same payload",
        frame(PING, 0, 0, b"12345678"),
        ("ping", b"12345678"),
    ),
    ("6.7 PING on a stream", frame(PING, 0, 1, b"12345678"), connection_error(PROTOCOL_ERROR)),
    ("6.7 PING of 6 bytes", frame(PING, 0, 0, b"123456"), connection_error(FRAME_SIZE_ERROR)),
    # §6.8 GOAWAY
    ("6.8 GOAWAY on a stream", frame(GOAWAY, 0, 1, b"\0" * 8), connection_error(PROTOCOL_ERROR)),
    # §6.9 WINDOW_UPDATE
    (
        "6.9 WINDOW_UPDATE of 0 on the connection",
        frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"),
        connection_error(PROTOCOL_ERROR),
    ),
    (
        "6.9 WINDOW_UPDATE of 0 on a stream",
        headers(1, GET, END_HEADERS) + frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\0"),
        ("either", PROTOCOL_ERROR, 1),
    ),
    (
        "6.9.1 connection window above 2^31-1",
        frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1)),
        connection_error(FLOW_CONTROL_ERROR),
    ),
    (
        "6.9.1 stream window above 2^31-1",
        headers(1, GET, END_HEADERS) + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1)),
        stream_error(FLOW_CONTROL_ERROR),
    ),
    # §6.10 CONTINUATION
    (
        "6.10 CONTINUATION without HEADERS",
        frame(CONTINUATION, END_HEADERS, 1, b"\x82"),
        connection_error(PROTOCOL_ERROR),
    ),
    # §8.1 / §8.2 HTTP message validation (stream errors; nothing reaches the backend)
    (
        "8.2 upper-case header name",
        headers(1, [*GET, (b"X-Upper", b"1")]),
        stream_error(PROTOCOL_ERROR),
    ),
    (
        "8.2.2 connection-specific header",
        headers(1, [*GET, (b"connection", b"keep-alive")]),
        stream_error(PROTOCOL_ERROR),
    ),
    (
        "8.2.2 TE other than trailers",
        headers(1, [*GET, (b"te", b"gzip")]),
        stream_error(PROTOCOL_ERROR),
    ),
    (
        "8.3 pseudo-header after a regular header",
        headers(1, [(b":method", b"GET"), (b"x", b"1"), (b":path", b"/"), (b":scheme", b"http")]),
        stream_error(PROTOCOL_ERROR),
    ),
    (
        "8.3.1 missing :path",
        headers(1, [(b":method", b"GET"), (b":scheme", b"http")]),
        stream_error(PROTOCOL_ERROR),
    ),
    (
        "8.3.1 duplicated :method",
        headers(1, [(b":method", b"GET"), *GET]),
        stream_error(PROTOCOL_ERROR),
    ),
    (
        "8.3.1 unknown pseudo-header",
        headers(1, [*GET, (b":foo", b"1")]),
        stream_error(PROTOCOL_ERROR),
    ),
    (
        "8.1.1 content-length that the DATA does not match",
        headers(1, [(b":method", b"POST"), *GET[1:], (b"content-length", b"5")], END_HEADERS)
        + frame(DATA, END_STREAM, 1, b"abc"),
        stream_error(PROTOCOL_ERROR),
    ),
    # RFC 7541 HPACK
    ("HPACK 6.1 indexed field with index 0", _bad_hpack_index, connection_error(COMPRESSION_ERROR)),
    (
        "HPACK 2.3.3 index beyond the tables",
        _hpack_out_of_range,
        connection_error(COMPRESSION_ERROR),
    ),
    (
        "HPACK 6.3 table size update above SETTINGS_HEADER_TABLE_SIZE",
        _table_update_too_big,
        connection_error(COMPRESSION_ERROR),
    ),
]


@pytest.mark.parametrize(("name", "wire", "expect"), CASES, ids=[c[0] for c in CASES])
def test_rfc_9113_and_7541(router: Any, name: str, wire: bytes, expect: Any) -> None:
    proc, web = router
    before = len(web.requests())
    peer = Peer(proc.port)
    try:
        peer.until(lambda p: any(f[0] == SETTINGS for f in p.frames))
        peer.send(wire)
        kind = expect[0]
        if kind == "goaway":
            assert peer.until(lambda p: p.goaway() is not None), (name, peer.frames)
            assert peer.goaway() == expect[1], (name, peer.frames)
            # and the connection is closed
            assert peer.until(lambda p: p.closed), name
        elif kind == "rst":
            sid = expect[2]
            assert peer.until(lambda p: p.rst(sid) is not None or p.goaway() is not None)
            assert peer.rst(sid) == expect[1], (name, peer.frames)
            assert not peer.responded(sid), name
            # the connection still works
            peer.send(frame(PING, 0, 0, b"still up"))
            assert peer.until(lambda p: any(f[0] == PING and f[3] == b"still up" for f in p.frames))
        elif kind == "either":  # a stream error, or the connection error RFC 9113 allows
            sid = expect[2]
            assert peer.until(lambda p: p.rst(sid) is not None or p.goaway() is not None)
            assert expect[1] in (peer.rst(sid), peer.goaway()), (name, peer.frames)
        elif kind == "ignored":
            sid = expect[1]
            peer.send(frame(PING, 0, 0, b"still up"))
            assert peer.until(lambda p: any(f[0] == PING and f[3] == b"still up" for f in p.frames))
            assert not peer.responded(sid), (name, peer.frames)
        elif kind == "ping":
            assert peer.until(
                lambda p: any(f[0] == PING and f[1] & ACK and f[3] == expect[1] for f in p.frames)
            ), (name, peer.frames)
            assert peer.goaway() is None
    finally:
        peer.close()
    if name.startswith(("8.", "HPACK", "4.3", "6.2")):
        time.sleep(0.1)
        assert len(web.requests()) == before, f"{name}: a malformed request reached the backend"


def test_a_valid_request_after_all_that(router: Any) -> None:
    proc, web = router
    peer = Peer(proc.port)
    peer.until(lambda p: any(f[0] == SETTINGS for f in p.frames))
    peer.send(headers(1, GET))
    assert peer.until(lambda p: any(f[0] == DATA and f[1] & END_STREAM for f in p.frames))
    body = b"".join(f[3] for f in peer.frames if f[0] == DATA)
    assert body == b"web /\n"
    peer.close()
    assert wait_until(lambda: len(web.requests()) >= 1)
