"""The codec against thriftpy2's encoders and Finagle's ``tracing.thrift``."""

from __future__ import annotations

import contextlib
import io
import random

import pytest
import thriftpy2
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TMemoryBuffer
from turnout_protocol_thrift import codec

# the structs of Finagle's finagle-thrift/src/main/thrift/tracing.thrift that TTwitter uses
TRACING = """
struct ClientId { 1: string name }
struct RequestContext { 1: binary key, 2: binary value }
struct Delegation { 1: string src, 2: string dst }
struct RequestHeader {
  1: i64 trace_id, 2: i64 span_id, 3: optional i64 parent_span_id,
  5: optional bool sampled, 6: optional ClientId client_id, 7: optional i64 flags,
  8: list<RequestContext> contexts, 9: optional string dest,
  10: optional list<Delegation> delegations, 11: optional i64 trace_id_high
}
struct Inner { 1: list<string> a, 2: map<string, i64> m, 3: bool b, 4: double d,
  5: set<i32> s, 6: list<bool> lb, 7: list<Inner> nested, 300: i16 far }
service S { string call(1: string msg, 2: Inner inner, 3: i64 n) }
"""
tracing = thriftpy2.load_fp(io.StringIO(TRACING), module_name="tracing_thrift")
PROTOCOLS = [(TBinaryProtocolFactory(), False), (TCompactProtocolFactory(), True)]


def encode(factory, write) -> bytes:
    buf = TMemoryBuffer()
    write(factory.get_protocol(buf))
    data: bytes = buf.getvalue()
    return data


def sample_call(factory) -> bytes:
    inner = tracing.Inner(
        a=["x"] * 20,
        m={"k": 1 << 40},
        b=True,
        d=1.5,
        s={1, 2, 3},
        lb=[True, False] * 9,
        nested=[tracing.Inner(b=False, far=-3)],
        far=300,
    )

    def write(p):
        p.write_message_begin("call", 1, 77)  # (thriftpy2 compact loops on a negative seqid)
        tracing.S.call_args(msg="hi", inner=inner, n=-5).write(p)
        p.write_message_end()

    return encode(factory, write)


@pytest.mark.parametrize(("factory", "compact"), PROTOCOLS)
def test_a_message_is_delimited_by_walking_its_struct(factory, compact) -> None:
    data = sample_call(factory)
    head, body, end = codec.message_end(data + b"next", 0, 1 << 20, compact)
    assert (head.name, head.mtype, head.seqid, body, end) == ("call", codec.CALL, 77, 0, len(data))
    for cut in range(len(data)):  # every prefix asks for more, none is taken as whole
        with pytest.raises(codec.NeedMore):
            codec.message_end(data[:cut], 0, 1 << 20, compact)
    with pytest.raises(codec.Malformed, match="limit"):
        codec.message_end(data, 0, len(data) - 1, compact)


@pytest.mark.parametrize(("factory", "compact"), PROTOCOLS)
def test_garbage_is_malformed_or_incomplete_never_a_crash(factory, compact) -> None:
    data = sample_call(factory)
    rng = random.Random(7)
    for _ in range(2000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        with contextlib.suppress(codec.NeedMore, codec.Malformed):
            codec.message_end(bytes(mutated), 0, 4096, compact)


@pytest.mark.parametrize(("factory", "compact"), PROTOCOLS)
def test_request_header_is_finagles_wire_format(factory, compact) -> None:
    raw = codec.request_header(
        compact, 1 << 62, 0x5678, 42, True, 1, "/cat/dog", [("/a", "/b|/c")], trace_id_high=9
    )
    header = tracing.RequestHeader()
    header.read(factory.get_protocol(TMemoryBuffer(raw)))
    assert (header.trace_id, header.span_id, header.parent_span_id) == (1 << 62, 0x5678, 42)
    assert (header.sampled, header.flags, header.dest, header.trace_id_high) == (
        True,
        1,
        "/cat/dog",
        9,
    )
    assert [(d.src, d.dst) for d in header.delegations] == [("/a", "/b|/c")]
    # and thriftpy2's encoding of a Finagle header reads back
    theirs = encode(
        factory,
        tracing.RequestHeader(
            trace_id=5,
            span_id=6,
            sampled=False,
            dest="/x",
            contexts=[tracing.RequestContext(b"k", b"v")],
            delegations=[tracing.Delegation("/s", "/d")],
            client_id=tracing.ClientId("me"),
        ).write,
    )
    fields, end = codec.decode_struct(theirs + b"rest", compact)
    assert end == len(theirs)
    assert fields[1][1] == 5 and fields[2][1] == 6 and fields[5][1] is False
    assert fields[9][1] == b"/x"
    assert fields[10][1] == [{1: (codec.T_STRING, b"/s"), 2: (codec.T_STRING, b"/d")}]


@pytest.mark.parametrize(("factory", "compact"), PROTOCOLS)
def test_turnouts_exception_reply_reads_as_a_tapplicationexception(factory, compact) -> None:
    raw = codec.exception_message("call", 3, codec.INTERNAL_ERROR, "no route", compact)
    proto = factory.get_protocol(TMemoryBuffer(raw))
    assert proto.read_message_begin() == ("call", codec.EXCEPTION, 3)
    exc = TApplicationException()
    exc.read(proto)
    assert (exc.type, exc.message) == (TApplicationException.INTERNAL_ERROR, "no route")


def test_the_old_non_strict_binary_header_is_read() -> None:
    data = sample_call(TBinaryProtocolFactory(strict_write=False))
    assert data[:4] == b"\x00\x00\x00\x04"  # (no version word: the name's length first)
    head, _, end = codec.message_end(data, 0, 1 << 20, False)
    assert (head.name, head.mtype, head.seqid, end) == ("call", codec.CALL, 77, len(data))


@pytest.mark.parametrize("compact", [False, True])
def test_lengths_and_counts_are_bounded_before_anything_is_allocated(compact) -> None:
    w = codec.Writer(compact)
    w.message_begin("m", codec.CALL, 1)
    w.struct_begin()
    w.field(codec.T_LIST, 1)
    w.list_begin(codec.T_I64, 1 << 30)  # (a billion elements claimed in a few bytes)
    data = bytes(w.out)
    with pytest.raises(codec.Malformed, match="container"):
        codec.message_end(data, 0, 1 << 20, compact)
