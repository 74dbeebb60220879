"""ClientSession against the `h2` package as a server; data sources and their failures;
a long run checking that no per-stream state is kept."""

from __future__ import annotations

import h2.events as he
import hyperframe.frame as hf
from turnout_h2_testpeer import REQ, ClientPair, ServerPair, goaways, grpc_request, of, parse_frames
from turnout_protocol_h2.codec import (
    ClientSession,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    H2Options,
    InformationalResponseReceived,
    RequestReceived,
    ResponseReceived,
    ServerSession,
    StreamClosed,
    StreamReset,
    TrailersReceived,
)


def test_client_get() -> None:
    p = ClientPair()
    sid = p.client.submit_request(REQ, end_stream=True)
    assert sid == 1
    (req,) = of(p.to_server(), he.RequestReceived)
    assert req.headers == REQ
    p.server.send_headers(1, [(b":status", b"200"), (b"server", b"h2")])
    p.server.send_data(1, b"body", end_stream=True)
    ev = p.to_client()
    resp = of(ev, ResponseReceived)[0]
    assert resp.headers == [(b":status", b"200"), (b"server", b"h2")] and not resp.end_stream
    (data,) = of(ev, DataReceived)
    assert data.data == b"body" and data.end_stream
    assert StreamClosed(1, 0) in ev
    assert p.client.stats()["live_streams"] == 0


def test_client_grpc_unary_with_trailers_and_100_continue() -> None:
    p = ClientPair()
    sid = p.client.submit_request(grpc_request())
    p.client.send_data(sid, b"\0\0\0\0\x01x", end_stream=True)
    ev = p.to_server()
    assert of(ev, he.DataReceived)[0].data == b"\0\0\0\0\x01x" and of(ev, he.StreamEnded)
    p.server.send_headers(sid, [(b":status", b"100")])
    p.server.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    p.server.send_data(sid, b"\0\0\0\0\x01y")
    p.server.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    ev = p.to_client()
    kinds = [type(e) for e in ev if not isinstance(e, StreamClosed)]
    assert kinds == [
        InformationalResponseReceived,
        ResponseReceived,
        DataReceived,
        TrailersReceived,
    ]
    assert of(ev, TrailersReceived)[0].headers == [(b"grpc-status", b"0")]


def test_client_request_trailers_and_streaming_upload_with_flow_control() -> None:
    p = ClientPair()
    sid = p.client.submit_request([(b":method", b"POST"), *REQ[1:]])
    body = b"u" * 300_000
    sent = 0
    got = 0
    trailers = None
    for _ in range(300):
        room = p.client.send_window(sid)
        if room and sent < len(body):
            n = min(room, len(body) - sent)
            p.client.send_data(sid, body[sent : sent + n])
            sent += n
            if sent == len(body):
                p.client.send_trailers(sid, [(b"x-sum", b"ok")])
        for e in p.to_server():
            if isinstance(e, he.DataReceived):
                got += len(e.data)
                p.server.acknowledge_received_data(e.flow_controlled_length, sid)
            elif isinstance(e, he.TrailersReceived):
                trailers = e.headers
        p.to_client()
        assert p.client.pending(sid) <= 65535
        if trailers:
            break
    assert got == len(body) and trailers == [(b"x-sum", b"ok")]


def test_client_rst_both_ways() -> None:
    p = ClientPair()
    a = p.client.submit_request(REQ, end_stream=True)
    b = p.client.submit_request(REQ, end_stream=True)
    p.to_server()
    p.client.reset_stream(a, ErrorCode.CANCEL)  # a cancelled call cancels upstream
    (rst,) = of(p.to_server(), he.StreamReset)
    assert rst.stream_id == a and rst.error_code == ErrorCode.CANCEL
    p.server.reset_stream(b, ErrorCode.REFUSED_STREAM)
    ev = p.to_client()
    assert StreamReset(b, ErrorCode.REFUSED_STREAM) in ev
    assert StreamClosed(b, ErrorCode.REFUSED_STREAM) in ev
    assert p.client.stats()["live_streams"] == 0


def test_client_goaway_received() -> None:
    p = ClientPair()
    a = p.client.submit_request(REQ, end_stream=True)
    p.to_server()
    b = p.client.submit_request(REQ, end_stream=True)  # not yet sent when GOAWAY comes
    p.server.close_connection(error_code=0, last_stream_id=a)
    ev = p.to_client()
    assert GoAwayReceived(a, 0, b"") in ev
    assert not p.client.request_allowed
    p.client.data_to_send()
    ev = p.client.events()
    assert StreamClosed(b, ErrorCode.REFUSED_STREAM) in ev  # safe to retry elsewhere
    assert p.client.stats()["live_streams"] == 1  # stream a may still complete


class Boom(Exception):
    pass


class Fatal(BaseException):
    pass


class Source:
    def __init__(self, chunks: list[bytes | BaseException | None]) -> None:
        self.chunks = chunks

    def read(self, max_bytes: int) -> bytes | None:
        item = self.chunks.pop(0) if self.chunks else b""
        if isinstance(item, BaseException):
            raise item
        return item


def test_pull_source_defers_and_resumes(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    src = Source([b"one", b""])
    pair.server.submit_response(1, [(b":status", b"200")], source=src)
    ev = pair.to_client()
    assert [e.data for e in of(ev, he.DataReceived)] == [b"one"] and not of(ev, he.StreamEnded)
    src.chunks += [b"two", None]
    pair.server.resume(1)
    ev = pair.to_client()
    assert [e.data for e in of(ev, he.DataReceived) if e.data] == [b"two"]
    assert of(ev, he.StreamEnded)


def test_exception_in_a_data_source_fails_the_stream(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.client.send_headers(3, REQ, end_stream=True)
    pair.to_server()
    err = Boom("upstream broke")
    pair.server.submit_response(1, [(b":status", b"200")], source=Source([b"part", err]))
    ev = pair.to_client()
    (rst,) = of(ev, he.StreamReset)
    assert rst.stream_id == 1 and rst.error_code == ErrorCode.INTERNAL_ERROR
    assert pair.server.errors == [err]  # kept, not printed and dropped
    assert pair.server.stats()["callback_errors"] == 1
    assert StreamClosed(1, ErrorCode.INTERNAL_ERROR) in pair.server.events()
    # the connection goes on
    pair.server.submit_response(3, [(b":status", b"200")], end_stream=True)
    assert of(pair.to_client(), he.ResponseReceived)


def test_source_returning_too_much_fails_the_stream(pair: ServerPair) -> None:
    class Greedy:
        def read(self, max_bytes: int) -> bytes:
            return b"g" * (max_bytes + 1)

    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    pair.server.submit_response(1, [(b":status", b"200")], source=Greedy())
    (rst,) = of(pair.to_client(), he.StreamReset)
    assert rst.error_code == ErrorCode.INTERNAL_ERROR
    assert "more than" in str(pair.server.errors[0])


def test_base_exception_in_a_callback_fails_the_connection(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    fatal = Fatal("stop")
    pair.server.submit_response(1, [(b":status", b"200")], source=Source([fatal]))
    frames = parse_frames(pair.server.data_to_send())
    assert [g.error_code for g in goaways(frames)] == [ErrorCode.INTERNAL_ERROR]
    assert not [f for f in frames if isinstance(f, hf.DataFrame)]
    assert pair.server.errors == [fatal]
    assert ConnectionTerminated(ErrorCode.INTERNAL_ERROR) in pair.server.events()
    assert not pair.server.want_read


def test_100k_streams_keep_no_per_stream_state() -> None:
    """Our client against our server, 100,000 exchanges on one connection (stream ids run
    up to 200,000): live stream objects stay at zero between exchanges, on both sides and
    in the binding's Python maps."""
    opts = H2Options(max_concurrent_streams_per_connection=100)
    client, server = ClientSession(opts), ServerSession(opts)
    server.feed(client.data_to_send())
    client.feed(server.data_to_send())
    resp = [(b":status", b"200")]
    body = b"x" * 100
    for batch in range(1000):
        for _ in range(100):
            client.submit_request(REQ, end_stream=(batch % 2 == 0))
        for e in server.feed(client.data_to_send()):
            if isinstance(e, RequestReceived):
                if not e.end_stream:
                    server.reset_stream(e.stream_id)  # half the batches end in RST_STREAM
                    continue
                server.submit_response(e.stream_id, resp, source=Source([body, None]))
        for e in client.feed(server.data_to_send()):
            if isinstance(e, DataReceived):
                client.consume(e.stream_id, len(e.data))
        server.feed(client.data_to_send())
        server.events()
        if batch % 100 == 99:
            assert client.stats()["live_streams"] == 0, batch
            assert server.stats()["live_streams"] == 0, batch
            assert not server._sources and not client._sources
    cs, ss = client.stats(), server.stats()
    assert cs["streams_opened"] == ss["streams_opened"] == 100_000
    assert cs["streams_closed"] == ss["streams_closed"] == 100_000
    assert ss["rst_sent"] == 50_000 and not server.errors and not client.errors
