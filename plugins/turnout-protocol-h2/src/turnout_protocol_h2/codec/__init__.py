"""The HTTP/2 codec: a sans-I/O interface (:mod:`.interface`, :mod:`.events`) and its
libnghttp2 binding (:mod:`.nghttp2`). The router imports from here only, so the binding can
be swapped."""

from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    Headers,
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
    H2Session,
    StreamClosedError,
)
from .nghttp2 import ClientSession, ServerSession

__all__ = [
    "BufferFullError",
    "ClientSession",
    "CodecError",
    "ConnectionTerminated",
    "DataReceived",
    "DataSource",
    "ErrorCode",
    "Event",
    "GoAwayReceived",
    "H2Options",
    "H2Session",
    "Headers",
    "InformationalResponseReceived",
    "PingAcked",
    "RequestReceived",
    "ResponseReceived",
    "ServerSession",
    "SettingsReceived",
    "StreamClosed",
    "StreamClosedError",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
]
