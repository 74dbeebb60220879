"""A raw HTTP/2 client over a socket (the `h2` package for HPACK and frames): for what
grpcio, curl and nghttp will not send (grpc-timeout without a client deadline, abuse)."""

from __future__ import annotations

import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import hyperframe.frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RawClient:
    """``h2`` client state on a real socket; :meth:`events` reads until a condition holds."""

    def __init__(self, port: int, window: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.seen: list[Any] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, headers: list[tuple[bytes, bytes]], body: bytes | None = None) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            size = self.conn.max_outbound_frame_size
            chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
            for i, chunk in enumerate(chunks):
                self.conn.send_data(sid, chunk, end_stream=i == len(chunks) - 1)
        self.flush()
        return sid

    def read(self, until: Any, timeout: float = 10.0) -> list[Any]:
        """Events until ``until(events so far)`` is true, the connection closes or the
        timeout passes (then whatever was seen)."""
        deadline = time.monotonic() + timeout
        while not until(self.seen) and not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                self.seen += self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            self.flush()
        return self.seen

    def raw_frames(self, timeout: float = 5.0) -> list[hf.Frame]:
        """Read raw frames (no state machine) until the connection closes."""
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(0.2)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
        frames = []
        off = 0
        while off + 9 <= len(buf):
            f, length = hf.Frame.parse_frame_header(memoryview(buf[off : off + 9]))
            if off + 9 + length > len(buf):
                break
            f.parse_body(memoryview(buf[off + 9 : off + 9 + length]))
            frames.append(f)
            off += 9 + length
        return frames

    def close(self) -> None:
        self.sock.close()


def of(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def ended(sid: int) -> Any:
    return lambda events: any(
        isinstance(e, h2.events.StreamEnded | h2.events.StreamReset) and e.stream_id == sid
        for e in events
    )


def grpc_frame(message: bytes) -> bytes:
    return b"\0" + len(message).to_bytes(4, "big") + message
