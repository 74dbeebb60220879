"""The in-house binding: libnghttp2 through a small C shim compiled with cffi (API mode).

One cffi call per :meth:`feed` (plus one to take the event log), one per submitted header
block (the block travels as one NUL-joined byte string), one per :meth:`data_to_send`.
Python code runs inside nghttp2 only for a :class:`~.interface.DataSource`; an exception
there fails the stream (``Exception``) or the connection (anything else, through cffi's
``onerror``), and is kept in ``session.errors``: never printed and dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain
from types import TracebackType
from typing import Any

from ._nghttp2 import ffi, lib
from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    InformationalResponseReceived,
    PingAcked,
    RequestReceived,
    ResponseReceived,
    SettingsReceived,
    StreamClosed,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .interface import (
    BufferFullError,
    CodecError,
    DataSource,
    ErrorCode,
    H2Options,
    StreamClosedError,
)

__all__ = ["ClientSession", "ServerSession"]

_REC = struct.Struct("=BBxxiII")
_REC_SIZE = _REC.size
_unpack_rec = _REC.unpack_from
(EV_HEADERS, EV_DATA, EV_RST, EV_CLOSED, EV_WINDOW, EV_SETTINGS, EV_PING_ACK, EV_GOAWAY,
 EV_TERMINATED) = range(1, 10)  # fmt: skip
KIND_REQUEST, KIND_RESPONSE, KIND_INFORMATIONAL, KIND_TRAILERS = range(4)
STAT_NAMES = (
    "streams_opened",
    "streams_closed",
    "live_streams",
    "rapid_reset",
    "continuation_flood",
    "control_flood",
    "header_list_too_large",
    "too_many_streams",
    "callback_errors",
    "goaway_sent_code",
    "goaway_sent",
    "pings_received",
    "settings_received",
    "rst_received",
    "rst_sent",
    "protocol_errors",
)
_LIVE = STAT_NAMES.index("live_streams")
_SEND_ALL = 1 << 62


@ffi.def_extern(  # type: ignore[untyped-decorator]  # cffi is untyped
    onerror=lambda et, ev, tb: _callback_escaped(ev, tb)
)
def _h2py_read(handle: Any, stream_id: int, buf: Any, length: int, eof: Any) -> int:
    session, source = ffi.from_handle(handle)
    try:
        data = source.read(length)
        if data is None:
            eof[0] = 1
            return 0
        n = len(data)
        if n > length:
            raise CodecError(f"data source returned {n} bytes, more than the {length} asked")
        ffi.memmove(buf, data, n)
        return n
    except Exception as exc:
        session.errors.append(exc)
        return int(lib.NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE)


def _callback_escaped(exc: BaseException | None, tb: TracebackType | None) -> int:
    """cffi's ``onerror``: a BaseException (or a failure before the try) escaped a callback.
    It is recorded on its session and fails the whole connection."""
    try:
        handle = tb.tb_frame.f_locals["handle"] if tb is not None else None
        session = ffi.from_handle(handle)[0] if handle is not None else None
    except Exception:
        session = None
    if exc is not None:
        (session.errors if session is not None else _orphan_errors).append(exc)
    return int(lib.NGHTTP2_ERR_CALLBACK_FAILURE)


#: exceptions from callbacks whose session could not be identified (should stay empty)
_orphan_errors: list[BaseException] = []


class _Session:
    _server = 0

    def __init__(self, options: H2Options | None = None) -> None:
        o = options or H2Options()
        self.options = o
        copt = ffi.new("h2s_options *")
        copt.initial_stream_window = o.initial_stream_window_bytes
        copt.initial_connection_window = o.initial_connection_window_bytes
        copt.max_frame = o.max_frame_bytes
        copt.max_header_list = o.max_header_list_bytes
        copt.max_concurrent_streams = o.max_concurrent_streams_per_connection
        copt.reset_burst, copt.reset_rate = o.reset_rate_limit
        copt.control_burst, copt.control_rate = o.control_frame_rate_limit
        copt.max_continuations = o.max_continuations
        copt.max_outbound_ack = o.max_outbound_ack
        copt.max_pending_stream_bytes = o.max_pending_stream_bytes
        s = lib.h2s_new(self._server, copt)
        if s == ffi.NULL:
            raise MemoryError("nghttp2 session could not be created")
        self._s = ffi.gc(s, lib.h2s_free)
        self._p = ffi.new("const char **")
        self._n = ffi.new("size_t *")
        self._stats = ffi.new("uint64_t[]", len(STAT_NAMES))
        self._sources: dict[int, Any] = {}  # stream id -> cffi handle of a Python DataSource
        self._draining = False
        self._final_goaway = False
        #: exceptions raised by Python code called from nghttp2 (data sources)
        self.errors: list[BaseException] = []

    # -- input ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Process received bytes; returns the events (and any queued since the last call)."""
        out: list[Event] = []
        total = len(data)
        rv = lib.h2s_feed_take(self._s, data, total, self._p, self._n)
        n = self._n[0]
        if n:
            self._parse(ffi.unpack(self._p[0], n), out)
        if 0 <= rv < total:  # the event log reached its cap: continue with the rest
            self._feed_rest(memoryview(data)[rv:], out)
        return out

    def _feed_rest(self, rest: memoryview, out: list[Event]) -> None:
        while rest:
            chunk = bytes(rest)
            rv = lib.h2s_feed_take(self._s, chunk, len(chunk), self._p, self._n)
            n = self._n[0]
            if n:
                self._parse(ffi.unpack(self._p[0], n), out)
            if rv < 0:
                return
            if rv == 0 and not n:
                raise CodecError("nghttp2 made no progress on received bytes")
            rest = rest[rv:]

    def events(self) -> list[Event]:
        """Events queued by sending (streams closed, a terminated connection) since the last
        :meth:`feed`."""
        out: list[Event] = []
        self._collect(out)
        return out

    def _collect(self, out: list[Event]) -> None:
        n = lib.h2s_take(self._s, self._p)
        if n:
            self._parse(ffi.unpack(self._p[0], n), out)

    def _parse(self, buf: bytes, out: list[Event]) -> None:
        n = len(buf)
        off = 0
        append = out.append
        while off < n:
            typ, flags, sid, code, ln = _unpack_rec(buf, off)
            off += _REC_SIZE
            end = off + ln
            if typ == EV_DATA:
                append(DataReceived(sid, buf[off:end], flags == 1))
            elif typ == EV_HEADERS:
                parts = buf[off:end].split(b"\0")  # validated by nghttp2: no NUL in a field
                hdrs = list(zip(parts[::2], parts[1::2]))  # noqa: B905  (even by construction)
                if code == KIND_REQUEST:
                    append(RequestReceived(sid, hdrs, flags == 1))
                elif code == KIND_RESPONSE:
                    append(ResponseReceived(sid, hdrs, flags == 1))
                elif code == KIND_TRAILERS:
                    append(TrailersReceived(sid, hdrs))
                else:
                    append(InformationalResponseReceived(sid, hdrs))
            elif typ == EV_CLOSED:
                if self._sources:
                    self._sources.pop(sid, None)
                append(StreamClosed(sid, code))
            elif typ == EV_RST:
                append(StreamReset(sid, code))
            elif typ == EV_WINDOW:
                append(WindowUpdated(sid, code))
            elif typ == EV_SETTINGS:
                append(SettingsReceived())
            elif typ == EV_PING_ACK:
                append(PingAcked(buf[off:end]))
            elif typ == EV_GOAWAY:
                append(GoAwayReceived(sid, code, buf[off:end]))
            elif typ == EV_TERMINATED:
                append(ConnectionTerminated(code))
            off = end

    # -- output --------------------------------------------------------------------------

    def data_to_send(self, max_bytes: int = _SEND_ALL) -> bytes:
        """The frames to write now (about ``max_bytes`` at most; call again for more)."""
        s = self._s
        if self._draining and not self._final_goaway:
            lib.h2s_stats(s, self._stats)
            if self._stats[_LIVE] == 0:
                self._final_goaway = True
                lib.h2s_terminate(s, ErrorCode.NO_ERROR)
        n = lib.h2s_send(s, max_bytes, self._p)
        if n <= 0:
            return b""
        data: bytes = ffi.unpack(self._p[0], n)
        return data

    def _submit(
        self,
        stream_id: int,
        kind: int,
        headers: Sequence[tuple[bytes, bytes]],
        end_stream: bool,
        source: DataSource | None,
    ) -> int:
        blob = b"\0".join(chain.from_iterable(headers))
        nfields = 2 * len(headers)
        if source is None or end_stream:
            rv: int = lib.h2s_submit_headers(
                self._s, stream_id, kind, blob, len(blob), nfields, end_stream, ffi.NULL
            )
            if rv < 0:
                _raise(rv, stream_id)
            return rv
        handle = ffi.new_handle((self, source))
        rv = lib.h2s_submit_headers(self._s, stream_id, kind, blob, len(blob), nfields, 0, handle)
        if rv < 0:
            _raise(rv, stream_id)
        # the handle must live as long as nghttp2 may call the source: until StreamClosed
        self._sources[rv if kind == KIND_REQUEST else stream_id] = handle
        return rv

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue body bytes on the stream's source; they go out as flow control allows.
        Send no more than :meth:`send_window` allows to keep nothing buffered here."""
        rv = lib.h2s_send_data(self._s, stream_id, data, len(data), end_stream)
        if rv:
            _raise(rv, stream_id)

    def end_stream(self, stream_id: int) -> None:
        """End the stream after what was queued (an empty DATA frame with END_STREAM)."""
        self.send_data(stream_id, b"", True)

    def send_trailers(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """End the stream with trailers, after the data already queued."""
        blob = b"\0".join(chain.from_iterable(headers))
        nfields = 2 * len(headers)
        rv = lib.h2s_submit_headers(
            self._s, stream_id, KIND_TRAILERS, blob, len(blob), nfields, 0, ffi.NULL
        )
        if rv:
            _raise(rv, stream_id)

    def send_window(self, stream_id: int) -> int:
        """Bytes that may be sent on the stream now, minus those already queued."""
        w: int = lib.h2s_send_window(self._s, stream_id)
        if w < 0:
            return 0
        pending: int = lib.h2s_pending(self._s, stream_id)
        return max(0, w - max(pending, 0))

    def pending(self, stream_id: int) -> int:
        """Bytes queued on the stream but not yet framed (-1: no such stream)."""
        n: int = lib.h2s_pending(self._s, stream_id)
        return n

    def resume(self, stream_id: int) -> None:
        """A :class:`DataSource` that returned ``b""`` has data again."""
        lib.h2s_resume(self._s, stream_id)

    def consume(self, stream_id: int, n: int) -> None:
        """Return ``n`` bytes of receive credit (WINDOW_UPDATE when worth sending)."""
        rv = lib.h2s_consume(self._s, stream_id, n)
        if rv:
            _raise(rv, stream_id)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCode.CANCEL) -> None:
        rv = lib.h2s_rst(self._s, stream_id, error_code)
        if rv:
            _raise(rv, stream_id)

    def ping(self, opaque: bytes = b"\0" * 8) -> None:
        if len(opaque) != 8:
            raise ValueError("a PING carries exactly 8 bytes")
        lib.h2s_ping(self._s, opaque)

    def start_shutdown(self) -> None:
        """Graceful shutdown: a server sends the shutdown notice (GOAWAY with the maximum
        stream id) now, and the final GOAWAY (NO_ERROR, the last stream processed) once every
        stream has ended, so that no DATA queued for a stream is cut off by it. Bound the
        drain yourself and call :meth:`close` when it runs out."""
        if not self._draining:
            self._draining = True
            lib.h2s_shutdown_notice(self._s)

    def close(self, error_code: int = ErrorCode.NO_ERROR) -> None:
        """GOAWAY now and stop; queued DATA of open streams may be cut off."""
        self._final_goaway = True
        lib.h2s_terminate(self._s, error_code)

    @property
    def want_read(self) -> bool:
        return bool(lib.h2s_want_read(self._s))

    @property
    def want_write(self) -> bool:
        return bool(lib.h2s_want_write(self._s))

    @property
    def is_finished(self) -> bool:
        """Nothing more to read or write: close the transport."""
        return not (lib.h2s_want_read(self._s) or lib.h2s_want_write(self._s))

    def remote_max_concurrent_streams(self) -> int:
        v: int = lib.h2s_remote_setting(self._s, lib.NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
        return v

    def stats(self) -> dict[str, int]:
        """Counters: streams, abuse cases (each ended the connection), GOAWAY sent..."""
        lib.h2s_stats(self._s, self._stats)
        return dict(zip(STAT_NAMES, self._stats, strict=True))


class ServerSession(_Session):
    """The server side of one connection (a client's requests)."""

    _server = 1

    def submit_response(
        self,
        stream_id: int,
        headers: Sequence[tuple[bytes, bytes]],
        end_stream: bool = False,
        source: DataSource | None = None,
    ) -> None:
        """Response headers. Without ``end_stream`` the body follows through
        :meth:`send_data` (or the pull ``source``)."""
        self._submit(stream_id, KIND_RESPONSE, headers, end_stream, source)

    def submit_informational(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """A 1xx response (e.g. 100 Continue)."""
        self._submit(stream_id, KIND_INFORMATIONAL, headers, False, None)


class ClientSession(_Session):
    """The client side of one connection (requests to a backend)."""

    _server = 0

    def submit_request(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        end_stream: bool = False,
        source: DataSource | None = None,
    ) -> int:
        """Request headers; returns the new stream id."""
        return self._submit(-1, KIND_REQUEST, headers, end_stream, source)

    @property
    def request_allowed(self) -> bool:
        """False once a GOAWAY came or the session ended: open a new connection."""
        return bool(lib.h2s_request_allowed(self._s))


def _raise(rv: int, stream_id: int) -> None:
    if rv == -1:
        raise CodecError(
            "malformed header block: names must be lower-case tokens (pseudo-headers "
            "':name'), values without NUL, CR or LF"
        )
    if rv == lib.NGHTTP2_ERR_STREAM_CLOSED:
        raise StreamClosedError(f"stream {stream_id} is closed")
    if rv == lib.NGHTTP2_ERR_BUFFER_ERROR:
        raise BufferFullError(
            f"stream {stream_id}: more than max_pending_stream_bytes queued; "
            "send no more than send_window() allows"
        )
    raise CodecError(f"stream {stream_id}: {ffi.string(lib.nghttp2_strerror(rv)).decode()}")
