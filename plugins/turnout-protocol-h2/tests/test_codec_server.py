"""ServerSession driven by the `h2` package as a raw-frame client (no sockets)."""

from __future__ import annotations

import h2.events as he
import hpack
import hyperframe.frame as hf
import pytest
from turnout_h2_testpeer import (
    REQ,
    ServerPair,
    goaways,
    grpc_request,
    of,
    parse_frames,
    raw_headers,
    window_update,
)
from turnout_protocol_h2.codec import (
    BufferFullError,
    CodecError,
    DataReceived,
    ErrorCode,
    H2Options,
    PingAcked,
    RequestReceived,
    StreamClosed,
    StreamClosedError,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)


def test_get(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=True)
    (req,) = of(pair.to_server(), RequestReceived)
    assert req.stream_id == 1 and req.end_stream
    assert req.headers == REQ  # one event, the whole block, in order
    pair.server.submit_response(1, [(b":status", b"200"), (b"content-type", b"text/plain")])
    pair.server.send_data(1, b"hello", end_stream=True)
    ev = pair.to_client()
    (resp,) = of(ev, he.ResponseReceived)
    assert resp.headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
    assert b"".join(e.data for e in of(ev, he.DataReceived)) == b"hello"
    assert of(ev, he.StreamEnded)
    assert pair.server.events() == [StreamClosed(1, 0)]
    assert pair.server.stats()["live_streams"] == 0


def test_response_without_body(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    pair.server.submit_response(1, [(b":status", b"204")], end_stream=True)
    ev = pair.to_client()
    assert of(ev, he.ResponseReceived) and of(ev, he.StreamEnded)


def test_post_with_body_and_consume(pair: ServerPair) -> None:
    body = bytes(range(256)) * 800  # 200 KiB: more than the 64 KiB windows
    req = [(b":method", b"POST"), *REQ[1:]]
    pair.client.send_headers(1, req)
    got = bytearray()
    sent = 0
    ended = False
    for _ in range(200):
        window = pair.client.local_flow_control_window(1)
        chunk = body[sent : sent + min(window, 16384)]
        if chunk:
            pair.client.send_data(1, chunk, end_stream=sent + len(chunk) == len(body))
            sent += len(chunk)
        for e in pair.to_server():
            if isinstance(e, DataReceived):
                got += e.data
                pair.server.consume(1, len(e.data))  # the "other side" took them
                ended = ended or e.end_stream
        pair.to_client()
        if ended:
            break
    assert ended and bytes(got) == body


def test_no_consume_stops_the_sender(pair: ServerPair) -> None:
    """Receive credit comes back only through consume(): a peer cannot overrun us."""
    pair.client.send_headers(1, [(b":method", b"POST"), *REQ[1:]])
    total = 0
    for _ in range(20):
        window = pair.client.local_flow_control_window(1)
        if window:
            pair.client.send_data(1, b"x" * min(window, 16384))
        total += sum(len(e.data) for e in of(pair.to_server(), DataReceived))
        pair.to_client()
    assert total == 65535 and pair.client.local_flow_control_window(1) == 0
    pair.server.consume(1, total)
    pair.to_client()
    assert pair.client.local_flow_control_window(1) > 0


def test_trailers_both_ways(pair: ServerPair) -> None:
    pair.client.send_headers(1, grpc_request())
    pair.client.send_data(1, b"\0\0\0\0\x03abc")
    pair.client.send_headers(1, [(b"x-checksum", b"1")], end_stream=True)
    ev = pair.to_server()
    assert [type(e) for e in ev if not isinstance(e, WindowUpdated)] == [
        RequestReceived,
        DataReceived,
        TrailersReceived,
    ]
    assert ev[-1].headers == [(b"x-checksum", b"1")]
    pair.server.submit_response(1, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    pair.server.send_data(1, b"\0\0\0\0\x02ok")
    pair.server.send_trailers(1, [(b"grpc-status", b"0"), (b"grpc-message", b"")])
    cev = pair.to_client()
    (tr,) = of(cev, he.TrailersReceived)
    assert tr.headers == [(b"grpc-status", b"0"), (b"grpc-message", b"")]
    assert of(cev, he.StreamEnded)
    assert b"".join(e.data for e in of(cev, he.DataReceived)) == b"\0\0\0\0\x02ok"


def test_grpc_unary(pair: ServerPair) -> None:
    msg = b"\0\0\0\0\x64" + b"m" * 100
    pair.client.send_headers(1, grpc_request())
    pair.client.send_data(1, msg, end_stream=True)
    ev = pair.to_server()
    req = of(ev, RequestReceived)[0]
    assert dict(req.headers)[b"content-type"] == b"application/grpc" and not req.end_stream
    data = of(ev, DataReceived)
    assert b"".join(d.data for d in data) == msg and data[-1].end_stream
    pair.server.submit_response(1, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    pair.server.send_data(1, msg)
    pair.server.send_trailers(1, [(b"grpc-status", b"0")])
    cev = pair.to_client()
    assert [type(e) for e in cev if not isinstance(e, he.WindowUpdated)] == [
        he.ResponseReceived,
        he.DataReceived,
        he.TrailersReceived,
        he.StreamEnded,
    ]


def test_slow_reader_stops_the_sender_nothing_buffered_beyond_the_window() -> None:
    """A streaming response to a client that does not give credit back: the server sends
    exactly the window, and a producer that respects send_window() queues nothing more."""
    pair = ServerPair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    pair.server.submit_response(1, [(b":status", b"200")])
    produced = received = 0
    for _ in range(50):
        room = pair.server.send_window(1)
        if room:
            pair.server.send_data(1, b"y" * min(room, 10000))
            produced += min(room, 10000)
        received += sum(len(e.data) for e in of(pair.to_client(), he.DataReceived))
    assert received == 65535 and produced == 65535
    assert pair.server.pending(1) == 0 and pair.server.send_window(1) == 0
    # the client takes the bytes: credit flows, the producer is told and resumes
    pair.client.acknowledge_received_data(received, 1)
    assert any(isinstance(e, WindowUpdated) and e.stream_id == 1 for e in pair.to_server())
    assert pair.server.send_window(1) > 0


def test_data_source_limit_is_a_clear_error() -> None:
    pair = ServerPair(H2Options(max_pending_stream_bytes=1000))
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    pair.server.submit_response(1, [(b":status", b"200")])
    with pytest.raises(BufferFullError, match="send_window"):
        pair.server.send_data(1, b"z" * 1001)


def test_bad_headers_are_refused(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    for bad in ([(b":status", b"200"), (b"x", b"a\0b")], [(b":status", b"200"), (b"X-Up", b"1")],
                [(b":status", b"200"), (b"x", b"a\r\nb: c")]):  # fmt: skip
        with pytest.raises(CodecError, match="malformed header block"):
            pair.server.submit_response(1, bad)
    with pytest.raises(StreamClosedError):
        pair.server.submit_response(99, [(b":status", b"200")])
    pair.server.submit_response(1, [(b":status", b"200")])
    with pytest.raises(CodecError, match="Invalid state"):
        pair.server.submit_response(1, [(b":status", b"200")])  # a second final response


def test_rst_stream_from_client(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    pair.client.reset_stream(1, error_code=ErrorCode.CANCEL)
    ev = pair.to_server()
    assert StreamReset(1, ErrorCode.CANCEL) in ev and StreamClosed(1, ErrorCode.CANCEL) in ev
    assert pair.server.stats()["live_streams"] == 0
    with pytest.raises(StreamClosedError):
        pair.server.send_data(1, b"late")


def test_rst_stream_from_server(pair: ServerPair) -> None:
    pair.client.send_headers(1, REQ, end_stream=False)
    pair.to_server()
    pair.server.reset_stream(1, ErrorCode.REFUSED_STREAM)
    (rst,) = of(pair.to_client(), he.StreamReset)
    assert rst.stream_id == 1 and rst.error_code == ErrorCode.REFUSED_STREAM
    assert pair.server.events() == [StreamClosed(1, ErrorCode.REFUSED_STREAM)]


def test_codec_validation_resets_bad_requests(pair: ServerPair) -> None:
    """nghttp2's own HTTP messaging checks stay on: a connection-specific header gets
    RST_STREAM PROTOCOL_ERROR and never reaches the application."""
    enc = hpack.Encoder()
    ev = pair.to_server(raw_headers(enc, 1, [*REQ, (b"connection", b"keep-alive")]))
    assert not of(ev, RequestReceived)
    rst = [f for f in parse_frames(pair.server.data_to_send()) if isinstance(f, hf.RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in rst] == [(1, ErrorCode.PROTOCOL_ERROR)]


def test_ping_both_ways(pair: ServerPair) -> None:
    pair.client.ping(b"12345678")
    pair.to_server()
    (ack,) = of(pair.to_client(), he.PingAckReceived)
    assert ack.ping_data == b"12345678"
    pair.server.ping(b"abcdefgh")
    pair.to_client()
    assert PingAcked(b"abcdefgh") in pair.to_server()
    assert pair.server.stats()["pings_received"] == 1


def test_graceful_shutdown_drains_without_losing_data() -> None:
    """Shutdown notice first, the final GOAWAY only after the last stream's DATA (nghttp2
    would otherwise send it ahead of queued DATA). Checked on the raw frames: the h2
    package's client closes on the first GOAWAY it sees, even the notice."""
    pair = ServerPair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.to_server()
    pair.server.submit_response(1, [(b":status", b"200")])
    body = b"d" * 200_000  # beyond the 64 KiB window: most of it waits for credit
    pair.server.start_shutdown()
    sent = 0
    frames: list[hf.Frame] = []
    for _ in range(200):
        room = pair.server.send_window(1)
        if room and sent < len(body):
            n = min(room, len(body) - sent)
            pair.server.send_data(1, body[sent : sent + n], end_stream=sent + n == len(body))
            sent += n
        out = parse_frames(pair.server.data_to_send())
        frames += out
        credit = sum(len(f.data) for f in out if isinstance(f, hf.DataFrame))
        if credit:
            pair.server.feed(window_update(1, credit) + window_update(0, credit))
        if pair.server.is_finished:
            break
    assert pair.server.is_finished
    data = b"".join(f.data for f in frames if isinstance(f, hf.DataFrame))
    assert data == body
    ga = goaways(frames)
    assert [(g.error_code, g.last_stream_id) for g in ga] == [(0, 2**31 - 1), (0, 1)]
    assert frames[-1] is ga[-1]  # nothing after the final GOAWAY, no DATA cut off
    assert "END_STREAM" in [f for f in frames if isinstance(f, hf.DataFrame)][-1].flags


def test_streams_after_the_final_goaway_are_not_processed() -> None:
    pair = ServerPair()
    pair.server.start_shutdown()
    frames = parse_frames(pair.server.data_to_send())
    frames += parse_frames(pair.server.data_to_send())  # no streams: the final GOAWAY
    assert [g.last_stream_id for g in goaways(frames)] == [2**31 - 1, 0]
    ev = pair.server.feed(raw_headers(hpack.Encoder(), 1, REQ))
    assert not of(ev, RequestReceived)
    assert pair.server.stats()["goaway_sent"] == 2


def test_large_feed_is_processed_in_bounded_steps() -> None:
    """More DATA in one feed than the event log's soft cap (256 KiB): nghttp2 is paused and
    resumed inside feed(); every byte arrives, in order."""
    opts = H2Options(initial_stream_window_bytes=4 << 20, initial_connection_window_bytes=4 << 20)
    pair = ServerPair(opts)
    pair.client.send_headers(1, [(b":method", b"POST"), *REQ[1:]])
    body = bytes(range(251)) * 4000  # ~1 MiB
    for i in range(0, len(body), 16384):
        pair.client.send_data(1, body[i : i + 16384], end_stream=i + 16384 >= len(body))
    wire = pair.client.data_to_send()
    assert len(wire) > 1_000_000
    ev = pair.server.feed(wire)
    data = of(ev, DataReceived)
    assert b"".join(d.data for d in data) == body and data[-1].end_stream


def test_bad_preface_ends_the_connection() -> None:
    from turnout_protocol_h2.codec import ConnectionTerminated, ServerSession

    s = ServerSession()
    s.data_to_send()
    ev = s.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ConnectionTerminated(ErrorCode.PROTOCOL_ERROR) in ev
    assert [g.error_code for g in goaways(parse_frames(s.data_to_send()))] == [1]
    assert not s.want_read


def test_padding_is_credited_back_by_the_codec(pair: ServerPair) -> None:
    """consume() covers the data bytes; nghttp2 returns the padding's credit itself, so
    padded DATA cannot leak the windows shut (200 frames, ~250 KB of padding)."""
    pair.client.send_headers(1, [(b":method", b"POST"), *REQ[1:]])
    got = 0
    for _ in range(200):
        window = pair.client.local_flow_control_window(1)
        assert window >= 1000, "the windows leaked"
        pair.client.send_data(1, b"x" * 744, pad_length=255)
        for e in pair.to_server():
            if isinstance(e, DataReceived):
                got += len(e.data)
                pair.server.consume(1, len(e.data))
        pair.to_client()
    assert got == 744 * 200
