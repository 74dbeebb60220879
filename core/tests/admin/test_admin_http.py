"""The admin server's own HTTP/1.1 (turnout.admin.http), in-process over real sockets on
127.0.0.1: routing (path parameters, 404, 405 with Allow, HEAD), keep-alive, request bodies
(Content-Length, chunked, Expect: 100-continue, limits), malformed requests answered 400 and
closed, aiohttp responses from a plugin's handler converted; and a started ``turnout run`` that
serves its admin (with prometheus and recentRequests) without aiohttp in its memory."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import yaml
from turnout.admin.http import (
    MAX_BODY,
    MAX_HEAD,
    AdminApp,
    AdminError,
    AdminHttpServer,
    AdminRequest,
    AdminResponse,
    compile_path,
)
from turnout.testing import free_port
from turnout.testing.pytest_plugin import turnout_process  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(60)


def echo_app() -> AdminApp:
    app = AdminApp()

    async def echo(request: AdminRequest) -> AdminResponse:
        body = await request.read()
        return AdminResponse.json(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query.items(),
                "match": request.match_info,
                "body": body.decode(),
                "type": request.content_type,
                "form": (await request.post()).items(),
                "host": request.host,
            }
        )

    async def boom(request: AdminRequest) -> AdminResponse:
        raise RuntimeError("a bug")

    async def refuse(request: AdminRequest) -> AdminResponse:
        raise AdminError(409, "taken\n")

    app.add_route("GET", "/echo/{name}.json", echo)
    app.add_route("POST", "/echo/{name}.json", echo)
    app.add_route("GET", "/tail/{rest:.*}", echo)
    app.add_route("POST", "/post-only", echo)
    app.add_route("GET", "/boom", boom)
    app.add_route("GET", "/refuse", refuse)
    return app


def exchange(app: AdminApp, *chunks: bytes, pause: float = 0.0) -> bytes:
    """Send ``chunks`` on one connection to ``app`` served on 127.0.0.1; everything the
    server wrote until it closed the connection (or 2 s of silence)."""

    async def run() -> bytes:
        server = AdminHttpServer(app)
        port = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
            out = b""
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), 2.0)
                except TimeoutError:
                    break
                if not data:
                    break
                out += data
            writer.close()
            return out
        finally:
            await server.close()

    return asyncio.run(run())


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in ``raw`` (each with a Content-Length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0")) if status not in (100, 304) else 0
        out.append((status, headers, rest[:n]))
        raw = rest[n:]
    return out


def test_path_syntax_is_aiohttps() -> None:
    assert compile_path("/a/{name}.json").fullmatch("/a/b.json")["name"] == "b"  # type: ignore[index]
    assert compile_path("/a/{name}.json").fullmatch("/a/b/c.json") is None
    assert compile_path("/n/{p:.*}.json").fullmatch("/n/io.l5d.fs/x.json")["p"] == "io.l5d.fs/x"  # type: ignore[index]
    assert compile_path("/files/{name:.+}").fullmatch("/files/") is None
    assert compile_path("/x.json").fullmatch("/xyjson") is None  # literal dots


def test_keep_alive_parameters_query_and_percent_decoding() -> None:
    raw = exchange(
        echo_app(),
        b"GET /echo/a%20b.json?x=1&x=2&y= HTTP/1.1\r\nHost: h:1\r\n\r\n"
        b"GET /tail/p/q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    (s1, h1, b1), (s2, h2, b2) = responses(raw)
    assert (s1, s2) == (200, 200)
    one = json.loads(b1)
    assert one["path"] == "/echo/a b.json" and one["match"] == {"name": "a b"}
    assert one["query"] == [["x", "1"], ["x", "2"], ["y", ""]] and one["host"] == "h:1"
    assert h1["content-type"] == "application/json; charset=utf-8"
    assert json.loads(b2)["match"] == {"rest": "p/q"} and h2["connection"] == "close"


def test_404_405_and_head() -> None:
    raw = exchange(
        echo_app(),
        b"GET /nowhere HTTP/1.1\r\n\r\n"
        b"GET /post-only HTTP/1.1\r\n\r\n"
        b"DELETE /echo/a.json HTTP/1.1\r\n\r\n"
        b"HEAD /echo/a.json HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    (s1, _, _), (s2, h2, _), (s3, h3, _), (s4, h4, b4) = responses(raw)
    assert (s1, s2, s3, s4) == (404, 405, 405, 200)
    assert h2["allow"] == "POST" and h3["allow"] == "GET,HEAD,POST"
    assert int(h4["content-length"]) > 0 and b4 == b""  # HEAD: the length, no body
    assert raw.endswith(b"\r\n\r\n")


def test_bodies_by_length_chunked_and_expect_continue() -> None:
    form = b"logger=root&level=INFO"
    raw = exchange(
        echo_app(),
        b"POST /echo/f.json HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(form), form),
        b"POST /echo/c.json HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
        b"POST /echo/e.json HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n",
        b"hi",
        pause=0.2,
    )
    got = responses(raw)
    assert [s for s, _, _ in got] == [200, 200, 100, 200]
    assert json.loads(got[0][2])["form"] == [["logger", "root"], ["level", "INFO"]]
    assert json.loads(got[1][2])["body"] == "abcde"
    assert json.loads(got[3][2])["body"] == "hi"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /echo/a.json\r\n\r\n", 400),  # no version
        (b"GET http://x/echo/a.json HTTP/1.1\r\n\r\n", 400),  # not a path
        (b"G(T /echo/a.json HTTP/1.1\r\n\r\n", 400),  # not a token
        (b"GET /echo/a.json HTTP/2.0\r\n\r\n", 400),
        (b"GET /echo/a.json HTTP/1.1\r\nNo colon\r\n\r\n", 400),
        (b"GET /echo/a.json HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"POST /echo/a.json HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", 400),
        (b"POST /echo/a.json HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (
            b"POST /echo/a.json HTTP/1.1\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST /echo/a.json HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /echo/a.json HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /echo/a.json HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
        (b"GET /echo/a.json HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_a_4xx_and_the_connection_closes(
    request_bytes: bytes, status: int
) -> None:
    # a second request on the same connection is never answered
    raw = exchange(echo_app(), request_bytes + b"GET /echo/b.json HTTP/1.1\r\n\r\n")
    got = responses(raw)
    assert [s for s, _, _ in got] == [status]
    assert got[0][1]["connection"] == "close"


def test_a_failing_handler_is_a_500_and_the_connection_lives_on() -> None:
    raw = exchange(
        echo_app(),
        b"GET /boom HTTP/1.1\r\n\r\nGET /refuse HTTP/1.1\r\n\r\n"
        b"GET /echo/a.json HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    got = responses(raw)
    assert [s for s, _, _ in got] == [500, 409, 200]
    assert got[1][2] == b"taken\n"


def test_http_1_0_closes_unless_keep_alive() -> None:
    raw = exchange(
        echo_app(), b"GET /echo/a.json HTTP/1.0\r\n\r\nGET /echo/b.json HTTP/1.0\r\n\r\n"
    )
    assert [s for s, _, _ in responses(raw)] == [200]
    raw = exchange(
        echo_app(),
        b"GET /echo/a.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET /echo/b.json HTTP/1.0\r\n\r\n",
    )
    (s1, h1, _), (s2, h2, _) = responses(raw)
    assert (s1, h1["connection"], s2, h2["connection"]) == (200, "keep-alive", 200, "close")


def test_aiohttp_responses_and_exceptions_of_a_plugin_handler_are_served() -> None:
    from aiohttp import web

    app = AdminApp()

    async def plain(request: Any) -> Any:
        return web.Response(text="from aiohttp", headers={"X-Plugin": "1"})

    async def as_json(request: Any) -> Any:
        return web.json_response({"a": [1]}, status=201)

    async def missing(request: Any) -> Any:
        raise web.HTTPNotFound(text="gone\n")

    handlers: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "/plain": plain,
        "/json": as_json,
        "/missing": missing,
    }
    for path, handler in handlers.items():
        app.add_route("GET", path, handler)
    raw = exchange(
        app,
        b"GET /plain HTTP/1.1\r\n\r\nGET /json HTTP/1.1\r\n\r\n"
        b"GET /missing HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    (s1, h1, b1), (s2, h2, b2), (s3, _, b3) = responses(raw)
    assert (s1, b1, h1["x-plugin"]) == (200, b"from aiohttp", "1")
    assert h1["content-type"].startswith("text/plain")
    assert (s2, json.loads(b2), h2["content-type"].split(";")[0]) == (
        201,
        {"a": [1]},
        "application/json",
    )
    assert (s3, b3) == (404, b"gone\n")


def test_a_before_hook_answers_first_and_a_removed_route_is_gone() -> None:
    async def hello(request: AdminRequest) -> AdminResponse:
        return AdminResponse(text="hello")

    seen: list[str | None] = []

    def before(request: AdminRequest, route: str | None) -> AdminResponse | None:
        seen.append(route)
        return AdminResponse(status=403, text="no") if request.path == "/secret" else None

    app = AdminApp(before=before)
    app.add_route("GET", "/secret", hello)
    app.add_route("GET", "/hello/{x}", hello)
    app.add_route("GET", "/gone", hello)
    app.remove_routes({id(hello)})
    app.add_route("GET", "/hello/{x}", hello)
    raw = exchange(
        app, b"GET /hello/1 HTTP/1.1\r\n\r\nGET /gone HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert [s for s, _, _ in responses(raw)] == [200, 404]
    assert seen == ["/hello/{x}", None]


def test_close_ends_idle_keep_alive_connections() -> None:
    async def run() -> bytes:
        server = AdminHttpServer(echo_app())
        port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo/a.json HTTP/1.1\r\n\r\n")
        await reader.readuntil(b'"host": ""}')  # the answer; the connection stays open
        await asyncio.wait_for(server.close(), 10)
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return rest

    assert asyncio.run(run()) == b""  # closed by the server


def test_an_idle_connection_is_closed_after_the_idle_timeout_and_reuse_port_shares() -> None:
    async def run() -> tuple[bytes, int, int]:
        server = AdminHttpServer(
            echo_app(), idle_timeout=0.3
        )  # (admin.socketOptions.readTimeoutMs)
        port = await server.start("127.0.0.1", 0, reuse_port=True, keep_alive=True)
        twin = AdminHttpServer(echo_app(), idle_timeout=0.3)  # (either may get the connection)
        twin_port = await twin.start("127.0.0.1", port, reuse_port=True)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # nothing sent: the server closes the connection (the default would wait 75 s)
            rest = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            return rest, port, twin_port
        finally:
            await server.close()
            await twin.close()

    rest, port, twin_port = asyncio.run(run())
    assert rest == b"" and twin_port == port


def test_a_client_that_reads_nothing_is_dropped_after_the_write_timeout() -> None:
    async def big(request: AdminRequest) -> AdminResponse:
        return AdminResponse(body=b"x" * (32 * 1024 * 1024))

    async def run() -> int:
        app = AdminApp()
        app.add_route("GET", "/big", big)
        server = AdminHttpServer(app, write_timeout=0.5)  # (admin.socketOptions.writeTimeoutMs)
        port = await server.start("127.0.0.1", 0)
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\n\r\n")  # and never read
            for _ in range(300):  # the connection is dropped within a few seconds
                await asyncio.sleep(0.1)
                if not server._connections:
                    break
            left = len(server._connections)
            sock.close()
            return left
        finally:
            await server.close()

    assert asyncio.run(run()) == 0


@pytest.mark.integration
def test_a_started_linker_serves_its_admin_without_aiohttp(turnout_process, tmp_path) -> None:  # noqa: F811
    """The admin (with prometheus's and recentRequests' routes) answers, and neither aiohttp
    nor its C extensions are in the process's memory (about 16 MB; docs/performance.md)."""
    pytest.importorskip("turnout_telemeter_prometheus")
    disco = tmp_path / "disco"
    disco.mkdir()
    (disco / "web").write_text("127.0.0.1 9\n")
    proc = turnout_process(
        yaml.safe_dump(
            {
                "admin": {"port": free_port()},
                "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco)}],
                "telemetry": [
                    {"kind": "io.l5d.prometheus"},
                    {"kind": "io.l5d.recentRequests", "sampleRate": 1.0},
                ],
                "routers": [
                    {
                        "protocol": "http",
                        "dtab": "/svc => /#/io.l5d.fs",
                        "servers": [{"port": free_port()}],
                    }
                ],
            }
        )
    )
    host, port = proc.admin_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET /admin/metrics/prometheus HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /requests.json HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /admin/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    got = responses(raw)
    assert [s for s, _, _ in got] == [200, 200, 200]
    assert b"# TYPE" in got[0][2] and json.loads(got[1][2]) == [] and got[2][2] == b"pong"
    with open(f"/proc/{proc.pid}/maps") as f:
        maps = f.read()
    assert "/aiohttp/" not in maps and "/multidict/" not in maps and "/yarl/" not in maps
    assert "turnout" in sys.modules["turnout"].__name__
