"""Codec micro-benchmark: CPU µs per request/response exchange, server side, no sockets.

A server session is fed pre-encoded client bytes (one connection, increasing stream ids) and
produces the response frames: GET = request HEADERS (END_STREAM) -> response HEADERS + small
DATA; gRPC unary = request HEADERS + DATA (100 B message) -> response HEADERS + DATA +
trailers. Best of --runs runs of --n exchanges (time.process_time), for this plugin's binding
and for ngh2 when it is installed. Runtime is bounded (about 2 s per case at the defaults).

    .venv/bin/python plugins/turnout-protocol-h2/bench/codec_bench.py [--n 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import hpack
import hyperframe.frame as hf
from turnout_protocol_h2.codec import (
    DataReceived,
    H2Options,
    RequestReceived,
    ServerSession,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"bench.test"),
    (b":path", b"/index.html"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip"),
    (b"x-request-id", b"0123456789"),
]
GRPC = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"svc.bench"),
    (b":path", b"/pkg.Service/Call"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"grpc-timeout", b"1S"),
    (b"user-agent", b"grpc-bench/1.0"),
]
MSG = b"\0\0\0\0\x64" + b"m" * 95  # a 100-byte gRPC message
RESP = [(b":status", b"200"), (b"content-type", b"text/html"), (b"server", b"bench")]
GRESP = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]


def client_bytes(n: int, grpc: bool) -> tuple[bytes, list[bytes]]:
    """The preface + SETTINGS + a big connection window, then one chunk per request."""
    settings = hf.SettingsFrame(0)
    settings.settings = {hf.SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 30}
    wu = hf.WindowUpdateFrame(0)
    wu.window_increment = (1 << 31) - 1 - 65535
    ack = hf.SettingsFrame(0, flags=["ACK"])
    head = PREFACE + settings.serialize() + wu.serialize() + ack.serialize()
    enc = hpack.Encoder()
    reqs = []
    for i in range(n):
        sid = 1 + 2 * i
        f = hf.HeadersFrame(sid, flags=["END_HEADERS"] + ([] if grpc else ["END_STREAM"]))
        f.data = enc.encode(GRPC if grpc else GET)
        chunk = f.serialize()
        if grpc:
            chunk += hf.DataFrame(sid, data=MSG, flags=["END_STREAM"]).serialize()
        reqs.append(chunk)
    return head, reqs


Run = Callable[[bytes, list[bytes], "list[bytes] | None"], int]


def ours(grpc: bool) -> Run:
    def run(head: bytes, reqs: list[bytes], sink: list[bytes] | None = None) -> int:
        s = ServerSession(H2Options(max_concurrent_streams_per_connection=1 << 20))
        s.feed(head)
        s.data_to_send()
        out = 0
        for chunk in reqs:
            for e in s.feed(chunk):
                if grpc:
                    if type(e) is DataReceived:
                        s.consume(e.stream_id, len(e.data))
                        if e.end_stream:
                            sid = e.stream_id
                            s.submit_response(sid, GRESP)
                            s.send_data(sid, MSG)
                            s.send_trailers(sid, TRAILERS)
                elif type(e) is RequestReceived:
                    s.submit_response(e.stream_id, RESP)
                    s.send_data(e.stream_id, b"hello world", True)
            data = s.data_to_send()
            out += len(data)
            if sink is not None:
                sink.append(data)
        return out

    return run


def ngh2_case(grpc: bool) -> Run | None:
    try:
        import ngh2
    except ImportError:
        return None

    def run(head: bytes, reqs: list[bytes], sink: list[bytes] | None = None) -> int:
        c = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
        c.initiate_connection({ngh2.Setting.MAX_CONCURRENT_STREAMS: 1 << 20})
        c.receive_data(head)
        c.events()
        c.data_to_send()
        out = 0
        for chunk in reqs:
            c.receive_data(chunk)
            for e in c.events():
                if grpc:
                    if type(e) is ngh2.DataReceived:
                        c.acknowledge_received_data(len(e.data), e.stream_id)
                        if e.end_stream:
                            sid = e.stream_id
                            c.send_response(sid, GRESP)
                            c.send_data(sid, MSG)
                            c.send_trailers(sid, TRAILERS)
                elif type(e) is ngh2.RequestReceived:
                    c.send_response(e.stream_id, RESP)
                    c.send_data(e.stream_id, b"hello world", end_stream=True)
            data = c.data_to_send()
            out += len(data)
            if sink is not None:
                sink.append(data)
        return out

    return run


def check(run: Run, grpc: bool) -> None:
    """The output must be the right frames: 3 exchanges decoded with hyperframe + hpack."""
    head, reqs = client_bytes(3, grpc)
    sink: list[bytes] = []
    run(head, reqs, sink)
    dec = hpack.Decoder()
    for i, data in enumerate(sink):
        frames, off = [], 0
        while off < len(data):
            f, length = hf.Frame.parse_frame_header(memoryview(data[off : off + 9]))
            f.parse_body(memoryview(data[off + 9 : off + 9 + length]))
            frames.append(f)
            off += 9 + length
        sid = 1 + 2 * i
        blocks = [dec.decode(f.data, raw=True) for f in frames if isinstance(f, hf.HeadersFrame)]
        body = b"".join(
            f.data for f in frames if isinstance(f, hf.DataFrame) and f.stream_id == sid
        )
        assert blocks[0][0] == (b":status", b"200"), blocks
        if grpc:
            assert body == MSG, body
            assert blocks[-1] == TRAILERS, blocks
            assert "END_STREAM" in [f for f in frames if isinstance(f, hf.HeadersFrame)][-1].flags
        else:
            assert body == b"hello world", body


def bench(run: Run, grpc: bool, n: int, runs: int) -> float:
    check(run, grpc)
    head, reqs = client_bytes(n, grpc)
    best = float("inf")
    deadline = time.monotonic() + 30
    for _ in range(runs):
        t0 = time.process_time()
        run(head, reqs, None)
        best = min(best, time.process_time() - t0)
        if time.monotonic() > deadline:
            break
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    print(f"codec CPU per exchange, best of {a.runs} x {a.n} (µs)")
    print(f"{'binding':<34} {'GET':>8} {'gRPC unary':>11}")
    for name, make in (("turnout (cffi shim, libnghttp2 1.52)", ours), ("ngh2", ngh2_case)):
        g, u = make(False), make(True)
        if g is None or u is None:
            print(f"{name:<34} {'(not installed)':>20}")
            continue
        print(f"{name:<34} {bench(g, False, a.n, a.runs):8.2f} {bench(u, True, a.n, a.runs):11.2f}")


if __name__ == "__main__":
    main()
