"""The same codec-level scenarios against ngh2 0.3.0 (the candidate binding the issue asks
to compare, pinned exactly), asserting what it does. README "Choosing the binding" reads
from these: where ngh2 differs from this plugin's binding, the assertion says how."""

from __future__ import annotations

import hpack
import hyperframe.frame as hf
import pytest
from turnout_h2_testpeer import REQ, frame_bytes, goaways, parse_frames, raw_headers

ngh2 = pytest.importorskip("ngh2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_pinned_version() -> None:
    assert ngh2.__version__ == "0.3.0"


def server(settings: dict[int, int] | None = None, **config: object) -> ngh2.Connection:
    c = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False, **config))
    c.initiate_connection(settings)
    c.receive_data(
        PREFACE + hf.SettingsFrame(0).serialize() + hf.SettingsFrame(0, flags=["ACK"]).serialize()
    )
    c.events()
    c.data_to_send()
    return c


def names(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_get_and_trailers() -> None:
    c = server()
    enc = hpack.Encoder()
    c.receive_data(raw_headers(enc, 1, REQ))
    (req,) = [e for e in c.events() if isinstance(e, ngh2.RequestReceived)]
    assert [tuple(h) for h in req.headers] == REQ
    c.send_response(1, [(b":status", b"200")])
    c.send_data(1, b"x")
    c.send_trailers(1, [(b"grpc-status", b"0")])
    frames = parse_frames(c.data_to_send())
    assert [type(f).__name__ for f in frames] == ["HeadersFrame", "DataFrame", "HeadersFrame"]


def test_slow_reader_ngh2_buffers_beyond_the_window() -> None:
    """Push API: send_data() takes everything and buffers it in C; backpressure means the
    caller polling queued_body_size() (ours: send_window() and a bounded source)."""
    c = server()
    c.receive_data(raw_headers(hpack.Encoder(), 1, REQ))
    c.events()
    c.send_response(1, [(b":status", b"200")])
    c.send_data(1, b"y" * 300_000)
    sent = sum(len(f.data) for f in parse_frames(c.data_to_send()) if isinstance(f, hf.DataFrame))
    assert sent == 65535 and c.queued_body_size(1) == 300_000 - 65535


def test_graceful_drain() -> None:
    c = server()
    c.receive_data(raw_headers(hpack.Encoder(), 1, REQ))
    c.events()
    c.send_response(1, [(b":status", b"200")])
    c.send_data(1, b"d" * 200_000, end_stream=True)
    c.send_shutdown_notice()
    frames = parse_frames(c.data_to_send())
    w1, w0 = hf.WindowUpdateFrame(1), hf.WindowUpdateFrame(0)
    w1.window_increment = w0.window_increment = 300_000
    c.receive_data(w1.serialize() + w0.serialize())
    c.events()
    frames += parse_frames(c.data_to_send())
    c.send_goaway(0)
    frames += parse_frames(c.data_to_send())
    assert sum(len(f.data) for f in frames if isinstance(f, hf.DataFrame)) == 200_000
    assert [(g.error_code, g.last_stream_id) for g in goaways(frames)] == [(0, 2**31 - 1), (0, 1)]


def test_rapid_reset_internal_error_and_requests_still_delivered() -> None:
    """nghttp2's own limiter: GOAWAY INTERNAL_ERROR, and the requests after the limit are
    still handed to the application (ours: ENHANCE_YOUR_CALM and no request after it)."""
    c = server(stream_reset_rate_limit=(10, 1))
    enc = hpack.Encoder()
    wire = b""
    for i in range(30):
        rst = hf.RstStreamFrame(1 + 2 * i)
        rst.error_code = 8
        wire += raw_headers(enc, 1 + 2 * i, REQ, end=False) + rst.serialize()
    c.receive_data(wire)
    assert names(c.events()).count("RequestReceived") == 30
    assert [g.error_code for g in goaways(parse_frames(c.data_to_send()))] == [2]


@pytest.mark.parametrize("case", ["continuation", "settings", "ping", "hpack-bomb"])
def test_floods_raise_without_goaway(case: str) -> None:
    """Floods raise DenialOfServiceError; the GOAWAY is the caller's job (ours queues
    ENHANCE_YOUR_CALM and counts the case)."""
    c = server(max_outbound_ack=50, max_inbound_header_list_size=8192)
    enc = hpack.Encoder()
    if case == "continuation":
        block = enc.encode([*REQ, *[(b"x-a%d" % i, b"%d" % i * 4) for i in range(60)]])
        head = hf.HeadersFrame(1)
        head.data = block[:10]
        frames: list[hf.Frame] = [head]
        for i in range(10, len(block), 10):
            cf = hf.ContinuationFrame(1)
            cf.data = block[i : i + 10]
            frames.append(cf)
        frames[-1].flags.add("END_HEADERS")
        wire = frame_bytes(*frames)
    elif case == "settings":
        wire = frame_bytes(*[hf.SettingsFrame(0) for _ in range(200)])
    elif case == "ping":
        wire = frame_bytes(*[hf.PingFrame(0) for _ in range(200)])
    else:
        big = (b"x-bomb", b"a" * 2000)
        c.receive_data(raw_headers(enc, 1, [*REQ, big]))
        c.events()
        wire = raw_headers(enc, 3, [*REQ, *[big] * 200])

    def feed() -> None:
        c.receive_data(wire)
        c.events()

    with pytest.raises(ngh2.DenialOfServiceError):
        feed()


def test_too_many_streams_protocol_error() -> None:
    c = server({ngh2.Setting.MAX_CONCURRENT_STREAMS: 2})
    enc = hpack.Encoder()
    c.receive_data(b"".join(raw_headers(enc, sid, REQ) for sid in (1, 3, 5)))
    assert names(c.events()).count("RequestReceived") == 2
    assert [g.error_code for g in goaways(parse_frames(c.data_to_send()))] == [1]
