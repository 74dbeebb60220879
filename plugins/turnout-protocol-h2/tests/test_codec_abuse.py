"""Abuse limits: each is counted in stats() and ends the connection with a GOAWAY carrying
the right error code, and nothing more reaches the application."""

from __future__ import annotations

import hpack
import hyperframe.frame as hf
from turnout_h2_testpeer import REQ, ServerPair, frame_bytes, goaways, of, parse_frames, raw_headers
from turnout_protocol_h2.codec import (
    ConnectionTerminated,
    ErrorCode,
    H2Options,
    RequestReceived,
)


def _goaway_code(pair: ServerPair) -> int:
    ga = goaways(parse_frames(pair.server.data_to_send()))
    assert len(ga) == 1, ga
    assert pair.server.stats()["goaway_sent_code"] == ga[0].error_code
    return int(ga[0].error_code)


def test_rapid_reset() -> None:
    pair = ServerPair(H2Options(reset_rate_limit=(10, 0)))  # rate 0: no refill, no timing
    enc = hpack.Encoder()
    wire = b""
    for i in range(30):
        sid = 1 + 2 * i
        rst = hf.RstStreamFrame(sid)
        rst.error_code = ErrorCode.CANCEL
        wire += raw_headers(enc, sid, REQ, end=False) + rst.serialize()
    ev = pair.server.feed(wire)
    assert ConnectionTerminated(ErrorCode.ENHANCE_YOUR_CALM) in ev
    assert len(of(ev, RequestReceived)) == 11  # the burst, then nothing more
    assert _goaway_code(pair) == ErrorCode.ENHANCE_YOUR_CALM
    assert pair.server.stats()["rapid_reset"] == 1
    assert pair.server.stats()["live_streams"] == 0


def test_rst_within_the_limit_is_fine() -> None:
    pair = ServerPair(H2Options(reset_rate_limit=(10, 1)))
    enc = hpack.Encoder()
    rst = hf.RstStreamFrame(1)
    rst.error_code = ErrorCode.CANCEL
    pair.server.feed(raw_headers(enc, 1, REQ, end=False) + rst.serialize())
    assert not goaways(parse_frames(pair.server.data_to_send()))
    assert pair.server.want_read


def test_continuation_flood() -> None:
    pair = ServerPair()
    block = hpack.Encoder().encode([*REQ, *[(b"x-a%d" % i, b"%d" % i * 4) for i in range(60)]])
    head = hf.HeadersFrame(1)
    head.data = block[:10]
    frames: list[hf.Frame] = [head]
    rest = block[10:]
    for i in range(0, len(rest), 10):
        c = hf.ContinuationFrame(1)
        c.data = rest[i : i + 10]
        if i + 10 >= len(rest):
            c.flags.add("END_HEADERS")
        frames.append(c)
    assert len(frames) > 20  # beyond the default 8 CONTINUATIONs
    ev = pair.server.feed(frame_bytes(*frames))
    assert not of(ev, RequestReceived)
    assert ConnectionTerminated(ErrorCode.ENHANCE_YOUR_CALM) in ev
    assert _goaway_code(pair) == ErrorCode.ENHANCE_YOUR_CALM
    assert pair.server.stats()["continuation_flood"] == 1
    assert not pair.server.want_read


def test_settings_flood() -> None:
    pair = ServerPair(H2Options(control_frame_rate_limit=(20, 0)))
    ev = pair.server.feed(frame_bytes(*[hf.SettingsFrame(0) for _ in range(100)]))
    assert ConnectionTerminated(ErrorCode.ENHANCE_YOUR_CALM) in ev
    assert _goaway_code(pair) == ErrorCode.ENHANCE_YOUR_CALM
    assert pair.server.stats()["control_flood"] == 1


def test_ping_flood() -> None:
    pair = ServerPair(H2Options(control_frame_rate_limit=(20, 0)))
    pings = []
    for i in range(100):
        p = hf.PingFrame(0)
        p.opaque_data = i.to_bytes(8, "big")
        pings.append(p)
    ev = pair.server.feed(frame_bytes(*pings))
    assert ConnectionTerminated(ErrorCode.ENHANCE_YOUR_CALM) in ev
    out = parse_frames(pair.server.data_to_send())
    assert [g.error_code for g in goaways(out)] == [ErrorCode.ENHANCE_YOUR_CALM]
    assert len([f for f in out if isinstance(f, hf.PingFrame)]) <= 21
    assert pair.server.stats()["control_flood"] == 1


def test_unread_acks_flood() -> None:
    """A peer that sends PINGs and never reads: the queue of ACKs is bounded."""
    pair = ServerPair(H2Options(control_frame_rate_limit=(10**6, 10**6), max_outbound_ack=50))
    ev = pair.server.feed(frame_bytes(*[hf.PingFrame(0) for _ in range(200)]))
    assert ConnectionTerminated(ErrorCode.ENHANCE_YOUR_CALM) in ev
    assert pair.server.stats()["control_flood"] == 1
    assert ErrorCode.ENHANCE_YOUR_CALM in [
        g.error_code for g in goaways(parse_frames(pair.server.data_to_send()))
    ]


def test_hpack_bomb() -> None:
    """A small header block that decodes to far more than maxHeaderListBytes (one big
    header in the dynamic table, referenced over and over)."""
    pair = ServerPair(H2Options(max_header_list_bytes=8192))
    enc = hpack.Encoder()
    big = (b"x-bomb", b"a" * 2000)
    ev = pair.server.feed(raw_headers(enc, 1, [*REQ, big]))
    assert of(ev, RequestReceived)  # 2 KiB fits
    bomb = raw_headers(enc, 3, [*REQ, *[big] * 200])  # ~400 KiB decoded
    assert len(bomb) < 1000
    ev = pair.server.feed(bomb)
    assert not of(ev, RequestReceived)
    assert ConnectionTerminated(ErrorCode.ENHANCE_YOUR_CALM) in ev
    assert _goaway_code(pair) == ErrorCode.ENHANCE_YOUR_CALM
    assert pair.server.stats()["header_list_too_large"] == 1


def test_too_many_concurrent_streams() -> None:
    pair = ServerPair(H2Options(max_concurrent_streams_per_connection=2))
    enc = hpack.Encoder()
    ev = pair.server.feed(b"".join(raw_headers(enc, sid, REQ) for sid in (1, 3, 5)))
    assert [e.stream_id for e in of(ev, RequestReceived)] == [1, 3]
    # nghttp2 escalates to a connection error once the client ACKed the limit (RFC 9113
    # §5.1.2 allows PROTOCOL_ERROR)
    assert _goaway_code(pair) == ErrorCode.PROTOCOL_ERROR
    assert pair.server.stats()["too_many_streams"] == 1
