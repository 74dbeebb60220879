"""Helpers: the `h2` package as the raw-frame peer of a codec session, no sockets."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
import hyperframe.frame as hf
from turnout_protocol_h2.codec import ClientSession, Event, H2Options, ServerSession

REQ = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"example.test"),
    (b":path", b"/hello"),
    (b"user-agent", b"test"),
    (b"accept", b"*/*"),
]


def grpc_request(path: bytes = b"/pkg.Svc/Call") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"svc.test"),
        (b":path", path),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]


class ServerPair:
    """Our ServerSession and an h2 client; move bytes with to_server()/to_client()."""

    def __init__(self, options: H2Options | None = None, client_window: int | None = None):
        self.server = ServerSession(options)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(cfg)
        self.client.initiate_connection()
        if client_window is not None:
            self.client.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: client_window}
            )
        self.handshake()

    def handshake(self) -> None:
        self.to_server()
        self.to_client()
        self.to_server()

    def to_server(self, extra: bytes = b"") -> list[Event]:
        return self.server.feed(self.client.data_to_send() + extra)

    def to_client(self) -> list[Any]:
        data = self.server.data_to_send()
        return self.client.receive_data(data) if data else []

    def roundtrip(self) -> tuple[list[Event], list[Any]]:
        """Until quiet: everything the server saw and everything the client saw."""
        s_ev: list[Event] = []
        c_ev: list[Any] = []
        for _ in range(100):
            got_s = self.to_server()
            s_ev += got_s
            got_c = self.to_client()
            c_ev += got_c
            s_ev += self.server.events()
            if not got_s and not got_c and not self.client.data_to_send(0):
                break
        return s_ev, c_ev


class ClientPair:
    """Our ClientSession and an h2 server."""

    def __init__(self, options: H2Options | None = None):
        self.client = ClientSession(options)
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.server = h2.connection.H2Connection(cfg)
        self.server.initiate_connection()
        self.to_server()
        self.to_client()
        self.to_server()

    def to_server(self) -> list[Any]:
        data = self.client.data_to_send()
        return self.server.receive_data(data) if data else []

    def to_client(self) -> list[Event]:
        return self.client.feed(self.server.data_to_send())


def frame_bytes(*frames: hf.Frame) -> bytes:
    return b"".join(f.serialize() for f in frames)


def raw_headers(
    enc: hpack.Encoder, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool = True
) -> bytes:
    f = hf.HeadersFrame(stream_id)
    f.data = enc.encode(headers)
    f.flags.add("END_HEADERS")
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()


def of(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def goaway(events: list[Any]) -> Any:
    got = of(events, h2.events.ConnectionTerminated)
    assert got, f"no GOAWAY in {events}"
    return got[-1]


def parse_frames(data: bytes) -> list[hf.Frame]:
    """Frames in server output (no HPACK decoding), for checks the h2 state machine
    would refuse to make (e.g. DATA after a GOAWAY)."""
    frames = []
    off = 0
    while off + 9 <= len(data):
        f, length = hf.Frame.parse_frame_header(memoryview(data[off : off + 9]))
        f.parse_body(memoryview(data[off + 9 : off + 9 + length]))
        frames.append(f)
        off += 9 + length
    assert off == len(data), "truncated frame"
    return frames


def goaways(frames: list[hf.Frame]) -> list[hf.GoAwayFrame]:
    return [f for f in frames if isinstance(f, hf.GoAwayFrame)]


def window_update(stream_id: int, n: int) -> bytes:
    f = hf.WindowUpdateFrame(stream_id)
    f.window_increment = n
    return f.serialize()
