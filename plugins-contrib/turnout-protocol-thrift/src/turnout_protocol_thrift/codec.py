"""Just enough Thrift to route a message: message headers, bounded struct walking, and the few
structs turnout writes itself (TApplicationException, Finagle's TTwitter headers).

Both of Linkerd's protocols are here: ``binary`` (TBinaryProtocol, strict and the old
non-strict message header) and ``compact`` (TCompactProtocol). Everything that reads works
on a ``bytes``-like buffer from a position and raises :class:`NeedMore` when the buffer ends
before the thing read does (a buffered transport then reads more), or :class:`Malformed` when
the bytes cannot be Thrift. Every length is checked against the buffer and against a limit,
and nesting is bounded, so a hostile message costs at most its own size to reject.
"""

from __future__ import annotations

import struct
from typing import Any, Final

#: message types (TMessageType)
CALL: Final = 1
REPLY: Final = 2
EXCEPTION: Final = 3
ONEWAY: Final = 4

#: TApplicationException types (the ``type`` field, 2)
UNKNOWN: Final = 0
UNKNOWN_METHOD: Final = 1
INTERNAL_ERROR: Final = 6
PROTOCOL_ERROR: Final = 7

#: Finagle's TTwitter upgrade probe (``ThriftTracing.CanTraceMethodName``)
CAN_TRACE: Final = "__can__finagle__trace__v3__"

#: the deepest nesting of structs and containers walked (Thrift's default recursion limit)
MAX_DEPTH: Final = 64

# binary type ids (TType)
T_STOP, T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64 = 0, 2, 3, 4, 6, 8, 10
T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST, T_UUID = 11, 12, 13, 14, 15, 16
_BINARY_FIXED: Final = {T_BOOL: 1, T_BYTE: 1, T_DOUBLE: 8, T_I16: 2, T_I32: 4, T_I64: 8, 16: 16}

# compact type ids
C_TRUE, C_FALSE, C_BYTE, C_I16, C_I32, C_I64, C_DOUBLE = 1, 2, 3, 4, 5, 6, 7
C_BINARY, C_LIST, C_SET, C_MAP, C_STRUCT, C_UUID = 8, 9, 10, 11, 12, 13
_TO_COMPACT: Final = {
    T_BOOL: C_TRUE,
    T_BYTE: C_BYTE,
    T_I16: C_I16,
    T_I32: C_I32,
    T_I64: C_I64,
    T_DOUBLE: C_DOUBLE,
    T_STRING: C_BINARY,
    T_LIST: C_LIST,
    T_SET: C_SET,
    T_MAP: C_MAP,
    T_STRUCT: C_STRUCT,
}
_FROM_COMPACT: Final = {v: k for k, v in _TO_COMPACT.items()} | {C_FALSE: T_BOOL, C_UUID: T_UUID}

_I32: Final = struct.Struct(">i")
_I16: Final = struct.Struct(">h")
_I64: Final = struct.Struct(">q")
_U32: Final = struct.Struct(">I")
_BINARY_VERSION: Final = 0x80010000
_COMPACT_ID: Final = 0x82
_COMPACT_VERSION: Final = 1


class NeedMore(Exception):
    """The buffer ends before what is being read does."""


class Malformed(Exception):
    """The bytes are not a Thrift message of the configured protocol (the message says why)."""


class Header:
    """A message header: name, type, seqid, and where the header ends in the buffer."""

    __slots__ = ("end", "mtype", "name", "seqid")

    def __init__(self, name: str, mtype: int, seqid: int, end: int) -> None:
        self.name = name
        self.mtype = mtype
        self.seqid = seqid
        self.end = end


# -- reading ----------------------------------------------------------------------------------
class Reader:
    """Reads one protocol from ``buf`` (up to ``limit``), position ``pos``."""

    def __init__(
        self, buf: bytes | bytearray | memoryview, pos: int, limit: int, compact: bool
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.limit = limit
        self.compact = compact

    def take(self, n: int) -> int:
        """Advance over ``n`` bytes; the position they start at."""
        if n < 0:
            raise Malformed(f"negative length {n}")
        start = self.pos
        end = start + n
        if end > self.limit_max:
            raise Malformed(f"the message is larger than the limit of {self.max_bytes} bytes")
        if end > self.limit:
            raise NeedMore
        self.pos = end
        return start

    #: the largest position a message may reach (``maxMessageBytes`` from its start)
    limit_max: int = 1 << 62
    max_bytes: int = 1 << 62

    def byte(self) -> int:
        return self.buf[self.take(1)]

    def i16(self) -> int:
        if self.compact:
            return _zigzag(self.varint())
        value: int = _I16.unpack_from(self.buf, self.take(2))[0]
        return value

    def i32(self) -> int:
        if self.compact:
            return _zigzag(self.varint())
        value: int = _I32.unpack_from(self.buf, self.take(4))[0]
        return value

    def i64(self) -> int:
        if self.compact:
            return _zigzag(self.varint())
        value: int = _I64.unpack_from(self.buf, self.take(8))[0]
        return value

    def varint(self) -> int:
        result = shift = 0
        for _ in range(10):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
        raise Malformed("a varint longer than 10 bytes")

    def size(self) -> int:
        n = self.varint() if self.compact else self.i32()
        if n < 0:
            raise Malformed(f"negative length {n}")
        return n

    def binary(self) -> bytes:
        n = self.size()
        start = self.take(n)
        return bytes(self.buf[start : start + n])

    def string(self) -> str:
        try:
            return self.binary().decode()
        except UnicodeDecodeError as e:
            raise Malformed(f"a string that is not UTF-8 ({e.reason})") from None

    # -- message header ---------------------------------------------------------------------
    def message_begin(self) -> Header:
        if self.compact:
            if self.byte() != _COMPACT_ID:
                raise Malformed("not a compact-protocol message (its first byte is not 0x82)")
            vt = self.byte()
            if vt & 0x1F != _COMPACT_VERSION:
                raise Malformed(f"compact protocol version {vt & 0x1F}, expected 1")
            mtype = vt >> 5
            seqid = self.varint()
            if seqid >= 1 << 31:
                seqid -= 1 << 32
            name = self.string()
        else:
            word: int = _U32.unpack_from(self.buf, self.take(4))[0]
            if word & 0x80000000:
                if word & 0xFFFF0000 != _BINARY_VERSION:
                    raise Malformed(f"binary protocol version {word >> 16:#x}, expected 0x8001")
                mtype = word & 0xFF
                name = self.string()
            else:  # the old non-strict header: [4]len name [1]type
                start = self.take(word)
                try:
                    name = bytes(self.buf[start : start + word]).decode()
                except UnicodeDecodeError:
                    raise Malformed("a message name that is not UTF-8") from None
                mtype = self.byte()
            seqid = self.i32()
        if mtype not in (CALL, REPLY, EXCEPTION, ONEWAY):
            raise Malformed(f"message type {mtype} (expected 1 to 4)")
        return Header(name, mtype, seqid, self.pos)

    # -- walking -------------------------------------------------------------------------------
    def skip_struct(self, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise Malformed(f"structs nested deeper than {MAX_DEPTH}")
        last = 0
        while True:
            ftype, last = self.field_begin(last)
            if ftype == T_STOP:
                return
            self.skip(ftype, depth + 1)

    def field_begin(self, last: int) -> tuple[int, int]:
        """The next field's (binary type id, field id); type T_STOP at the end. A compact
        bool's value is in its type: the reader keeps it in :attr:`bool_value`."""
        if self.compact:
            b = self.byte()
            if b == 0:
                return T_STOP, last
            ctype = b & 0x0F
            delta = b >> 4
            fid = last + delta if delta else self.i16()
            ttype = _FROM_COMPACT.get(ctype)
            if ttype is None:
                raise Malformed(f"compact field type {ctype}")
            if ttype == T_BOOL:
                self.bool_value = ctype == C_TRUE
                self.bool_pending = True
            return ttype, fid
        ttype = self.byte()
        if ttype == T_STOP:
            return T_STOP, last
        fid = self.i16()
        return ttype, fid

    bool_value = False
    bool_pending = False

    def skip(self, ttype: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Malformed(f"values nested deeper than {MAX_DEPTH}")
        if ttype == T_BOOL:
            if self.compact and self.bool_pending:
                self.bool_pending = False
            else:
                self.take(1)
        elif ttype in (T_BYTE, T_UUID, T_DOUBLE) or (not self.compact and ttype in _BINARY_FIXED):
            self.take(_BINARY_FIXED[ttype])
        elif ttype in (T_I16, T_I32, T_I64):  # (compact: varints)
            self.varint()
        elif ttype == T_STRING:
            self.take(self.size())
        elif ttype == T_STRUCT:
            self.skip_struct(depth)
        elif ttype in (T_LIST, T_SET):
            etype, n = self.list_begin()
            self.skip_many(etype, n, depth)
        elif ttype == T_MAP:
            ktype, vtype, n = self.map_begin()
            for _ in range(n):
                self.skip(ktype, depth + 1)
                self.skip(vtype, depth + 1)
        else:
            raise Malformed(f"field type {ttype}")

    def skip_many(self, etype: int, n: int, depth: int) -> None:
        fixed = _BINARY_FIXED.get(etype)
        if fixed is not None and (not self.compact or etype in (T_BOOL, T_BYTE, T_DOUBLE, T_UUID)):
            self.take(fixed * n)  # (one bounds check for the whole run)
            return
        for _ in range(n):
            self.skip(etype, depth + 1)

    def list_begin(self) -> tuple[int, int]:
        if self.compact:
            b = self.byte()
            n = b >> 4
            if n == 15:
                n = self.size()
            etype = _FROM_COMPACT.get(b & 0x0F)
            if etype is None:
                raise Malformed(f"compact element type {b & 0x0F}")
        else:
            etype = self.byte()
            n = self.i32()
            if n < 0:
                raise Malformed(f"negative list size {n}")
        self._plausible(n)
        return etype, n

    def map_begin(self) -> tuple[int, int, int]:
        if self.compact:
            n = self.size()
            if n == 0:
                return T_STOP, T_STOP, 0
            b = self.byte()
            k, v = _FROM_COMPACT.get(b >> 4), _FROM_COMPACT.get(b & 0x0F)
            if k is None or v is None:
                raise Malformed(f"compact map types {b:#x}")
        else:
            k, v = self.byte(), self.byte()
            n = self.i32()
            if n < 0:
                raise Malformed(f"negative map size {n}")
        self._plausible(n)
        return k, v, n

    def _plausible(self, n: int) -> None:
        # every element takes at least one byte on the wire except compact bools in none;
        # a count beyond the size limit cannot be honest
        if n > self.limit_max - self.pos:
            raise Malformed(f"a container of {n} elements runs past the message size limit")

    # -- decoding (TTwitter headers) --------------------------------------------------------------
    def value(self, ttype: int, depth: int) -> Any:
        """A value as Python data: a struct is ``{field id: value}``, a list a list."""
        if depth > MAX_DEPTH:
            raise Malformed(f"values nested deeper than {MAX_DEPTH}")
        if ttype == T_BOOL:
            if self.compact and self.bool_pending:
                self.bool_pending = False
                return self.bool_value
            return self.byte() != 0
        if ttype == T_BYTE:
            return self.byte()
        if ttype in (T_I16, T_I32, T_I64):
            if ttype == T_I16:
                return self.i16()
            return self.i32() if ttype == T_I32 else self.i64()
        if ttype == T_STRING:
            return self.binary()
        if ttype == T_STRUCT:
            fields: dict[int, Any] = {}
            last = 0
            while True:
                ftype, last = self.field_begin(last)
                if ftype == T_STOP:
                    return fields
                fields[last] = (ftype, self.value(ftype, depth + 1))
        if ttype in (T_LIST, T_SET):
            etype, n = self.list_begin()
            return [self.value(etype, depth + 1) for _ in range(n)]
        self.skip(ttype, depth)
        return None


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def message_end(
    buf: bytes | bytearray | memoryview,
    start: int,
    max_bytes: int,
    compact: bool,
    header_struct: bool = False,
) -> tuple[Header, int, int]:
    """Delimit one message of a buffered transport starting at ``start``: its header, where the
    message proper starts (after a TTwitter ``RequestHeader``/``ResponseHeader`` struct when
    ``header_struct``), and where it ends. :class:`NeedMore` when ``buf`` holds only part of
    it; :class:`Malformed` when it cannot be Thrift or passes ``max_bytes``."""
    r = Reader(buf, start, len(buf), compact)
    r.limit_max = start + max_bytes
    r.max_bytes = max_bytes
    if header_struct:
        r.skip_struct()
    body = r.pos
    head = r.message_begin()
    r.skip_struct()
    return head, body, r.pos


def read_header(
    payload: bytes | memoryview, compact: bool, skip_header_struct: bool = False
) -> tuple[Header, int]:
    """The message header of a whole (framed) payload, and where the message starts (after a
    TTwitter header struct when ``skip_header_struct``). Anything short is :class:`Malformed`."""
    r = Reader(payload, 0, len(payload), compact)
    try:
        if skip_header_struct:
            r.skip_struct()
        body = r.pos
        return r.message_begin(), body
    except NeedMore:
        raise Malformed("the frame ends inside the message header") from None


def decode_struct(payload: bytes | memoryview, compact: bool) -> tuple[dict[int, Any], int]:
    """A struct as ``{field id: (type, value)}`` and where it ends (TTwitter headers)."""
    r = Reader(payload, 0, len(payload), compact)
    try:
        value = r.value(T_STRUCT, 0)
    except NeedMore:
        raise Malformed("the request header struct is cut short") from None
    return value, r.pos


# -- writing ------------------------------------------------------------------------------------
class Writer:
    """Writes one protocol into a bytearray."""

    def __init__(self, compact: bool) -> None:
        self.compact = compact
        self.out = bytearray()
        self._last: list[int] = [0]

    def varint(self, n: int) -> None:
        n &= (1 << 64) - 1
        while n > 0x7F:
            self.out.append((n & 0x7F) | 0x80)
            n >>= 7
        self.out.append(n)

    def i32(self, n: int) -> None:
        if self.compact:
            self.varint((n << 1) ^ (n >> 31))
        else:
            self.out += _I32.pack(n)

    def i64(self, n: int) -> None:
        if n >= 1 << 63:
            n -= 1 << 64
        if self.compact:
            self.varint((n << 1) ^ (n >> 63))
        else:
            self.out += _I64.pack(n)

    def binary(self, data: bytes) -> None:
        if self.compact:
            self.varint(len(data))
        else:
            self.out += _I32.pack(len(data))
        self.out += data

    def message_begin(self, name: str, mtype: int, seqid: int) -> None:
        if self.compact:
            self.out.append(_COMPACT_ID)
            self.out.append((mtype << 5) | _COMPACT_VERSION)
            self.varint(seqid & 0xFFFFFFFF)
            self.binary(name.encode())
        else:
            self.out += _U32.pack(_BINARY_VERSION | mtype)
            self.binary(name.encode())
            self.out += _I32.pack(seqid)

    def field(self, ttype: int, fid: int, bool_value: bool = False) -> None:
        if self.compact:
            ctype = _TO_COMPACT[ttype]
            if ttype == T_BOOL:
                ctype = C_TRUE if bool_value else C_FALSE
            delta = fid - self._last[-1]
            if 0 < delta <= 15:
                self.out.append((delta << 4) | ctype)
            else:
                self.out.append(ctype)
                self.varint((fid << 1) ^ (fid >> 15))
            self._last[-1] = fid
        else:
            self.out.append(ttype)
            self.out += _I16.pack(fid)
            if ttype == T_BOOL:
                self.out.append(1 if bool_value else 0)

    def struct_begin(self) -> None:
        self._last.append(0)

    def struct_end(self) -> None:
        self.out.append(T_STOP)
        self._last.pop()

    def list_begin(self, etype: int, n: int) -> None:
        if self.compact:
            ctype = _TO_COMPACT[etype]
            if n < 15:
                self.out.append((n << 4) | ctype)
            else:
                self.out.append(0xF0 | ctype)
                self.varint(n)
        else:
            self.out.append(etype)
            self.out += _I32.pack(n)


def exception_message(name: str, seqid: int, kind: int, message: str, compact: bool) -> bytes:
    """An EXCEPTION message carrying a TApplicationException (1: message, 2: type)."""
    w = Writer(compact)
    w.message_begin(name, EXCEPTION, seqid)
    w.struct_begin()
    w.field(T_STRING, 1)
    w.binary(message.encode())
    w.field(T_I32, 2)
    w.i32(kind)
    w.struct_end()
    return bytes(w.out)


def application_exception(
    payload: bytes | memoryview, start: int, compact: bool
) -> tuple[int, str] | None:
    """The (type, message) of the TApplicationException in an EXCEPTION message body that
    starts at ``start`` (None when it is not one)."""
    r = Reader(payload, start, len(payload), compact)
    try:
        fields = r.value(T_STRUCT, 0)
    except (NeedMore, Malformed):
        return None
    kind = fields.get(2, (0, UNKNOWN))[1]
    text = fields.get(1, (0, b""))[1]
    if not isinstance(kind, int) or not isinstance(text, bytes):
        return None
    return kind, text.decode(errors="replace")


def empty_struct_call(name: str, mtype: int, seqid: int, compact: bool) -> bytes:
    """A message whose body is an empty struct (the upgrade probe, its reply)."""
    w = Writer(compact)
    w.message_begin(name, mtype, seqid)
    w.struct_begin()
    w.struct_end()
    return bytes(w.out)


def empty_struct(compact: bool) -> bytes:
    """An empty struct: a ``ResponseHeader`` with no spans and no contexts."""
    return b"\x00"


def request_header(
    compact: bool,
    trace_id: int,
    span_id: int,
    parent_id: int | None,
    sampled: bool | None,
    flags: int,
    dest: str,
    delegations: list[tuple[str, str]],
    trace_id_high: int = 0,
) -> bytes:
    """Finagle's ``RequestHeader`` (tracing.thrift) as TTwitterClientFilter writes it."""
    w = Writer(compact)
    w.struct_begin()
    w.field(T_I64, 1)
    w.i64(trace_id)
    w.field(T_I64, 2)
    w.i64(span_id)
    if parent_id is not None:
        w.field(T_I64, 3)
        w.i64(parent_id)
    if sampled is not None:
        w.field(T_BOOL, 5, sampled)
    w.field(T_I64, 7)
    w.i64(flags)
    w.field(T_STRING, 9)
    w.binary(dest.encode())
    if delegations:
        w.field(T_LIST, 10)
        w.list_begin(T_STRUCT, len(delegations))
        for src, dst in delegations:
            w.struct_begin()
            w.field(T_STRING, 1)
            w.binary(src.encode())
            w.field(T_STRING, 2)
            w.binary(dst.encode())
            w.struct_end()
    if trace_id_high:
        w.field(T_I64, 11)
        w.i64(trace_id_high)
    w.struct_end()
    return bytes(w.out)
