"""Trace contexts: every wire format in and out, sampling decisions, span recording."""

from __future__ import annotations

import base64
import struct

import pytest
from turnout.tracing import (
    FLAG_SAMPLED,
    FLAG_SAMPLING_KNOWN,
    Span,
    TraceContext,
    Tracer,
    Tracing,
    l5d_encode,
)

TRACE = 0x463AC35C9F6413AD48485A3953BB6124
SPAN = 0xA2FB4A1D1A96D312
PARENT = 0x0020000000000001


class Collect(Tracer):
    def __init__(self, rate: float = 1.0, exports: bool = True) -> None:
        self.sample_rate = rate
        self.exports = exports
        self.spans: list[Span] = []

    def record(self, span: Span) -> None:
        self.spans.append(span)


def extract(**headers: str) -> TraceContext | None:
    pairs = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Tracing.extract(pairs)


def test_w3c_traceparent():
    ctx = extract(traceparent=f"00-{TRACE:032x}-{SPAN:016x}-01")
    assert ctx == TraceContext(TRACE, SPAN, None, True)
    assert extract(traceparent=f"00-{TRACE:032x}-{SPAN:016x}-00").sampled is False
    assert extract(traceparent="00-zz-11-01") is None
    assert extract(traceparent=f"00-{0:032x}-{SPAN:016x}-01") is None  # all-zero ids are invalid


def test_b3_multi_and_single():
    ctx = extract(
        x_b3_traceid=f"{TRACE:032x}",
        x_b3_spanid=f"{SPAN:016x}",
        x_b3_parentspanid=f"{PARENT:016x}",
        x_b3_sampled="1",
    )
    assert ctx == TraceContext(TRACE, SPAN, PARENT, True)
    assert extract(b3=f"{TRACE:032x}-{SPAN:016x}-1-{PARENT:016x}") == ctx
    short = extract(b3=f"{TRACE & (2**64 - 1):016x}-{SPAN:016x}")
    assert short is not None and short.trace_id == TRACE & (2**64 - 1) and short.sampled is None
    debug = extract(x_b3_traceid=f"{TRACE:032x}", x_b3_spanid=f"{SPAN:016x}", x_b3_flags="1")
    assert debug is not None and debug.debug and debug.sampled
    deny = extract(b3="0")
    assert deny is not None and deny.sampled is False and deny.span_id == 0


def test_l5d_ctx_trace_round_trip_and_finagle_layout():
    encoded = l5d_encode(TRACE, SPAN, PARENT, True)
    raw = base64.b64decode(encoded)
    span, parent, low, flags, high = struct.unpack(">QQQQQ", raw)
    assert (span, parent, low, high) == (SPAN, PARENT, TRACE & (2**64 - 1), TRACE >> 64)
    assert flags == FLAG_SAMPLING_KNOWN | FLAG_SAMPLED
    assert extract(l5d_ctx_trace=encoded.decode()) == TraceContext(TRACE, SPAN, PARENT, True)
    # a 64-bit trace id gives Finagle's 32-byte form
    assert len(base64.b64decode(l5d_encode(5, 6, 7, None))) == 32
    assert extract(l5d_ctx_trace="not base64!") is None


def test_preference_order():
    l5d = l5d_encode(1, 2, 3, True).decode()
    ctx = extract(l5d_ctx_trace=l5d, traceparent=f"00-{TRACE:032x}-{SPAN:016x}-01")
    assert ctx is not None and ctx.trace_id == 1  # linker-to-linker context first
    ctx = extract(traceparent=f"00-{TRACE:032x}-{SPAN:016x}-01", b3=f"{1:016x}-{2:016x}")
    assert ctx is not None and ctx.trace_id == TRACE


def test_l5d_sample_overrides_the_rate_of_a_new_trace():
    tracing = Tracing([Collect(rate=0.0)])
    unsampled = tracing.server(None)
    assert unsampled is not None and unsampled.tracers == []
    ctx = extract(l5d_sample="1.0")
    assert ctx is not None and ctx.sample_rate == 1.0
    sampled = tracing.server(ctx)
    assert sampled is not None and sampled.tracers == tracing.tracers


def test_a_new_trace_not_sampled_is_propagated_as_not_sampled():
    """Finagle sends its decision: the next proxy must not start a trace of its own in the
    middle of this one (and record the rest of a request whose start nobody recorded)."""
    tracing = Tracing([Collect(rate=0.0)])
    trace = tracing.server(None)
    assert trace is not None and trace.tracers == [] and trace.propagate_sampled is False
    block = tracing.client_headers(trace).decode()
    assert "x-b3-sampled: 0\r\n" in block and block.endswith("-00\r\n")
    downstream = Tracing([Collect(rate=1.0)])
    names = [line.split(": ", 1) for line in block.strip().split("\r\n")]
    incoming = Tracing.extract((n.encode(), v.encode()) for n, v in names)
    assert incoming is not None and incoming.trace_id == trace.context.trace_id
    assert downstream.server(incoming) is None  # the decision wins, even at rate 1.0
    # with only local tracers nothing is decided, and nothing is added to the request
    assert Tracing([Collect(rate=0.0, exports=False)]).server(None) is None


def test_upstream_decision_wins():
    tracing = Tracing([Collect(rate=0.0)])
    sampled = extract(traceparent=f"00-{TRACE:032x}-{SPAN:016x}-01")
    trace = tracing.server(sampled)
    assert trace is not None and trace.shared and trace.context.span_id == SPAN
    not_sampled = extract(traceparent=f"00-{TRACE:032x}-{SPAN:016x}-00")
    assert Tracing([Collect(rate=1.0)]).server(not_sampled) is None


def test_consistent_sampling_by_trace_id():
    tracer = Collect(rate=0.25)
    ids = [i * 0x9E3779B97F4A7C15 % 2**64 for i in range(1, 4001)]
    first = [tracer.wants(i) for i in ids]
    assert first == [tracer.wants(i) for i in ids]  # the same answer every time
    assert 0.2 < sum(first) / len(first) < 0.3


def test_client_headers_carry_a_child_span_in_every_format():
    tracing = Tracing([Collect()])
    trace = tracing.server(extract(x_b3_traceid=f"{TRACE:032x}", x_b3_spanid=f"{SPAN:016x}"))
    assert trace is not None
    block = tracing.client_headers(trace)
    headers = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if line)
    child = trace.client_span
    assert child not in (0, SPAN)
    assert headers[b"x-b3-traceid"] == f"{TRACE:032x}".encode()
    assert headers[b"x-b3-spanid"] == f"{child:016x}".encode()
    assert headers[b"x-b3-parentspanid"] == f"{SPAN:016x}".encode()
    assert headers[b"x-b3-sampled"] == b"1"
    assert headers[b"traceparent"] == f"00-{TRACE:032x}-{child:016x}-01".encode()
    again = Tracing.extract([(b"l5d-ctx-trace", headers[b"l5d-ctx-trace"])])
    assert again == TraceContext(TRACE, child, SPAN, True)


def test_a_local_tracer_does_not_force_sampling_downstream():
    local = Collect(rate=1.0, exports=False)
    trace = Tracing([local]).server(None)
    assert trace is not None and trace.propagate_sampled is None
    block = Tracing([local]).client_headers(trace)
    # no decision to pass on: W3C cannot say "undecided" (00 means "not sampled", which
    # would make an OpenTelemetry service drop the trace), so no traceparent at all
    assert b"x-b3-sampled" not in block and b"traceparent" not in block
    assert b"x-b3-traceid" in block and b"l5d-ctx-trace" in block


@pytest.mark.parametrize(
    "value",
    [
        f"00-0x{TRACE:030x}-{SPAN:016x}-01",  # int(x, 16) would take these
        f"00-{TRACE:032x}"[:20] + "_" + f"{TRACE:032x}"[17:] + f"-{SPAN:016x}-01",
        f"00-{TRACE:032X}-{SPAN:016x}-01",  # upper case
        f"zz-{TRACE:032x}-{SPAN:016x}-01",  # version not hex
        f"ff-{TRACE:032x}-{SPAN:016x}-01",  # version ff is invalid
        f"00-{TRACE:032x}-{SPAN:016x}-01-extra",  # version 00 has four fields
        f"00-{TRACE:032x}-{SPAN:016x}-zz",  # flags not hex
        f"00-{0:032x}-{SPAN:016x}-01",  # all-zero ids
        f"00-{TRACE:032x}-{0:016x}-01",
    ],
)
def test_invalid_traceparent_is_ignored(value):
    assert extract(traceparent=value) is None


def test_a_later_traceparent_version_may_carry_more_fields():
    ctx = extract(traceparent=f"01-{TRACE:032x}-{SPAN:016x}-01-more")
    assert ctx is not None and ctx.trace_id == TRACE and ctx.sampled is True


@pytest.mark.parametrize(
    "value",
    [
        f"{TRACE:032x}-{SPAN:016x}-x",  # sampling field must be 0, 1 or d
        f"{TRACE:032x}-{SPAN:016x}-1-nothex0000000000",
        f"{TRACE:032x}-{SPAN:016x}-1-{SPAN:016x}-more",
        f"+{TRACE:031x}-{SPAN:016x}",
    ],
)
def test_invalid_b3_single_is_ignored(value):
    assert extract(b3=value) is None


def test_l5d_ctx_trace_root_span_has_no_parent():
    """Finagle gives a root span itself as parent; it is not its own parent."""
    raw = base64.b64encode(struct.pack(">QQQQ", SPAN, SPAN, TRACE & (2**64 - 1), 6))
    ctx = extract(l5d_ctx_trace=raw.decode())
    assert ctx is not None and ctx.span_id == SPAN and ctx.parent_id is None
    zero = base64.b64encode(struct.pack(">QQQQ", SPAN, 0, 0, 6))
    assert extract(l5d_ctx_trace=zero.decode()) is None


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_record_goes_to_the_tracers_that_wanted_the_trace(rate):
    everything, maybe = Collect(1.0), Collect(rate)
    tracing = Tracing([everything, maybe])
    trace = tracing.server(None)
    assert trace is not None
    span = Span(1, 2, None, "GET", "SERVER", 0, 10, "http")
    tracing.record(trace, span)
    assert everything.spans == [span]
    assert maybe.spans == ([span] if rate else [])
