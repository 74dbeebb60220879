"""What endpoints do to streams, through a started turnout: a reset in the middle of a
response reaches the client, REFUSED_STREAM is requeued to another endpoint, an endpoint's
GOAWAY sends the streams it did not process elsewhere, the client's stream limit per endpoint
connection opens more connections, the SETTINGS a server advertises are its config's."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import h2.events
import pytest
from turnout.testing import wait_until
from turnout_h2_backend import ScriptedBackend
from turnout_h2_frames import SETTINGS, Peer
from turnout_h2_grpc import GrpcClient
from turnout_h2_rawclient import RawClient, ended

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web"), (b":path", b"/")]


def metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=10) as r:
        values: dict[str, Any] = json.load(r)
        return values


@pytest.fixture
def scripted() -> Iterator[Any]:
    started: list[ScriptedBackend] = []

    def make(name: str, mode: str = "ok", **kw: Any) -> ScriptedBackend:
        backend = ScriptedBackend(name, mode, **kw).start()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.stop()


def test_a_reset_in_the_middle_of_a_response_reaches_the_client(h2_proxy, scripted):
    backend = scripted("web", "reset", code=0x2)
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{backend.port}")
    raw = RawClient(proxy.port)
    sid = raw.request(GET)
    events = raw.read(ended(sid))
    raw.close()
    assert any(isinstance(e, h2.events.ResponseReceived) for e in events), events
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"hello"
    (reset,) = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert reset.error_code == 0x2  # INTERNAL_ERROR, as the endpoint sent it
    assert wait_until(
        lambda: metrics(proxy).get("rt/h2/service/svc/web/failures/reset") == 1, timeout=10
    )


def test_refused_streams_are_requeued_to_another_endpoint(h2_proxy, scripted, disco_dir):
    refusing, good = scripted("refusing", "refuse"), scripted("good")
    disco_dir.write("web", ("127.0.0.1", refusing.port), ("127.0.0.1", good.port))
    proxy = h2_proxy(
        "/svc => /#/io.l5d.fs",
        namers=[{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root)}],
        client={"loadBalancer": {"kind": "roundRobin"}, "failureAccrual": {"kind": "none"}},
    )
    raw = RawClient(proxy.port)
    for _ in range(6):
        sid = raw.request(GET)
        events = raw.read(ended(sid))
        body = b"".join(
            e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
        )
        assert body == b"good\n", events
    raw.close()
    assert len(refusing.requests) >= 2  # (round robin sent some there first)
    values = metrics(proxy)
    assert values["rt/h2/client/#/io.l5d.fs/web/retries/requeues"] == len(refusing.requests)
    assert values["rt/h2/service/svc/web/success"] == 6


def test_streams_an_endpoint_did_not_process_before_its_goaway_go_again(h2_proxy, scripted):
    """The endpoint answers one stream per connection, then GOAWAY (last stream = that one):
    the streams opened meanwhile on that connection are requeued on a new connection."""
    backend = scripted("web", "goaway")
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{backend.port}")
    raw = RawClient(proxy.port)
    sids = [raw.request(GET) for _ in range(4)]
    events = raw.read(lambda ev: all(ended(s)(ev) for s in sids), timeout=15)
    raw.close()
    for sid in sids:
        body = b"".join(
            e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
        )
        assert body == b"web\n", (sid, events)
    assert backend.connections >= 2


def test_the_client_stream_limit_opens_more_connections(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
        client={"maxConcurrentStreamsPerConnection": 2},
    )
    with GrpcClient(proxy.port) as client:
        method = client.method("unary_unary", "Slow")
        futures = [method.future(b"0.5", timeout=30) for _ in range(10)]
        assert [f.result() for f in futures] == [b"cat:slow"] * 10
    values = metrics(proxy)
    assert values[f"rt/h2/client/$/inet/127.0.0.1/{backend.port}/connects"] == 5


def test_the_server_advertises_its_settings(h2_proxy, scripted):
    backend = scripted("web")
    proxy = h2_proxy(
        f"/svc => /$/inet/127.0.0.1/{backend.port}",
        server={
            "maxConcurrentStreamsPerConnection": 77,
            "initialStreamWindowBytes": 1048576,
            "maxFrameBytes": 32768,
            "maxHeaderListBytes": 16384,
        },
    )
    peer = Peer(proxy.port)
    assert peer.until(lambda p: any(f[0] == SETTINGS for f in p.frames))
    payload = next(f[3] for f in peer.frames if f[0] == SETTINGS)
    peer.close()
    settings = {
        int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
        for i in range(0, len(payload), 6)
    }
    assert settings[0x3] == 77  # MAX_CONCURRENT_STREAMS
    assert settings[0x4] == 1048576  # INITIAL_WINDOW_SIZE
    assert settings[0x5] == 32768  # MAX_FRAME_SIZE
    assert settings[0x6] == 16384  # MAX_HEADER_LIST_SIZE


def _request(raw: RawClient, method: bytes, body: bytes | None) -> tuple[int, bytes]:
    headers = [(b":method", method), *GET[1:]]
    sid = raw.request(headers, body)
    events = raw.read(ended(sid))
    status = next(
        int(dict(e.headers)[b":status"])
        for e in events
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid
    )
    data = b"".join(
        e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
    )
    return status, data


RETRIES = {"budget": {"minRetriesPerSec": 10, "percentCanRetry": 1.0}}


def test_retryable_read_5xx_retries_a_get(h2_proxy, scripted):
    backend = scripted("web", "flaky", fail_first=1)
    proxy = h2_proxy(
        f"/svc => /$/inet/127.0.0.1/{backend.port}",
        service={"responseClassifier": {"kind": "io.l5d.h2.retryableRead5XX"}, "retries": RETRIES},
    )
    raw = RawClient(proxy.port)
    assert _request(raw, b"GET", None) == (200, b"web\n")  # (503, then retried)
    raw.close()
    assert len(backend.bodies) == 2
    assert metrics(proxy)["rt/h2/service/svc/web/retries/total"] == 1


def test_a_kept_body_is_sent_again_and_a_long_one_is_not_retried(h2_proxy, scripted):
    """retryableAll5XX: a 1 KB POST body is kept and sent again in full on the retry; a
    20 KB one is longer than retryBufferSize.requestBytes (16383): streamed, never retried."""
    backend = scripted("web", "flaky", fail_first=2)
    proxy = h2_proxy(
        f"/svc => /$/inet/127.0.0.1/{backend.port}",
        service={"responseClassifier": {"kind": "io.l5d.h2.retryableAll5XX"}, "retries": RETRIES},
    )
    raw = RawClient(proxy.port)
    long_body = b"L" * 20_000
    assert _request(raw, b"POST", long_body) == (503, b"busy\n")  # the 1st failure: answered
    small = bytes(range(256)) * 4
    assert _request(raw, b"POST", small) == (200, b"web\n")  # the 2nd fails, is retried
    raw.close()
    assert backend.bodies == [long_body, small, small]
    assert metrics(proxy)["rt/h2/service/svc/web/retries/total"] == 1
