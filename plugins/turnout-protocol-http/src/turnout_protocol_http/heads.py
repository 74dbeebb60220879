"""Response heads: which response headers need a decision (:data:`RESPONSE_SPECIAL`), the head
sent downstream (:func:`response_head_bytes`: status line, end-to-end headers, framing,
``Via``), :class:`BadResponse` for a response turnout will not relay; and request ids."""

from __future__ import annotations

import binascii
import random
from typing import TYPE_CHECKING, Final

from .exchange import (
    CRLF,
    H_CL,
    H_CONNECTION,
    H_DROP,
    H_TE,
    H_VIA,
    VIA_LINE,
    VIA_TOKEN,
    Exchange,
)
from .wire import HOP_BY_HOP, connection_tokens, reason

if TYPE_CHECKING:
    from .upstream import UpstreamProtocol

getrandbits: Final = random.getrandbits
hexlify: Final = binascii.hexlify

#: response headers handled specially (the others are forwarded, unless l5d-/proxy- rules apply)
RESPONSE_SPECIAL: Final = {
    b"content-length": H_CL,
    b"transfer-encoding": H_TE,
    b"via": H_VIA,
    b"connection": H_CONNECTION,
    **{
        h: H_DROP
        for h in HOP_BY_HOP
        if h not in (b"content-length", b"transfer-encoding", b"connection")
    },
}
_PLAIN_CONNECTION: Final = frozenset({b"close", b"keep-alive"})


class BadResponse(Exception):
    """An upstream response turnout will not relay (raised in parser callbacks: 502)."""


def request_id() -> bytes:
    # (the same 16 hex digits as ``b"%016x" % getrandbits(64)``, without bytes formatting)
    return hexlify(getrandbits(64).to_bytes(8, "big"))


#: status lines by (version, status, reason): formatting one costs more than a lookup
_STATUS_LINES: Final[dict[tuple[bytes, int, bytes], bytes]] = {}


def _status_line(version: bytes, status: int, reason_phrase: bytes) -> bytes:
    key = (version, status, reason_phrase)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/%s %d %s\r\n" % key
        if len(reason_phrase) <= 64:  # (reason phrases come from upstreams: keep it small)
            if len(_STATUS_LINES) > 1000:
                _STATUS_LINES.clear()
            _STATUS_LINES[key] = line
    return line


def response_head_bytes(
    ex: Exchange, up: UpstreamProtocol, status: int, clear_context: bool
) -> bytes:
    """The head sent downstream: status line, end-to-end headers, framing, Via.

    (Builds it in ``up.lines``, whose first item is the status line's place.)"""
    version = ex.version
    phrase = up.reason
    if status == up.sl_status and version is up.sl_version and phrase == up.sl_reason:
        head = up.sl_line  # (the same status line as this connection's last response)
    else:
        head = _status_line(version, status, phrase or reason(status))
        up.sl_status = status
        up.sl_version = version
        up.sl_reason = phrase
        up.sl_line = head
    content_length = up.content_length
    chunked = False
    te_codings: bytes | None = None  # codings before the final "chunked" (gzip...)
    via: bytes | None = None
    extra: list[bytes] | None = None
    lines = up.lines
    special = up.special
    if special is not None:
        extra = []
        remove: set[bytes] = set()
        for lname, name, value in special:
            kind = RESPONSE_SPECIAL.get(lname)
            if kind == H_TE:
                codings = [c.strip() for c in value.lower().split(b",") if c.strip()]
                chunked = bool(codings) and codings[-1] == b"chunked"
                if chunked and len(codings) > 1:
                    if ex.version != b"1.1":
                        raise BadResponse(
                            "the response has transfer codings an HTTP/1.0 client cannot take"
                        )
                    te_codings = b", ".join(codings[:-1])
            elif kind == H_VIA:
                via = value if via is None else via + b", " + value
            elif kind == H_CONNECTION:
                if value.lower() not in _PLAIN_CONNECTION:
                    remove |= connection_tokens([value]) - _PLAIN_CONNECTION
            elif lname[:4] == b"l5d-":
                if lname == b"l5d-retryable":
                    ex.retryable_header = value.strip().lower() == b"true"
                if not clear_context:
                    extra.append(name + b": " + value + CRLF)
            # the other special headers are hop-by-hop: dropped
        if remove:  # the Connection header named more headers to drop
            lines = up.lines = [b""] + [
                x for x in lines[1:] if x[: x.index(b":")].lower() not in remove
            ]
            extra = [x for x in extra if x[: x.index(b":")].lower() not in remove]
        if extra:
            lines += extra
    lines[0] = head
    lines.append(b"Via: " + via + b", " + VIA_TOKEN + CRLF if via else VIA_LINE)
    if ex.head_only or status == 204 or status == 304:
        if content_length is not None and ex.head_only:
            lines.append(b"Content-Length: ")
            lines.append(content_length)
            lines.append(CRLF)
        up.eof_ends_body = False
    elif content_length is not None and not chunked:
        lines.append(b"Content-Length: ")
        lines.append(content_length)
        lines.append(CRLF)
    elif version == b"1.1":
        # chunked upstream, or a body delimited by the upstream closing: chunk it downstream
        if te_codings is not None:  # the body stays in its other codings; only chunking is redone
            lines += (b"Transfer-Encoding: ", te_codings, b", chunked\r\n")
        else:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        ex.response_chunked = True
        up.eof_ends_body = not chunked
    else:
        ex.response_close = True  # HTTP/1.0 client: the body ends when we close
        up.eof_ends_body = not chunked
    if ex.conn.router.draining or not ex.request_complete:
        # shutting down, or answered before the request body ended: the connection ends here
        ex.keep_alive = False
    if not ex.keep_alive or ex.response_close:
        lines.append(b"Connection: close\r\n")
        ex.response_close = True
    elif version == b"1.0":
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(CRLF)
    return b"".join(lines)
