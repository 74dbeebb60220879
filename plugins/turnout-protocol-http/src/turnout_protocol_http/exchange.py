"""One request/response pair (:class:`Exchange`), and the constants of the data path.

An :class:`Exchange` carries a request from the downstream parser (downstream.py) to an
upstream connection (upstream.py) and back; the stack (:mod:`turnout.router.stack`) sees it as
a :class:`~turnout.router.stack.Call`. The kinds of header names (``H_*``) are shared by the
parsers of both directions; each keeps its own tables of names next to the code that reads
them (a dict imported from another module would cost a bound method per ``.get`` in the pure
build: CPython compiles ``imported_name.get(...)`` without its method-call shortcut).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from . import wire
from ._stack import Call

if TYPE_CHECKING:
    from .downstream import ServerProtocol
    from .upstream import UpstreamProtocol

# Module constants are ``Final``: the compiled build then reads them from C statics (or inlines
# them) instead of looking them up in the module's dict on every use.
CRLF: Final = wire.CRLF
VIA_TOKEN: Final = wire.VIA_TOKEN
#: the clock of the data path (Final: no module-dict lookup per call in the compiled build)
monotonic: Final = time.monotonic

HIGH_WATER: Final = 65536  # 64 KB
VIA_LINE: Final = b"Via: " + VIA_TOKEN + CRLF

# exchange states
HEAD: Final = 0
BODY: Final = 1

# the kind of a header name, as the parsers classify it (downstream.py for requests, upstream.py
# and heads.py for responses): names handled specially...
H_HOST: Final = 0
H_TE: Final = 1
H_CL: Final = 2
H_VIA: Final = 3
H_CONNECTION: Final = 4
H_EXPECT: Final = 5
H_DROP: Final = 6
H_MAX_FORWARDS: Final = 11  # kept aside: TRACE and OPTIONS decrement it (RFC 9110 §7.6.2)
H_UPGRADE: Final = 12  # hop-by-hop, kept aside: a WebSocket upgrade is forwarded (tunnel.py)
# ... and the kinds of the other names
H_PLAIN: Final = 7  # forwarded as is
H_L5D: Final = 8  # l5d-*
H_PROXY: Final = 9  # proxy-*: dropped
H_AMBIGUOUS: Final = 10  # an underscore spelling of a framing header: refused

#: the parsers cache the kind of a header name by its spelling as received (so that a request
#: pays neither ``lower()`` nor the tests per header): at most this many names per cache...
NAMES_LIMIT: Final = 4096
#: ... and longer names are classified each time rather than cached (the caches stay small)
NAME_CACHED: Final = 64


class Exchange(Call):
    """One request/response pair travelling through the proxy: the core request stack's
    :class:`~turnout.router.stack.Call` plus the HTTP/1.1 framing state.

    A plain class with class-level defaults: creating one sets only what differs per request.
    """

    # request
    method = b""
    target = b""
    version = b"1.1"
    host: bytes | None = None
    host_count = 0
    content_length: bytes | None = None
    te_count = 0
    chunked = False
    has_body = False
    expect_continue = False
    #: turnout sent ``100 Continue`` for this request (it answers Expect itself, as nginx)
    continue_sent = False
    max_forwards: bytes | None = None
    #: TRACE or OPTIONS with ``Max-Forwards: 0``: turnout answers it
    final_recipient = False
    #: the ``Upgrade`` header received (not forwarded), and whether a WebSocket upgrade was
    #: asked upstream (see tunnel.py)
    upgrade: bytes | None = None
    websocket = False
    keep_alive = True
    via: list[bytes] | None = None
    connection: list[bytes] | None = None
    dtab_ctx: list[bytes] | None = None
    dtab_user: list[bytes] | None = None
    trailers: list[tuple[bytes, bytes]] | None = None
    state = HEAD
    request_complete = False
    pending_body: list[bytes] | None = None
    pending_bytes = 0
    request_bytes = 0
    head_size = 0  # bytes of header fields so far (limit: maxHeadersKB)
    # routing
    upstream: UpstreamProtocol | None = None
    counted = False
    head_only = False
    # response
    response_chunked = False
    response_close = False
    response_bytes = 0
    retryable_header = False
    # retries and timeouts
    #: a copy of the request body, kept while it is small enough to send again (retries)
    replay: list[bytes] | None = None
    #: housekeeping (HttpRouter.sweep): body bytes moved either way at the last sweep, and
    #: since when that count has not changed (request body and response idle timeouts)
    seen = -1
    quiet_since = 0.0

    def __init__(self, conn: ServerProtocol, start: float) -> None:
        self.conn = conn
        self.start = start
        #: forwarded header lines, ready to write (``b"Name: value\r\n"``), and their
        #: lower-cased names in the same order
        self.lines: list[bytes] = []
        self.lnames: list[bytes] = []

    # -- what identifiers read -------------------------------------------------------------
    def header(self, lname: bytes) -> bytes | None:
        if lname == b"host":
            return self.host
        try:
            i = self.lnames.index(lname)
        except ValueError:
            return None
        return self.lines[i][len(lname) + 1 : -2].strip()

    def add(self, lname: bytes, name: bytes, value: bytes) -> None:
        self.lines.append(name + b": " + value + CRLF)
        self.lnames.append(lname)
