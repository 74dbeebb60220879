"""Events a codec session reports from :meth:`H2Session.feed` and :meth:`H2Session.events`.

Plain ``__slots__`` classes (cheap to build: one per header block, not one per header).
Headers are ``list[tuple[bytes, bytes]]`` in wire order, pseudo-headers first.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


class Event:
    """Base class of every codec event."""

    __slots__ = ()

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in names)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        names: tuple[str, ...] = self.__slots__
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in names
        )

    __hash__ = None  # type: ignore[assignment]  # mutable value objects


class RequestReceived(Event):
    """A request header block (server side)."""

    __slots__ = ("end_stream", "headers", "stream_id")

    def __init__(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream


class ResponseReceived(Event):
    """A final response header block (client side)."""

    __slots__ = ("end_stream", "headers", "stream_id")

    def __init__(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream


class InformationalResponseReceived(Event):
    """A 1xx response header block (client side)."""

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: Headers) -> None:
        self.stream_id = stream_id
        self.headers = headers


class TrailersReceived(Event):
    """A trailer block; it always ends the peer's side of the stream."""

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: Headers) -> None:
        self.stream_id = stream_id
        self.headers = headers


class DataReceived(Event):
    """Body bytes. Give the flow-control credit back with ``consume(stream_id, len(data))``
    once the bytes are taken (by the other side of the proxy), not before."""

    __slots__ = ("data", "end_stream", "stream_id")

    def __init__(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.end_stream = end_stream


class StreamReset(Event):
    """The peer sent RST_STREAM."""

    __slots__ = ("error_code", "stream_id")

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code


class StreamClosed(Event):
    """The codec has forgotten the stream (error_code 0: both sides ended normally;
    otherwise the RST_STREAM code sent or received, e.g. after the codec's own validation
    or a failing data source)."""

    __slots__ = ("error_code", "stream_id")

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code


class WindowUpdated(Event):
    """The peer granted send credit (stream_id 0: the connection). Time to send more."""

    __slots__ = ("delta", "stream_id")

    def __init__(self, stream_id: int, delta: int) -> None:
        self.stream_id = stream_id
        self.delta = delta


class SettingsReceived(Event):
    """The peer's SETTINGS (acknowledged automatically); send windows may have changed."""

    __slots__ = ()


class PingAcked(Event):
    """The answer to :meth:`H2Session.ping`."""

    __slots__ = ("opaque",)

    def __init__(self, opaque: bytes) -> None:
        self.opaque = opaque


class GoAwayReceived(Event):
    """The peer is going away; streams above ``last_stream_id`` were not processed
    (they close with REFUSED_STREAM and may be retried elsewhere)."""

    __slots__ = ("debug_data", "error_code", "last_stream_id")

    def __init__(self, last_stream_id: int, error_code: int, debug_data: bytes) -> None:
        self.last_stream_id = last_stream_id
        self.error_code = error_code
        self.debug_data = debug_data


class ConnectionTerminated(Event):
    """This side ended the connection (a GOAWAY with ``error_code`` is queued where it can
    still be sent): abuse, a protocol error, or a failing callback. Flush
    ``data_to_send()`` and close the socket."""

    __slots__ = ("error_code",)

    def __init__(self, error_code: int) -> None:
        self.error_code = error_code
