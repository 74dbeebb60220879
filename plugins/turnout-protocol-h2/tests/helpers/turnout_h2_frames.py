"""Raw HTTP/2 frames on a socket, for the conformance and abuse tests: :func:`frame` builds
any frame (valid or not), :class:`Peer` sends them to a server and collects what it answers
(acknowledging its SETTINGS)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x9

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web"), (b":path", b"/")]


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([ftype, flags])
        + struct.pack(">I", sid)
        + payload
    )


def headers(
    sid: int, block: list[tuple[bytes, bytes]] | bytes, flags: int = END_HEADERS | END_STREAM
) -> bytes:
    data = block if isinstance(block, bytes) else hpack.Encoder().encode(block)
    return frame(HEADERS, flags, sid, data)


def settings(*pairs: tuple[int, int], flags: int = 0, sid: int = 0) -> bytes:
    return frame(SETTINGS, flags, sid, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


class Peer:
    """A raw client connection: preface and SETTINGS sent, frames parsed as they come."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(PREFACE + settings())
        self.buf = b""
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def until(self, pred: Any, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if pred(self):
                return True
            if self.closed or time.monotonic() > deadline:
                return False
            self.sock.settimeout(0.1)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                self.closed = True
                continue
            if not data:
                self.closed = True
                continue
            self.buf += data
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                self.frames.append((ftype, flags, sid, self.buf[9 : 9 + length]))
                if ftype == SETTINGS and not flags & ACK:
                    self.send(settings(flags=ACK))
                self.buf = self.buf[9 + length :]

    def goaway(self) -> int | None:
        for ftype, _, _, payload in self.frames:
            if ftype == GOAWAY:
                return int.from_bytes(payload[4:8], "big")
        return None

    def rst(self, sid: int) -> int | None:
        for ftype, _, fsid, payload in self.frames:
            if ftype == RST_STREAM and fsid == sid:
                return int.from_bytes(payload[:4], "big")
        return None

    def responded(self, sid: int) -> bool:
        return any(f[0] == HEADERS and f[2] == sid for f in self.frames)

    def close(self) -> None:
        self.sock.close()
