"""Memory of the h2 router under volume: a 1 GiB response streamed through it, tens of
thousands of streams, and thousands of streams that end badly (client resets, a dead
endpoint) leave its resident memory bounded and its live state empty. RSS is read from
/proc/<pid>/status of the started turnout."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import grpc
import hpack
import pytest
from turnout.testing import RssSampler, free_port, proc_kib, wait_until
from turnout_h2_frames import END_HEADERS, HEADERS, RST_STREAM, SETTINGS, Peer, frame

pytestmark = [pytest.mark.integration]

MIB = 1 << 20
GIB = 1 << 30
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web"), (b":path", b"/")]


def metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=10) as r:
        values: dict[str, Any] = json.load(r)
        return values


def h2load(url: str, n: int) -> str:
    done = subprocess.run(
        ["h2load", "-n", str(n), "-c", "4", "-m", "16", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"{n} succeeded" in done.stdout, done.stdout
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_one_gib_response_streams_through_bounded_memory(h2_proxy, nginx_backend, tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(GIB)  # sparse: costs no disk
    web = nginx_backend("big", http2=True, locations=[f"location = /big {{ alias {big}; }}"])
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    with RssSampler(proxy.pid) as rss:
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
                f"http://127.0.0.1:{proxy.port}/big",
            ],
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert done.stdout == f"200 {GIB}", (done.stdout, done.stderr)
    peak = max(rss.peak_kib, proc_kib(proxy.pid, "VmHWM"))
    print(f"turnout peak RSS {peak / 1024:.1f} MiB")
    assert peak < 80 * 1024, f"turnout peaked at {peak / 1024:.1f} MiB"  # (~52 MiB at rest)


@pytest.mark.timeout(180)
def test_many_streams_leave_memory_flat(h2_proxy, nginx_backend):
    web = nginx_backend("web", http2=True)
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    url = f"http://127.0.0.1:{proxy.port}/"
    h2load(url, 10_000)  # warm-up: caches, pools, allocator arenas
    before = proc_kib(proxy.pid, "VmRSS")
    h2load(url, 60_000)
    after = proc_kib(proxy.pid, "VmRSS")
    print(f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB over 60,000 streams")
    # a leak of ~100 bytes per stream would add 6 MiB
    assert after - before < 4 * 1024, (before, after)
    assert wait_until(
        lambda: metrics(proxy)[f"rt/h2/server/127.0.0.1/{proxy.port}/connections"] == 0,
        timeout=10,
    )


@pytest.mark.timeout(180)
def test_streams_that_end_badly_leave_nothing_behind(h2_proxy, grpc_backend):
    """Client resets right after the HEADERS (within the rapid-reset limit, over many
    connections) and calls to a dead endpoint: RSS flat after a warm-up, no connection left,
    every stream counted."""
    from turnout_h2_grpc import GrpcClient

    backend = grpc_backend("cat")
    dead = free_port()
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port};"
        f"/svc/dead.Svc => /$/inet/127.0.0.1/{dead}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
    )
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"t"),
        (b":path", b"/test.Echo/Slow"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]

    def resets(connections: int, per_connection: int) -> None:
        for _ in range(connections):
            peer = Peer(proxy.port)
            assert peer.until(lambda p: any(f[0] == SETTINGS for f in p.frames))
            enc = hpack.Encoder()
            wire = b""
            for i in range(per_connection):
                sid = 1 + 2 * i
                wire += frame(HEADERS, END_HEADERS, sid, enc.encode(headers))
                wire += frame(RST_STREAM, 0, sid, b"\0\0\0\x08")
            peer.send(wire)
            peer.send(frame(6, 0, 0, b"done-now"))  # PING: answered once all is read
            assert peer.until(lambda p: any(f[0] == 6 and f[3] == b"done-now" for f in p.frames))
            assert peer.goaway() is None  # (within the rapid-reset limit)
            peer.close()

    def dead_calls(n: int) -> None:
        with GrpcClient(proxy.port) as client:
            call = client.channel.unary_unary("/dead.Svc/Call")
            for _ in range(n):
                with pytest.raises(grpc.RpcError):
                    call(b"x", timeout=10)

    resets(20, 200)  # warm-up (and the counters, caches and arenas they make)
    dead_calls(500)
    before = proc_kib(proxy.pid, "VmRSS")
    resets(20, 200)
    dead_calls(500)
    middle = proc_kib(proxy.pid, "VmRSS")
    resets(20, 200)
    dead_calls(500)
    after = proc_kib(proxy.pid, "VmRSS")
    print(f"RSS {before / 1024:.1f} -> {middle / 1024:.1f} -> {after / 1024:.1f} MiB")
    # each round: 4,000 resets and 500 dead calls; a leak of 200 bytes each would add 0.9 MiB a
    # round, and grow round after round
    assert after - before < 3 * 1024, (before, middle, after)
    server = f"rt/h2/server/127.0.0.1/{proxy.port}"
    assert wait_until(lambda: metrics(proxy)[f"{server}/connections"] == 0, timeout=10)
    values = metrics(proxy)
    assert values[f"{server}/stream/stream_failures"] >= 3 * (4000 + 500)
