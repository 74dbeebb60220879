"""``protocol: h2`` end to end with real HTTP/2 clients (curl, nghttp, h2load) and a real
h2c nginx backend: routing, Linkerd's headers and errors, TLS with ALPN, shutdown."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import urllib.request
from typing import Any

import h2.events
import pytest
import trustme
from turnout.testing import wait_until
from turnout_h2_grpc import GrpcClient
from turnout_h2_rawclient import RawClient, ended

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=10) as r:
        values: dict[str, Any] = json.load(r)
        return values


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "15", *args], capture_output=True, text=True, timeout=timeout
    )


def response_headers(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            break
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return out


@pytest.fixture
def h2c_nginx(nginx_backend: Any) -> Any:
    return lambda name="web": nginx_backend(name, http2=True, access_log=True)


def test_curl_prior_knowledge_to_an_h2c_nginx(h2_proxy, h2c_nginx):
    web = h2c_nginx("web")
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    r = curl("-i", "--http2-prior-knowledge", f"http://127.0.0.1:{proxy.port}/a/b?c=d")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/2 200"), r.stdout
    assert r.stdout.rstrip().endswith("web /a/b?c=d")
    # the backend was spoken to in HTTP/2 too
    assert wait_until(lambda: any("HTTP/2.0" in line for line in web.requests()), timeout=5)


def test_curl_uploads_a_body_through_turnout(h2_proxy):
    """A 100 KB POST (beyond the 64 KB window: credit flows back as turnout forwards it) to
    an endpoint that answers once it has read the whole body. (nginx's `return 200` answers
    before reading a body and then resets the stream, which curl 7.88 reports as an error even
    when it talks to nginx directly: see the next test for what turnout does then.)"""
    from turnout_h2_backend import ScriptedBackend

    backend = ScriptedBackend("reader", "flaky", fail_first=0).start()
    try:
        proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{backend.port}")
        body = bytes(range(256)) * 400
        r = subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "15",
                "--http2-prior-knowledge",
                "--data-binary",
                "@-",
                f"http://127.0.0.1:{proxy.port}/p",
            ],
            input=body,
            capture_output=True,
            timeout=30,
        )
        assert r.returncode == 0 and r.stdout == b"reader\n", r
        assert backend.bodies == [body]
    finally:
        backend.stop()


def test_an_endpoint_that_wants_no_more_of_the_request_stops_the_client(h2_proxy, h2c_nginx):
    """RFC 9113 §8.1: nginx answers in full before the request body has ended, then resets the
    stream with NO_ERROR; turnout relays the whole response, then RST_STREAM NO_ERROR, so that
    the client stops sending (instead of uploading into the void, or waiting for credit)."""
    import hpack
    from turnout_h2_frames import DATA, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, Peer
    from turnout_h2_frames import frame as raw_frame

    web = h2c_nginx("web")
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    peer = Peer(proxy.port)
    post = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"w"), (b":path", b"/p")]
    peer.send(
        raw_frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(post))
        + raw_frame(DATA, 0, 1, b"x" * 16384)  # (and the request does not end)
    )
    assert peer.until(lambda p: p.rst(1) is not None, timeout=10), peer.frames
    assert peer.rst(1) == 0  # NO_ERROR
    body = b"".join(f[3] for f in peer.frames if f[0] == DATA and f[2] == 1)
    assert body == b"web /p\n"
    ends = [f for f in peer.frames if f[2] == 1 and f[1] & END_STREAM and f[0] in (DATA, HEADERS)]
    rst_at = next(i for i, f in enumerate(peer.frames) if f[0] == RST_STREAM)
    assert ends and peer.frames.index(ends[0]) < rst_at  # (the response first, then the reset)
    peer.close()


def test_nghttp_and_h2load(h2_proxy, h2c_nginx):
    web = h2c_nginx("web")
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}")
    r = subprocess.run(
        ["nghttp", "-v", f"http://127.0.0.1:{proxy.port}/n"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "web /n" in r.stdout
    assert ":status: 200" in r.stdout
    r = subprocess.run(
        ["h2load", "-n", "3000", "-c", "4", "-m", "16", f"http://127.0.0.1:{proxy.port}/load"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "3000 succeeded, 0 failed, 0 errored, 0 timeout" in r.stdout, r.stdout
    values = metrics(proxy)
    assert values[f"rt/h2/server/127.0.0.1/{proxy.port}/status/2XX"] == 3001


def test_errors_are_answered_with_l5d_err(h2_proxy, h2c_nginx):
    web = h2c_nginx("web")
    proxy = h2_proxy(
        f"/svc/web => /$/inet/127.0.0.1/{web.port}",
        identifier={"kind": "io.l5d.header.token", "header": "x-svc"},
        bindingTimeoutMs=300,
    )
    base = f"http://127.0.0.1:{proxy.port}/"
    r = curl("-i", "--http2-prior-knowledge", base)
    assert r.stdout.startswith("HTTP/2 400"), r.stdout
    assert "missing header: 'x-svc'" in response_headers(r.stdout)["l5d-err"]
    r = curl("-i", "--http2-prior-knowledge", "-H", "x-svc: nope", base)
    assert r.stdout.startswith("HTTP/2 502"), r.stdout
    assert "Unable to route request!" in r.stdout
    r = curl(
        "-i", "--http2-prior-knowledge", "-H", "x-svc: web", "-H", "l5d-dtab: /svc/web =>", base
    )
    assert r.stdout.startswith("HTTP/2 400"), r.stdout
    assert "l5d-dtab" in response_headers(r.stdout)["l5d-err"]
    # a per-request dtab override routes elsewhere
    other = h2c_nginx("other")
    r = curl(
        "--http2-prior-knowledge",
        "-H",
        "x-svc: web",
        "-H",
        f"l5d-dtab: /svc/web => /$/inet/127.0.0.1/{other.port}",
        base + "o",
    )
    assert r.stdout == "other /o\n", r
    # nothing malformed reached a backend
    assert len(web.requests()) == 0
    values = metrics(proxy)
    assert values[f"rt/h2/server/127.0.0.1/{proxy.port}/unidentified"] == 1


def test_max_call_depth_and_forwarded(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
        server={
            "maxCallDepth": 3,
            "addForwardedHeader": {"by": {"kind": "ip:port"}, "for": {"kind": "ip"}},
        },
    )
    with GrpcClient(proxy.port) as client:
        text = client.unary("Meta", b"", timeout=10, metadata=[("via", "2 a, 2 b")]).decode()
        meta = dict(line.split("=", 1) for line in text.splitlines())
        assert meta["via"] == "2 a, 2 b, 2 turnout"
        text = client.unary("Meta", b"", timeout=10, metadata=[("via", "2 a"), ("via", "2 b")])
        meta = dict(line.split("=", 1) for line in text.decode().splitlines())
        assert meta["via"] == "2 a, 2 b, 2 turnout"  # (several Via headers: all kept, in order)
        assert meta["forwarded"] == f'by="127.0.0.1:{proxy.port}";for=127.0.0.1'
        with pytest.raises(Exception) as err:
            client.unary("Meta", b"", timeout=10, metadata=[("via", "2 a, 2 b, 2 c")])
        assert "Maximum number of calls" in str(err.value)


def test_clear_context_strips_l5d_headers(h2_proxy, grpc_backend):
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
        server={"clearContext": True},
    )
    with GrpcClient(proxy.port) as client:
        text = client.unary(
            "Meta", b"", timeout=10, metadata=[("l5d-dtab", "/svc => /$/fail"), ("l5d-x", "1")]
        ).decode()
    meta = dict(line.split("=", 1) for line in text.splitlines())
    assert "l5d-x" not in meta and "l5d-ctx-dtab" not in meta
    assert meta["l5d-dst-service"] == "/svc/test.Echo"


def test_access_log(h2_proxy, h2c_nginx, tmp_path):
    web = h2c_nginx("web")
    log = tmp_path / "logs" / "access.log"
    proxy = h2_proxy(f"/svc => /$/inet/127.0.0.1/{web.port}", h2AccessLog=str(log))
    r = curl("--http2-prior-knowledge", "-A", "agent/1", f"http://127.0.0.1:{proxy.port}/logged")
    assert r.returncode == 0
    assert wait_until(lambda: log.exists() and "/logged" in log.read_text(), timeout=5)
    line = log.read_text().splitlines()[0]
    assert '"GET /logged HTTP/2" 200 12 "-" "agent/1"' in line, line
    assert line.startswith(f"127.0.0.1:{proxy.port} 127.0.0.1 ")


def test_tls_with_alpn_h2(h2_proxy, h2c_nginx, tmp_path):
    web = h2c_nginx("web")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_path, cert_path, ca_path = (tmp_path / n for n in ("key.pem", "cert.pem", "ca.pem"))
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    ca.cert_pem.write_to_path(ca_path)
    proxy = h2_proxy(
        f"/svc => /$/inet/127.0.0.1/{web.port}",
        server={"tls": {"certPath": str(cert_path), "keyPath": str(key_path)}},
    )
    r = curl("-i", "--http2", "--cacert", str(ca_path), f"https://localhost:{proxy.port}/tls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/2 200") and r.stdout.rstrip().endswith("web /tls"), r.stdout
    # a client that does not offer h2 by ALPN is closed (this server speaks only HTTP/2)
    ctx = ssl.create_default_context(cafile=str(ca_path))
    ctx.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(100) == b""
    assert wait_until(
        lambda: metrics(proxy)[f"rt/h2/server/127.0.0.1/{proxy.port}/h2/alpn_not_h2"] == 1
    )


def test_shutdown_drains_open_streams_with_goaway(h2_proxy, grpc_backend):
    """SIGTERM: the GOAWAY notice goes out at once, an open stream still completes, then the
    final GOAWAY (NO_ERROR) and a clean exit."""
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
    )
    with GrpcClient(proxy.port) as client:
        future = client.method("unary_unary", "Slow").future(b"1.5", timeout=30)
        assert wait_until(lambda: backend.calls["Slow"] == 1, timeout=10)
        proxy.signal()
        assert future.result() == b"cat:slow"
    assert proxy.wait(20) == 0, proxy.log()
    assert "Traceback" not in proxy.log()


def test_grpc_client_through_two_linkers(h2_proxy, grpc_backend):
    """Linker to linker (the service-mesh shape): the local dtab travels as l5d-ctx-dtab."""
    backend = grpc_backend("far")
    decoy = grpc_backend("near")
    inner = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{decoy.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
    )
    outer = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{inner.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
    )
    with GrpcClient(outer.port) as client:
        assert client.unary("Unary", b"x", timeout=10) == b"near:x"
        override = [("l5d-dtab", f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}")]
        # the outer linker routes by the override too: straight to the backend
        assert client.unary("Unary", b"y", timeout=10, metadata=override) == b"far:y"


def test_request_streams_after_the_response_ended(h2_proxy, grpc_backend):
    """A raw stream whose response ends before its request: the rest of the request is
    discarded with its credit returned (the connection keeps working)."""
    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
    )
    raw = RawClient(proxy.port)
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"t"),
        (b":path", b"/test.Echo/Nope"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    for _ in range(3):
        sid = raw.conn.get_next_available_stream_id()
        raw.conn.send_headers(sid, headers)
        raw.conn.send_data(sid, b"\0\0\0\0\x05hello")
        raw.flush()
        events = raw.read(ended(sid), timeout=10)
        status = [
            dict(e.headers).get(b"grpc-status")
            for e in events
            if isinstance(e, h2.events.ResponseReceived | h2.events.TrailersReceived)
            and e.stream_id == sid
        ]
        assert b"12" in status, events  # UNIMPLEMENTED, from the backend
    raw.close()


def test_access_log_rolls_by_size(h2_proxy, h2c_nginx, tmp_path):
    web = h2c_nginx("web")
    log = tmp_path / "access.log"
    proxy = h2_proxy(
        f"/svc => /$/inet/127.0.0.1/{web.port}",
        h2AccessLog=str(log),
        h2AccessLogRollPolicy="1.kilobyte",
        h2AccessLogRotateCount=1,
    )
    url = f"http://127.0.0.1:{proxy.port}/"
    for i in range(4):  # ~100 bytes a line, flushed once a second: rolls between batches
        r = subprocess.run(
            ["h2load", "-n", "15", "-c", "1", url + f"batch{i}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0
        assert wait_until(lambda i=i: log.exists() and f"batch{i}" in log.read_text(), timeout=5)
    rolled = sorted(tmp_path.glob("access.log.*"))
    assert len(rolled) == 1, rolled  # rotate count 1: the older ones removed
    assert "batch2" in rolled[0].read_text() and "batch3" in log.read_text()


def test_shutdown_waits_for_a_response_queued_for_a_slow_client(h2_proxy, grpc_backend):
    """The endpoint has answered in full, but the client's window is closed: turnout holds the
    response (one window at most) and, on SIGTERM, waits for the client to take it before it
    closes the connection (within shutdownGraceMs), instead of cutting it off."""
    import hpack
    from turnout_h2_frames import DATA, END_HEADERS, END_STREAM, HEADERS, Peer
    from turnout_h2_frames import frame as raw_frame
    from turnout_h2_frames import settings as raw_settings
    from turnout_h2_rawclient import grpc_frame

    backend = grpc_backend("cat")
    proxy = h2_proxy(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}",
        identifier={"kind": "io.l5d.header.path", "segments": 1},
    )
    peer = Peer(proxy.port)
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"t"),
        (b":path", b"/test.Echo/Big"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    peer.send(
        raw_settings((4, 0))  # INITIAL_WINDOW_SIZE 0: turnout may send us no DATA yet
        + raw_frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(headers))
        + raw_frame(DATA, END_STREAM, 1, grpc_frame(b"30000"))
    )
    assert wait_until(
        lambda: metrics(proxy).get("rt/h2/service/svc/test.Echo/success") == 1, timeout=10
    )  # (the endpoint's answer is complete; its 30 KB wait in turnout for our window)
    proxy.signal()
    assert peer.until(lambda p: p.goaway() is not None)  # (the shutdown notice)
    time.sleep(1.0)  # (a slow client: turnout must not close the connection meanwhile)
    assert proxy.running()
    peer.send(raw_frame(8, 0, 1, (1 << 20).to_bytes(4, "big")))  # WINDOW_UPDATE, stream 1

    def done(p: Peer) -> bool:
        return any(f[2] == 1 and f[1] & END_STREAM for f in p.frames if f[0] in (DATA, HEADERS))

    assert peer.until(done, timeout=10), peer.frames
    body = sum(len(f[3]) for f in peer.frames if f[0] == DATA and f[2] == 1)
    assert body == 5 + 30000, body
    peer.close()
    assert proxy.wait(20) == 0, proxy.log()
