"""The codec interface the h2 router is written against (the binding is swappable).

Sans-I/O: :meth:`H2Session.feed` takes received bytes and returns events;
``submit_*``/``send_*`` queue frames and :meth:`H2Session.data_to_send` returns the bytes to
write. No sockets, no event loop, no threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from .events import Event


class ErrorCode(IntEnum):
    """HTTP/2 error codes (RFC 9113 §7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class CodecError(Exception):
    """A call the codec refused (bad state, bad header block, closed stream...)."""


class StreamClosedError(CodecError):
    """The stream is closed (or was never opened)."""


class BufferFullError(CodecError):
    """More bytes were queued on a stream than ``max_pending_stream_bytes``: the caller
    ignored :meth:`H2Session.send_window` (backpressure)."""


@dataclass(frozen=True, slots=True)
class H2Options:
    """Session options. The first five are Linkerd's h2 server/client options
    (``initialStreamWindowBytes`` ...); the rest are the abuse limits."""

    initial_stream_window_bytes: int = 65535
    initial_connection_window_bytes: int = 65535
    max_frame_bytes: int = 16384
    max_header_list_bytes: int = 8192
    max_concurrent_streams_per_connection: int = 1000
    #: RST_STREAM received (server): token bucket (burst, per second); beyond it, GOAWAY
    #: ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487)
    reset_rate_limit: tuple[int, int] = (1000, 33)
    #: SETTINGS and PING received: token bucket (burst, per second); beyond, ENHANCE_YOUR_CALM
    control_frame_rate_limit: tuple[int, int] = (1000, 100)
    #: CONTINUATION frames after one HEADERS (CVE-2024-28182); beyond, ENHANCE_YOUR_CALM
    max_continuations: int = 8
    #: SETTINGS/PING ACKs queued unsent (the peer does not read); beyond, ENHANCE_YOUR_CALM
    max_outbound_ack: int = 1000
    #: bytes a stream's data source may hold beyond what flow control let out
    max_pending_stream_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        def check(name: str, value: int, lo: int, hi: int) -> None:
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")

        check("initial_stream_window_bytes", self.initial_stream_window_bytes, 0, 2**31 - 1)
        check(
            "initial_connection_window_bytes",
            self.initial_connection_window_bytes,
            65535,
            2**31 - 1,
        )
        check("max_frame_bytes", self.max_frame_bytes, 16384, 2**24 - 1)
        check("max_header_list_bytes", self.max_header_list_bytes, 64, 2**24)
        check(
            "max_concurrent_streams_per_connection",
            self.max_concurrent_streams_per_connection,
            1,
            2**31 - 1,
        )
        for name in ("reset_rate_limit", "control_frame_rate_limit"):
            burst, rate = getattr(self, name)
            check(f"{name} burst", burst, 1, 2**32)
            check(f"{name} rate", rate, 0, 2**32)
        check("max_continuations", self.max_continuations, 0, 2**20)
        check("max_outbound_ack", self.max_outbound_ack, 1, 2**20)
        check("max_pending_stream_bytes", self.max_pending_stream_bytes, 1, 2**40)


class DataSource(Protocol):
    """A pull body source: ``read(n)`` returns up to ``n`` bytes, ``b""`` for "nothing yet"
    (the stream waits until :meth:`H2Session.resume`), or ``None`` for the end. An exception
    fails the stream (RST_STREAM INTERNAL_ERROR); it is kept in ``session.errors``."""

    def read(self, max_bytes: int) -> bytes | None: ...


class H2Session(Protocol):
    """What a server or client session offers (see ``nghttp2.ServerSession``)."""

    errors: list[BaseException]

    def feed(self, data: bytes) -> list[Event]: ...
    def events(self) -> list[Event]: ...
    def data_to_send(self, max_bytes: int = ...) -> bytes: ...
    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...
    def send_trailers(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> None: ...
    def send_window(self, stream_id: int) -> int: ...
    def pending(self, stream_id: int) -> int: ...
    def resume(self, stream_id: int) -> None: ...
    def consume(self, stream_id: int, n: int) -> None: ...
    def reset_stream(self, stream_id: int, error_code: int = ...) -> None: ...
    def ping(self, opaque: bytes = ...) -> None: ...
    def close(self, error_code: int = ...) -> None: ...
    def stats(self) -> dict[str, int]: ...
    @property
    def want_read(self) -> bool: ...
    @property
    def want_write(self) -> bool: ...
