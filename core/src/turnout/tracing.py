"""Distributed tracing: trace contexts, their wire formats, spans and tracers.

Protocols use :class:`Tracing` (the tracers of every configured telemeter, or None when no
telemeter traces: then a request costs one ``is None`` check). Per request:

1. :meth:`Tracing.extract` reads the caller's context from request headers: Linkerd's
   ``l5d-ctx-trace`` (Finagle's binary TraceId, base64), W3C ``traceparent``, B3 single
   (``b3``) or B3 multi (``x-b3-*``), in that order of preference; ``l5d-sample`` overrides
   the sample rate for a new trace.
2. :meth:`Tracing.server` decides whether the request is traced: the caller's decision when
   it made one, else each tracer's own rate applied to the trace id (the same trace id gives
   the same answer in every proxy, so a trace is recorded whole or not at all). Untraced
   requests keep their headers untouched.
3. :meth:`Tracing.client_headers` gives each attempt upstream a child span and the headers
   that carry it in every format (so that B3-only and W3C-only services both follow).
4. :meth:`Tracing.record` hands the finished server and client spans to the tracers.

Span ids are random 64-bit numbers; new trace ids are 128-bit (the high half is carried
where the format allows).
"""

from __future__ import annotations

import base64
import random
import re
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

_rand64: Callable[[int], int] = random.getrandbits

# Finagle TraceId flags (l5d-ctx-trace)
FLAG_DEBUG = 1
FLAG_SAMPLING_KNOWN = 2
FLAG_SAMPLED = 4

#: the request headers that carry a trace context (lower case)
TRACE_HEADERS = frozenset(
    {
        b"l5d-ctx-trace",
        b"l5d-sample",
        b"traceparent",
        b"b3",
        b"x-b3-traceid",
        b"x-b3-spanid",
        b"x-b3-parentspanid",
        b"x-b3-sampled",
        b"x-b3-flags",
    }
)


@dataclass(slots=True)
class TraceContext:
    """Where a request sits in a trace: ids and the sampling decision (None: not made)."""

    trace_id: int  # 128-bit (the high 64 bits may be 0)
    span_id: int
    parent_id: int | None = None
    sampled: bool | None = None
    debug: bool = False
    #: an ``l5d-sample`` rate for a new trace (0..1), or None
    sample_rate: float | None = None


@dataclass(slots=True)
class Span:
    """One finished span (Zipkin's model): times in microseconds since the epoch."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: str  # "SERVER" or "CLIENT"
    timestamp_us: int
    duration_us: int
    local_service: str
    remote_ip: str | None = None
    remote_port: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    #: a server span that shares its id with the caller's client span (Zipkin's "shared")
    shared: bool = False
    debug: bool = False
    error: str | None = None


class Tracer:
    """Receives spans (subclass it). ``sample_rate``: the share of new traces it wants.

    ``exports`` tells whether its spans leave the process (Zipkin, OTLP): only an exporting
    tracer's decision is propagated to the next hop as "sampled", so that a local tracer with
    a high rate (recentRequests) does not make every downstream proxy record everything.
    """

    sample_rate = 0.001
    exports = True

    def wants(self, trace_id: int, rate_override: float | None = None) -> bool:
        rate = self.sample_rate if rate_override is None else rate_override
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        # consistent sampling: the low 64 bits of the trace id as a fraction of 2**64
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < rate * 18446744073709551616.0

    def record(self, span: Span) -> None:
        raise NotImplementedError


@dataclass(slots=True)
class ServerTrace:
    """A traced request on the server side (kept on the exchange while it runs)."""

    context: TraceContext  # this hop's server span (its ids are the caller's client span)
    tracers: list[Tracer]
    start_us: int
    propagate_sampled: bool | None
    shared: bool
    #: the current attempt's client span: (span id, start µs)
    client_span: int = 0
    client_start_us: int = 0


class Tracing:
    """The tracers of a linker (see the module docstring)."""

    def __init__(self, tracers: Sequence[Tracer]) -> None:
        self.tracers = list(tracers)
        #: whether any tracer sends spans out of the process (its "no" is then propagated)
        self.exporting = any(t.exports for t in self.tracers)

    # -- extraction ------------------------------------------------------------------------
    @staticmethod
    def extract(headers: Iterable[tuple[bytes, bytes]]) -> TraceContext | None:
        """The caller's context from ``(lower-case name, value)`` pairs, or None."""
        found: dict[bytes, bytes] = {}
        for name, value in headers:
            if name in TRACE_HEADERS and name not in found:
                found[name] = value.strip()
        if not found:
            return None
        rate = _sample_rate(found.get(b"l5d-sample"))
        ctx = (
            _from_l5d(found.get(b"l5d-ctx-trace"))
            or _from_traceparent(found.get(b"traceparent"))
            or _from_b3_single(found.get(b"b3"))
            or _from_b3_multi(found)
        )
        if ctx is None:
            if rate is None:
                return None
            ctx = TraceContext(_new_trace_id(), _rand64(64))
        ctx.sample_rate = rate
        return ctx

    # -- the server side -------------------------------------------------------------------
    def server(self, incoming: TraceContext | None) -> ServerTrace | None:
        """Start tracing a request; None when the caller decided "not sampled" (its headers
        then travel on untouched) or when nothing here traces or exports.

        A request that no tracer samples still gets a trace (with no tracers) when a tracer
        exports: its "not sampled" decision and trace id go upstream, as Finagle does, so the
        next proxy does not start a trace of its own in the middle of this one."""
        if incoming is None or incoming.span_id == 0:
            ctx = TraceContext(
                incoming.trace_id if incoming is not None else _new_trace_id(),
                _rand64(64),
                None,
                incoming.sampled if incoming is not None else None,
                incoming.debug if incoming is not None else False,
                incoming.sample_rate if incoming is not None else None,
            )
            shared = False
        else:
            ctx = incoming
            shared = True
        if ctx.sampled is False and not ctx.debug:
            return None
        if ctx.sampled or ctx.debug:
            tracers = self.tracers
        else:
            tracers = [t for t in self.tracers if t.wants(ctx.trace_id, ctx.sample_rate)]
        if ctx.sampled is not None or ctx.debug:
            propagate: bool | None = bool(ctx.sampled or ctx.debug)
        elif any(t.exports for t in tracers):
            propagate = True
        elif self.exporting:
            propagate = False  # the exporting tracers said no: the whole trace is not recorded
        else:
            propagate = None  # only local tracers here: leave the decision to the next hop
        if not tracers and propagate is None:
            return None
        return ServerTrace(ctx, tracers, _now_us(), propagate, shared)

    @staticmethod
    def start_client(trace: ServerTrace) -> int:
        """Start an attempt's client span (the request stack does, for every attempt of a
        traced request); its id."""
        span = _rand64(64)
        trace.client_span = span
        trace.client_start_us = _now_us()
        return span

    def client_headers(self, trace: ServerTrace) -> bytes:
        """The header lines that carry the attempt's client span upstream (started here if
        :meth:`start_client` was not called)."""
        ctx = trace.context
        span = trace.client_span or self.start_client(trace)
        sampled = trace.propagate_sampled
        trace_hex = f"{ctx.trace_id:032x}" if ctx.trace_id >> 64 else f"{ctx.trace_id:016x}"
        lines = [
            b"l5d-ctx-trace: " + l5d_encode(ctx.trace_id, span, ctx.span_id, sampled, ctx.debug),
            f"x-b3-traceid: {trace_hex}".encode(),
            f"x-b3-spanid: {span:016x}".encode(),
            f"x-b3-parentspanid: {ctx.span_id:016x}".encode(),
        ]
        if ctx.debug:
            lines.append(b"x-b3-flags: 1")
        elif sampled is not None:
            lines.append(b"x-b3-sampled: 1" if sampled else b"x-b3-sampled: 0")
        if sampled is not None or ctx.debug:
            # W3C has no "not decided": flags 00 means "not sampled", which would make an
            # OpenTelemetry service drop a trace nobody decided about; so only a decision goes
            flags = "01" if sampled or ctx.debug else "00"
            lines.append(f"traceparent: 00-{ctx.trace_id:032x}-{span:016x}-{flags}".encode())
        return b"".join(line + b"\r\n" for line in lines)

    def record(self, trace: ServerTrace, span: Span) -> None:
        for tracer in trace.tracers:
            try:
                tracer.record(span)
            except Exception:  # a tracer must never break a request
                import logging

                logging.getLogger("turnout.tracing").exception("tracer %r failed", tracer)


# -- wire formats ---------------------------------------------------------------------------


def l5d_encode(
    trace_id: int, span_id: int, parent_id: int, sampled: bool | None, debug: bool = False
) -> bytes:
    """Finagle's TraceId as Linkerd sends it in ``l5d-ctx-trace`` (base64 of 32 bytes:
    span id, parent id, trace id, flags; 40 with the high half of a 128-bit trace id)."""
    flags = FLAG_DEBUG if debug else 0
    if sampled is not None:
        flags |= FLAG_SAMPLING_KNOWN | (FLAG_SAMPLED if sampled else 0)
    low, high = trace_id & 0xFFFFFFFFFFFFFFFF, trace_id >> 64
    raw = struct.pack(">QQQQ", span_id, parent_id, low, flags)
    if high:
        raw += struct.pack(">Q", high)
    return base64.b64encode(raw)


def _from_l5d(value: bytes | None) -> TraceContext | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    if len(raw) not in (32, 40):
        return None
    span, parent, low, flags = struct.unpack(">QQQQ", raw[:32])
    high = struct.unpack(">Q", raw[32:])[0] if len(raw) == 40 else 0
    sampled = bool(flags & FLAG_SAMPLED) if flags & FLAG_SAMPLING_KNOWN else None
    trace_id = (high << 64) | low
    if not trace_id or not span:
        return None
    # Finagle gives a root span itself as its parent
    parent_id = parent if parent and parent != span else None
    return TraceContext(trace_id, span, parent_id, sampled, bool(flags & FLAG_DEBUG))


_LOWER_HEX = re.compile(rb"[0-9a-f]+")
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def _hex(value: bytes | None, digits: tuple[int, ...]) -> int | None:
    """A non-zero id of lower-case hex digits of one of the lengths ``digits``, or None
    (``int(x, 16)`` alone would take ``0x``, ``+``, ``_`` and upper case)."""
    if value is None or len(value) not in digits or not _LOWER_HEX.fullmatch(value):
        return None
    return int(value, 16) or None


def _from_traceparent(value: bytes | None) -> TraceContext | None:
    """W3C Trace Context: ``version-traceid-parentid-flags``; version ``ff`` is invalid,
    version ``00`` has exactly these four fields, later versions may append ``-more``."""
    if not value:
        return None
    m = _TRACEPARENT.fullmatch(value)
    if m is None or m.group(1) == b"ff" or (m.group(1) == b"00" and m.group(5)):
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return TraceContext(trace_id, span_id, None, bool(int(m.group(4), 16) & 1))


def _sampled(value: bytes | None) -> tuple[bool | None, bool]:
    if value is None:
        return None, False
    v = value.lower()
    if v == b"d":
        return True, True
    if v in (b"1", b"true"):
        return True, False
    if v in (b"0", b"false"):
        return False, False
    return None, False


def _from_b3_single(value: bytes | None) -> TraceContext | None:
    if not value:
        return None
    parts = value.split(b"-")
    if len(parts) == 1:  # only a sampling decision: a new trace with it
        sampled, debug = _sampled(parts[0])
        if sampled is None:
            return None
        return TraceContext(_new_trace_id(), 0, None, sampled, debug)
    if len(parts) > 4:
        return None
    trace_id, span_id = _hex(parts[0], (16, 32)), _hex(parts[1], (16,))
    if trace_id is None or span_id is None:
        return None
    sampled, debug = _sampled(parts[2]) if len(parts) > 2 else (None, False)
    if len(parts) > 2 and sampled is None:  # only 0, 1 and d are allowed there
        return None
    parent = _hex(parts[3], (16,)) if len(parts) > 3 else None
    if len(parts) > 3 and parent is None:
        return None
    return TraceContext(trace_id, span_id, parent, sampled, debug)


def _from_b3_multi(found: dict[bytes, bytes]) -> TraceContext | None:
    trace_id = _hex(found.get(b"x-b3-traceid"), (16, 32))
    span_id = _hex(found.get(b"x-b3-spanid"), (16,))
    debug = found.get(b"x-b3-flags") == b"1"
    sampled, _ = _sampled(found.get(b"x-b3-sampled"))
    if trace_id is None or span_id is None:
        if sampled is None and not debug:
            return None
        return TraceContext(_new_trace_id(), 0, None, True if debug else sampled, debug)
    parent = _hex(found.get(b"x-b3-parentspanid"), (16,))
    return TraceContext(trace_id, span_id, parent, True if debug else sampled, debug)


def _sample_rate(value: bytes | None) -> float | None:
    if value is None:
        return None
    try:
        rate = float(value)
    except ValueError:
        return None
    return min(max(rate, 0.0), 1.0) if rate == rate else None


def _new_trace_id() -> int:
    return _rand64(128) or 1


def _now_us() -> int:
    return time.time_ns() // 1000
