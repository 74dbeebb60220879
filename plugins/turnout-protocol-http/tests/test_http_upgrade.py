"""``Upgrade`` (issue 10, items 1 and 9): a request body is its body whatever ``Upgrade`` says
(no request smuggled through it); ``Upgrade: websocket`` answered ``101`` becomes a byte
tunnel (real aiohttp WebSocket client and server through turnout); other upgrades are
forwarded as plain requests without the hop-by-hop ``Upgrade``, and a ``101`` nobody asked
for is a 502."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web
from turnout.testing import (
    DiscoDir,
    RawClient,
    RecordingBackend,
    build_request,
    chunked_body,
    free_port,
    http_response,
    wait_until,
)
from turnout.testing.loop import ThreadedApp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

INNER = b"GET /smuggled HTTP/1.1\r\nHost: web\r\nX-Inner: 1\r\n\r\n"
SMUGGLE = (
    b"POST /early HTTP/1.1\r\nHost: web\r\nUpgrade: foo\r\nConnection: Upgrade\r\n"
    b"Content-Length: 49\r\n\r\n" + INNER
)
assert len(INNER) == 49


@pytest.fixture(scope="module")
def env(module_proxy, tmp_path_factory) -> Iterator[tuple[int, RecordingBackend]]:
    """One turnout in front of one recording backend (default answers: 200)."""
    with RecordingBackend() as backend:
        disco = DiscoDir(tmp_path_factory.mktemp("disco"))
        disco.write("web", backend)
        proxy = module_proxy(disco=disco)
        yield proxy.port, backend


def metrics(proxy) -> dict:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=5) as r:
        return json.load(r)


# -- item 1: no smuggling through Upgrade -------------------------------------------------------


def test_upgrade_foo_body_with_content_length_is_the_body(env):
    port, backend = env
    backend.reset()
    with RawClient("127.0.0.1", port, timeout=5) as c:
        c.send(SMUGGLE)
        r = c.read_final()
        assert r.status == 200, r
        assert r.body == b"backend /early\n"
        # the connection goes on: the next request is the next request
        c.send(build_request("GET", "/after", {"Host": "web"}))
        r = c.read_final()
        assert r.status == 200 and r.body == b"backend /after\n", r
    reqs = backend.wait_requests(2)
    time.sleep(0.2)
    reqs = backend.requests
    assert [(q.method, q.target) for q in reqs] == [("POST", "/early"), ("GET", "/after")]
    assert reqs[0].body == INNER
    assert reqs[0].header("content-length") == "49"
    assert reqs[0].header("upgrade") is None
    assert "upgrade" not in (reqs[0].header("connection") or "").lower()
    assert b"/smuggled" not in b"".join(q.head for q in reqs)


def test_upgrade_foo_body_split_across_reads(env):
    port, backend = env
    backend.reset()
    head_end = SMUGGLE.index(b"\r\n\r\n") + 4
    with RawClient("127.0.0.1", port, timeout=5) as c:
        c.send(SMUGGLE[: head_end + 10])
        time.sleep(0.2)
        c.send(SMUGGLE[head_end + 10 : head_end + 30])
        time.sleep(0.2)
        c.send(SMUGGLE[head_end + 30 :] + build_request("GET", "/after", {"Host": "web"}))
        first = c.read_final()
        second = c.read_final()
    assert (first.status, first.body) == (200, b"backend /early\n")
    assert (second.status, second.body) == (200, b"backend /after\n")
    reqs = backend.wait_requests(2)
    assert [(q.method, q.target) for q in reqs] == [("POST", "/early"), ("GET", "/after")]
    assert reqs[0].body == INNER


def test_upgrade_foo_chunked_body_is_the_body(env):
    port, backend = env
    backend.reset()
    body = chunked_body([INNER[:20], INNER[20:]], trailers=[("X-Trailer", "t")])
    data = (
        b"POST /early HTTP/1.1\r\nHost: web\r\nUpgrade: foo\r\nConnection: Upgrade\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body
    )
    with RawClient("127.0.0.1", port, timeout=5) as c:
        c.send(data + build_request("GET", "/after", {"Host": "web"}))
        first = c.read_final()
        second = c.read_final()
    assert (first.status, first.body) == (200, b"backend /early\n")
    assert (second.status, second.body) == (200, b"backend /after\n")
    reqs = backend.wait_requests(2)
    time.sleep(0.2)
    reqs = backend.requests
    assert [(q.method, q.target) for q in reqs] == [("POST", "/early"), ("GET", "/after")]
    assert reqs[0].chunked and reqs[0].body == INNER
    assert reqs[0].trailers == [("X-Trailer", "t")]
    assert reqs[0].header("upgrade") is None


def test_consecutive_upgrade_requests_with_bodies(env):
    """Requests after a resumed body are parsed as usual, Upgrade and bodies included."""
    port, backend = env
    backend.reset()
    chunked = (
        b"PUT /second HTTP/1.1\r\nHost: web\r\nUpgrade: bar\r\nConnection: Upgrade\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked_body([INNER])
    )
    with RawClient("127.0.0.1", port, timeout=5) as c:
        c.send(
            SMUGGLE
            + chunked
            + SMUGGLE.replace(b"Connection: Upgrade", b"Connection: Upgrade, close")
        )
        responses = [c.read_final() for _ in range(3)]
        assert c.is_closed(3)
    assert [(r.status, r.body) for r in responses] == [
        (200, b"backend /early\n"),
        (200, b"backend /second\n"),
        (200, b"backend /early\n"),
    ]
    assert responses[2].header("Connection") == "close"
    reqs = backend.wait_requests(3)
    time.sleep(0.2)
    reqs = backend.requests
    assert [(q.method, q.target, q.body) for q in reqs] == [
        ("POST", "/early", INNER),
        ("PUT", "/second", INNER),
        ("POST", "/early", INNER),
    ]


def test_upgrade_h2c_is_not_forwarded(env):
    port, backend = env
    backend.reset()
    h2c = [
        ("Host", "web"),
        ("Connection", "Upgrade, HTTP2-Settings"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
    ]
    with RawClient("127.0.0.1", port, timeout=5) as c:
        c.send(
            build_request("POST", "/h2c", h2c, b"hello")
            + build_request("GET", "/h2c-get", h2c)
            + build_request("GET", "/after", {"Host": "web"})
        )
        responses = [c.read_final() for _ in range(3)]
    assert [(r.status, r.body) for r in responses] == [
        (200, b"backend /h2c\n"),
        (200, b"backend /h2c-get\n"),
        (200, b"backend /after\n"),
    ]
    reqs = backend.wait_requests(3)
    assert [(q.method, q.target) for q in reqs] == [
        ("POST", "/h2c"),
        ("GET", "/h2c-get"),
        ("GET", "/after"),
    ]
    assert reqs[0].body == b"hello"
    for q in reqs:
        assert q.header("upgrade") is None
        assert q.header("http2-settings") is None


def test_websocket_request_then_pipelined_bytes_without_101_are_not_parsed(env):
    """A refused WebSocket upgrade (the backend answers 200): what the client sent after the
    request is never read as HTTP; the connection closes after the response."""
    port, backend = env
    backend.reset()
    ws = build_request(
        "GET",
        "/ws",
        {
            "Host": "web",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    with RawClient("127.0.0.1", port, timeout=5) as c:
        c.send(ws + INNER)
        r = c.read_final()
        assert (r.status, r.body) == (200, b"backend /ws\n")
        assert r.header("Connection") == "close"
        assert c.is_closed(3)
    time.sleep(0.3)
    reqs = backend.requests
    assert [(q.method, q.target) for q in reqs] == [("GET", "/ws")]
    assert reqs[0].header("upgrade") == "websocket"


def _raw_101(req) -> bytes:
    key = req.header("sec-websocket-key") or ""
    import base64
    import hashlib

    accept = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


def test_websocket_pipelined_bytes_before_101_go_through_the_tunnel(
    http_proxy, disco_dir, recording_backend
):
    """Bytes sent right after an upgrade request are the new protocol's: turnout never parses
    them; once the backend answers 101 they reach it through the tunnel, as sent."""

    def respond(req):
        if req.target == "/ws":
            return _raw_101(req)
        # (the backend reads the tunnelled bytes as HTTP: it answers them over the tunnel)
        return http_response(200, b"tunnelled " + req.target.encode() + b"\n")

    backend = recording_backend(respond)
    disco_dir.write("web", backend)
    proxy = http_proxy()
    ws = build_request(
        "GET",
        "/ws",
        {
            "Host": "web",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    with RawClient("127.0.0.1", proxy.port, timeout=5) as c:
        c.send(ws + INNER)
        r = c.read_response()
        assert r.status == 101, r
        assert r.header("Upgrade") == "websocket"
        assert r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        r = c.read_response()
        assert (r.status, r.body) == (200, b"tunnelled /smuggled\n")
        assert r.header("Via") is None  # not relayed by turnout's HTTP path: tunnelled
    reqs = backend.wait_requests(2)
    assert [(q.connection, q.method, q.target) for q in reqs] == [
        (0, "GET", "/ws"),
        (0, "GET", "/smuggled"),
    ]
    assert reqs[1].head == INNER  # byte for byte: no Via, no l5d-* added
    assert backend.connection_count == 1


def test_101_to_a_request_without_websocket_upgrade_is_502(http_proxy, disco_dir):
    switching = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"
        b"foo-protocol bytes"
    )
    with RecordingBackend(switching) as backend:
        disco_dir.write("web", backend)
        proxy = http_proxy()
        for headers in (
            {"Host": "web"},
            {"Host": "web", "Upgrade": "foo", "Connection": "Upgrade"},
        ):
            with RawClient("127.0.0.1", proxy.port, timeout=5) as c:
                c.send(build_request("GET", "/", headers))
                r = c.read_final()
            assert r.status == 502, r
            err = urllib.parse.unquote(r.header("l5d-err") or "")
            assert "upstream switched protocols without an Upgrade: websocket request" in err
            assert "User callback error" not in err
            assert b"foo-protocol" not in r.body


class _HalfCloseBackend:
    """Answers one upgrade with 101, then reads until the client's end of stream and only
    then answers ``got <bytes>`` and closes (a half-close must reach it, the other way kept
    open)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            data = data.split(b"\r\n\r\n", 1)[1]
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(b"got " + data)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def test_tunnel_passes_half_close_on(http_proxy, disco_dir):
    backend = _HalfCloseBackend()
    try:
        disco_dir.write("web", ("127.0.0.1", backend.port))
        proxy = http_proxy()
        ws = build_request(
            "GET", "/ws", {"Host": "web", "Upgrade": "websocket", "Connection": "Upgrade"}
        )
        with RawClient("127.0.0.1", proxy.port, timeout=5) as c:
            c.send(ws)
            assert c.read_response().status == 101
            c.send(b"one ")
            time.sleep(0.1)
            c.send(b"two")
            c.sock.shutdown(socket.SHUT_WR)
            data, closed = c.read_until_close(5)
        assert (data, closed) == (b"got one two", True)
    finally:
        backend.close()


# -- item 9: WebSocket through turnout ---------------------------------------------------------

LARGE = 1_500_000


def _ws_app() -> web.Application:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=8 << 20)
        await ws.prepare(request)
        await ws.send_str("hello from backend " + request.headers.get("l5d-dst-service", "?"))
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
                if len(msg.data) > 1000:  # and a large message of its own
                    await ws.send_bytes(bytes(range(256)) * (LARGE // 256 + 1))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


@pytest.fixture
def ws_backend() -> Iterator[ThreadedApp]:
    app = ThreadedApp("ws-backend", "127.0.0.1", free_port())
    app.start(_ws_app)
    yield app
    app.stop()


async def _ws_session(port: int, *, pause: float = 0.0) -> dict:
    out: dict = {}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"http://127.0.0.1:{port}/ws", headers={"Host": "web"}, max_msg_size=8 << 20
        ) as ws,
    ):
        out["hello"] = (await ws.receive(timeout=5)).data
        if pause:
            await asyncio.sleep(pause)
        await ws.send_str("ping")
        out["text"] = (await ws.receive(timeout=5)).data
        await ws.send_bytes(b"\x00\x01\x02abc")
        out["binary"] = (await ws.receive(timeout=5)).data
        big = bytes(i % 251 for i in range(LARGE))
        await ws.send_bytes(big)
        out["big_echo_ok"] = (await ws.receive(timeout=20)).data == big[::-1]
        out["big_from_backend"] = len((await ws.receive(timeout=20)).data)
        out["closed"] = await ws.close()
        out["close_code"] = ws.close_code
    return out


def test_websocket_through_turnout(http_proxy, disco_dir, ws_backend):
    disco_dir.write("web", ("127.0.0.1", ws_backend.port))
    proxy = http_proxy(router={"label": "edge"})
    out = asyncio.run(_ws_session(proxy.port))
    assert out["hello"] == "hello from backend /svc/web"
    assert out["text"] == "echo:ping"
    assert out["binary"] == b"cba\x02\x01\x00"
    assert out["big_echo_ok"]
    assert out["big_from_backend"] >= LARGE
    assert out["closed"] and out["close_code"] == 1000

    server = f"rt/edge/server/127.0.0.1/{proxy.port}"
    client = "rt/edge/client/#/io.l5d.fs/web"
    assert wait_until(lambda: metrics(proxy)[f"{server}/tunnels"] == 0, 5)
    m = metrics(proxy)
    assert m[f"{server}/upgrades"] == 1
    assert m[f"{server}/status/101"] == 1
    assert m[f"{server}/success"] == 1
    assert m[f"{client}/upgrades"] == 1
    assert m[f"{client}/tunnels"] == 0
    assert m[f"{client}/success"] == 1
    assert m[f"{server}/connections"] == 0


def test_tunnel_back_pressure(http_proxy, disco_dir):
    """A client that does not read stops the backend's writes (through the tunnel's paused
    reads and the sockets' buffers) instead of filling turnout's memory."""
    sent = {"n": 0}
    chunk = b"x" * (1 << 20)

    async def flood(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        for _ in range(64):
            await ws.send_bytes(chunk)
            sent["n"] += 1
        await ws.receive()
        return ws

    def make_app() -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", flood)
        return app

    backend = ThreadedApp("ws-flood", "127.0.0.1", free_port())
    backend.start(make_app)
    try:
        disco_dir.write("web", ("127.0.0.1", backend.port))
        proxy = http_proxy()

        async def run() -> tuple[int, int, int]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(
                    f"http://127.0.0.1:{proxy.port}/ws", headers={"Host": "web"}
                ) as ws,
            ):
                await ws.send_str("go")
                await asyncio.sleep(2.0)  # not reading
                stalled, rss = sent["n"], proxy.rss_kib()
                total = 0
                for _ in range(64):
                    msg = await ws.receive(timeout=10)
                    total += len(msg.data)
                await ws.close()
                return stalled, rss, total

        base = proxy.rss_kib()
        stalled, rss, total = asyncio.run(run())
    finally:
        backend.stop()
    assert total == 64 << 20
    assert stalled < 40, stalled  # the backend was held back well before the end
    assert rss - base < 24 * 1024, (base, rss)


def test_open_tunnel_is_counted_and_survives_idle_sweeps(http_proxy, disco_dir, ws_backend):
    disco_dir.write("web", ("127.0.0.1", ws_backend.port))
    proxy = http_proxy(router={"label": "edge"}, server={"idleTimeoutMs": 500})
    server = f"rt/edge/server/127.0.0.1/{proxy.port}"

    async def run() -> dict:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{proxy.port}/ws", headers={"Host": "web"}) as ws,
        ):
            await ws.receive(timeout=5)
            m = await asyncio.to_thread(metrics, proxy)
            open_tunnels = (m[f"{server}/tunnels"], m["rt/edge/client/#/io.l5d.fs/web/tunnels"])
            await asyncio.sleep(2.5)  # past the idle timeout, through two sweeps
            await ws.send_str("still there?")
            reply = (await ws.receive(timeout=5)).data
            await ws.close()
            return {"open": open_tunnels, "reply": reply}

    out = asyncio.run(run())
    assert out["open"] == (1, 1)
    assert out["reply"] == "echo:still there?"


def test_shutdown_closes_open_tunnels(http_proxy, disco_dir, ws_backend):
    """Draining waits for requests, not for tunnels: those are closed when draining begins."""
    disco_dir.write("web", ("127.0.0.1", ws_backend.port))
    proxy = http_proxy(admin={"shutdownGraceMs": 10000})

    async def run() -> tuple[float, object]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{proxy.port}/ws", headers={"Host": "web"}) as ws,
        ):
            await ws.receive(timeout=5)
            start = time.monotonic()
            proxy.signal(signal.SIGTERM)
            msg = await ws.receive(timeout=8)
            return time.monotonic() - start, msg.type

    elapsed, kind = asyncio.run(run())
    assert kind in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
    assert elapsed < 3, elapsed
    assert proxy.wait(5) == 0
