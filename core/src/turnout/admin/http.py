"""The admin server's HTTP/1.1: a small asyncio server, its request and response types.

The admin serves a few JSON documents and pages to operators and scrapers; it does not need a
web framework, and importing one (aiohttp and its dependencies: about 16 MB of resident memory,
a third of a linker's) in every turnout process only for it was the largest item of
``docs/performance.md`` "Memory at start-up". This module is the standard library only.

Handlers are ``async def handler(request: AdminRequest) -> AdminResponse``. The request offers
the part of aiohttp's ``web.Request`` that admin handlers use (``method``, ``path``,
``path_qs``, ``query``, ``match_info``, ``headers``, ``host``, ``content_type``,
``can_read_body``, ``read()``, ``text()``, ``json()``, ``post()``), so a handler written for
aiohttp runs unchanged; a handler may also return (or raise) an aiohttp ``web.Response`` or
``web.HTTPException``: it is converted (see :func:`as_admin_response`).

What the server does: keep-alive, request bodies by ``Content-Length`` or chunked (at most
:data:`MAX_BODY` bytes: 413 beyond), ``Expect: 100-continue``, ``HEAD`` on every ``GET``
route, 404 and 405 (with ``Allow``), 400 for a malformed request (then the connection closes),
431 for a head over :data:`MAX_HEAD`, an idle connection closed after :data:`IDLE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

log = logging.getLogger("turnout.admin")

#: the largest request head (request line and headers) read
MAX_HEAD = 32 * 1024
#: the largest request body read (aiohttp's default ``client_max_size``)
MAX_BODY = 1024 * 1024
#: seconds a keep-alive connection may wait for its next request (and a request for its body)
IDLE_TIMEOUT = 75.0

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")


class MultiMap(Mapping[str, str]):
    """Ordered pairs, looked up by name (the first value; ``getall`` for every one). With
    ``fold=True`` names are case-insensitive (headers)."""

    __slots__ = ("_first", "_fold", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]] | None = None, fold: bool = False) -> None:
        self._pairs = list(pairs or ())
        self._fold = fold
        self._first: dict[str, str] = {}
        for name, value in self._pairs:
            self._first.setdefault(name.lower() if fold else name, value)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower() if self._fold else name]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return (name.lower() if self._fold else name) in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def getall(self, name: str, default: list[str] | None = None) -> list[str]:
        key = name.lower() if self._fold else name
        found = [v for n, v in self._pairs if (n.lower() if self._fold else n) == key]
        if not found and default is not None:
            return default
        if not found:
            raise KeyError(name)
        return found

    def items(self) -> Any:  # every pair, as aiohttp's MultiDict does
        return list(self._pairs)

    def __repr__(self) -> str:
        return f"MultiMap({self._pairs!r})"


class AdminRequest:
    """One request to the admin server (see the module docstring). A test builds one with
    ``AdminRequest("GET", "/path?query")`` to call a handler directly."""

    __slots__ = (
        "_body",
        "_query",
        "headers",
        "match_info",
        "method",
        "path",
        "query_string",
        "raw_path",
        "remote",
        "secure",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: MultiMap | None = None,
        body: bytes = b"",
        *,
        version: str = "HTTP/1.1",
        remote: str | None = None,
        secure: bool = False,
    ) -> None:
        self.method = method
        raw_path, _, self.query_string = target.partition("?")
        self.raw_path = raw_path
        self.path = urllib.parse.unquote(raw_path)
        self.version = version
        self.headers = headers if headers is not None else MultiMap(fold=True)
        self.match_info: dict[str, str] = {}
        self.remote = remote
        self.secure = secure
        self._body = body
        self._query: MultiMap | None = None

    @property
    def query(self) -> MultiMap:
        if self._query is None:
            self._query = MultiMap(
                urllib.parse.parse_qsl(self.query_string, keep_blank_values=True)
            )
        return self._query

    @property
    def path_qs(self) -> str:
        return self.raw_path + ("?" + self.query_string if self.query_string else "")

    @property
    def host(self) -> str:
        return self.headers.get("Host", "")

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    @property
    def content_type(self) -> str:
        """The media type of the body, lower case, without parameters (aiohttp's rule:
        ``application/octet-stream`` when the header is missing)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for part in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset":
                return value.strip('"') or None
        return None

    @property
    def can_read_body(self) -> bool:
        return bool(self._body)

    body_exists = can_read_body

    async def read(self) -> bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode(self.charset or "utf-8", errors="replace")

    async def json(self) -> Any:
        return json.loads(await self.text())

    async def post(self) -> MultiMap:
        """The fields of a ``application/x-www-form-urlencoded`` body (empty for any other)."""
        if self.content_type != "application/x-www-form-urlencoded":
            return MultiMap()
        return MultiMap(urllib.parse.parse_qsl(await self.text(), keep_blank_values=True))


class AdminResponse:
    """A complete response: status, headers and body (``text`` is encoded with ``charset``,
    utf-8 by default; ``content_type`` defaults to text/plain when there is a text)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        *,
        status: int = 200,
        text: str | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        charset: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        if text is not None:
            if body is not None:
                raise ValueError("text and body are exclusive")
            body = text.encode(charset or "utf-8")
            if content_type is None and not _has(self.headers, "Content-Type"):
                content_type = "text/plain"
            if content_type is not None and "charset" not in content_type:
                content_type = f"{content_type}; charset={charset or 'utf-8'}"
        elif content_type is not None and charset is not None:
            content_type = f"{content_type}; charset={charset}"
        if content_type is not None:
            self.headers = {k: v for k, v in self.headers.items() if k.lower() != "content-type"}
            self.headers["Content-Type"] = content_type
        self.body = body or b""

    @classmethod
    def json(
        cls, data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> AdminResponse:
        """``data`` as a JSON response (aiohttp's ``web.json_response``)."""
        return cls(
            text=json.dumps(data), status=status, content_type="application/json", headers=headers
        )

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def content_type(self) -> str:
        for name, value in self.headers.items():
            if name.lower() == "content-type":
                return value.split(";", 1)[0].strip()
        return "application/octet-stream"


class AdminError(Exception):
    """Raised by a handler: answer ``status`` with ``text`` (aiohttp's ``HTTPException``)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.response = AdminResponse(status=status, text=text)


def _has(headers: Mapping[str, str], name: str) -> bool:
    return any(k.lower() == name.lower() for k in headers)


def as_admin_response(result: Any) -> AdminResponse:
    """What a handler returned (or raised: an aiohttp ``HTTPException``) as an
    :class:`AdminResponse`. aiohttp's ``web.Response`` is taken apart by its attributes
    (``status``, ``headers``, ``body``), so this module never imports aiohttp."""
    if isinstance(result, AdminResponse):
        return result
    status = getattr(result, "status", None)
    if not isinstance(status, int):
        raise TypeError(
            f"an admin handler returned {type(result).__name__}: return "
            "turnout.api.AdminResponse (or an aiohttp web.Response)"
        )
    body = getattr(result, "body", None)
    if body is None:
        body = b""
    elif not isinstance(body, (bytes, bytearray, memoryview)):
        # an aiohttp payload (a file, a stream): its value when it has one
        value = getattr(body, "_value", None)
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(
                "an admin handler returned a streamed aiohttp response: the admin server "
                "serves complete responses (turnout.api.AdminResponse)"
            )
        body = value
    headers = {
        str(k): str(v)
        for k, v in getattr(result, "headers", {}).items()
        if str(k).lower() not in ("content-length", "transfer-encoding", "connection")
    }
    return AdminResponse(status=status, body=bytes(body), headers=headers)


Handler = Callable[[AdminRequest], Awaitable[Any]]


class _Route:
    __slots__ = ("handler", "method", "path", "pattern")

    def __init__(self, method: str, path: str, handler: Handler) -> None:
        self.method = method.upper()
        self.path = path
        self.pattern = compile_path(path)
        self.handler = handler


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})*))?\}")


def compile_path(path: str) -> re.Pattern[str]:
    """aiohttp's path syntax as a regular expression: ``{name}`` matches one segment,
    ``{name:regex}`` the expression; everything else literally."""
    out, pos = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{m.group(2) or '[^{}/]+'})")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out))


class AdminApp:
    """Routes and the dispatch of one request; ``before`` runs ahead of every handler (the
    admin's security rules): given the request and the matched route's path (None when no
    route matched), it returns a response to send instead, or None."""

    def __init__(
        self,
        before: Callable[[AdminRequest, str | None], AdminResponse | None] | None = None,
    ) -> None:
        self.routes: list[_Route] = []
        self.before = before

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.routes.append(_Route(method, path, handler))

    def remove_routes(self, handlers: set[int]) -> None:
        """Remove the routes whose handler's ``id`` is in ``handlers``."""
        self.routes = [r for r in self.routes if id(r.handler) not in handlers]

    def match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str], list[str]]:
        """The route for ``method path``, its parameters, and (when none) the methods the
        path has."""
        allowed: list[str] = []
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method in (method, "*") or (route.method == "GET" and method == "HEAD"):
                return route, m.groupdict(), []
            allowed.append(route.method)
        return None, {}, allowed

    async def handle(self, request: AdminRequest) -> AdminResponse:
        route, params, allowed = self.match(request.method, request.path)
        if self.before is not None:
            early = self.before(request, route.path if route is not None else None)
            if early is not None:
                return early
        if route is None:
            if allowed:
                if "GET" in allowed:
                    allowed.append("HEAD")
                return AdminResponse(
                    status=405,
                    text="405: Method Not Allowed",
                    headers={"Allow": ",".join(sorted(set(allowed)))},
                )
            return AdminResponse(status=404, text="404: Not Found")
        request.match_info = params
        try:
            return as_admin_response(await route.handler(request))
        except asyncio.CancelledError:
            raise
        except AdminError as e:
            return e.response
        except Exception as e:
            if isinstance(getattr(e, "status", None), int) and hasattr(e, "headers"):
                return as_admin_response(e)  # an aiohttp HTTPException
            log.exception("admin handler of %s %s failed", request.method, request.path)
            return AdminResponse(status=500, text="500: Internal Server Error")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminHttpServer:
    """Serves an :class:`AdminApp` on one listening socket."""

    def __init__(
        self, app: AdminApp, idle_timeout: float = IDLE_TIMEOUT, write_timeout: float | None = None
    ) -> None:
        self.app = app
        #: seconds a response may take to be written (a client that reads nothing), or None
        self.write_timeout = write_timeout
        #: seconds a connection may wait for its next request, and a request for its bytes
        self.idle_timeout = idle_timeout
        self.no_delay, self.keep_alive = True, False  # (admin.socketOptions, set by start)
        self.server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        *,
        reuse_port: bool = False,
        backlog: int = 100,
        no_delay: bool = True,
        keep_alive: bool = False,
    ) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        self.no_delay, self.keep_alive = no_delay, keep_alive
        self.server = await asyncio.start_server(
            self._serve,
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=backlog,
            ssl=ssl_context,
            limit=MAX_HEAD,
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.close()
        for writer in list(self._connections):
            writer.close()  # (a connection's task then ends: its read fails)
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in pending:  # (one still writing to a client that reads nothing)
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self.no_delay))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(self.keep_alive))
            except OSError:  # (the connection is already gone: the read below finds out)
                pass
        peer = writer.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) and peer else None
        secure = writer.get_extra_info("sslcontext") is not None
        try:
            while True:
                try:
                    request = await asyncio.wait_for(
                        self._read_request(reader, writer, remote, secure), self.idle_timeout
                    )
                except _BadRequest as e:
                    await self._write(
                        writer,
                        AdminResponse(status=e.status, text=e.message + "\n"),
                        head_only=False,
                        close=True,
                    )
                    return
                if request is None:
                    return
                response = await self.app.handle(request)
                close = _wants_close(request)
                if not close and request.version == "HTTP/1.0":  # (it asked to keep it)
                    response.headers.setdefault("Connection", "keep-alive")
                await self._write(writer, response, request.method == "HEAD", close)
                if close:
                    return
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ssl.SSLError,
        ):
            return
        except asyncio.CancelledError:
            # close() gave up on this connection: end quietly (asyncio's stream callback
            # logs a connection task that ends cancelled as an error)
            return
        except Exception:
            log.exception("admin connection from %s failed", remote)
        finally:
            self._connections.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _read_request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        remote: str | None,
        secure: bool,
    ) -> AdminRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise _BadRequest(400, "400: incomplete request head") from None
            return None  # the client closed between requests
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "431: request head too large") from None
        lines = head[:-4].split(b"\r\n")
        while lines and not lines[0]:  # (RFC 9112 §2.2: empty lines before a request)
            lines.pop(0)
        parts = lines[0].split(b" ") if lines else []
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
            raise _BadRequest(400, "400: malformed request line")
        method, target, version = (p.decode("latin-1") for p in parts)
        if not target.startswith("/") or any(c in target for c in "\x00\r\n\t "):
            raise _BadRequest(400, "400: the request target must be a path")
        pairs: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                raise _BadRequest(400, "400: malformed header line")
            pairs.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        headers = MultiMap(pairs, fold=True)
        body = await self._read_body(reader, writer, headers)
        return AdminRequest(
            method, target, headers, body, version=version, remote=remote, secure=secure
        )

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: MultiMap
    ) -> bytes:
        encodings = headers.getall("Transfer-Encoding", [])
        lengths = headers.getall("Content-Length", [])
        if encodings and lengths:  # RFC 9112 §6.3: a smuggling attempt
            raise _BadRequest(400, "400: both Transfer-Encoding and Content-Length")
        if encodings:
            if [e.strip().lower() for e in ",".join(encodings).split(",")] != ["chunked"]:
                raise _BadRequest(501, "501: only the chunked transfer coding is supported")
            await self._continue(writer, headers)
            return await _read_chunked(reader)
        if not lengths:
            return b""
        if len(set(lengths)) != 1 or not lengths[0].isdigit():
            raise _BadRequest(400, "400: malformed Content-Length")
        length = int(lengths[0])
        if length > MAX_BODY:
            raise _BadRequest(413, f"413: the body is over {MAX_BODY} bytes")
        if length == 0:
            return b""
        await self._continue(writer, headers)
        return await reader.readexactly(length)

    async def _continue(self, writer: asyncio.StreamWriter, headers: MultiMap) -> None:
        if headers.get("Expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()

    async def _write(
        self, writer: asyncio.StreamWriter, response: AdminResponse, head_only: bool, close: bool
    ) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        has_type = False
        for name, value in response.headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                continue  # never a header split by a handler's value
            has_type = has_type or name.lower() == "content-type"
            lines.append(f"{name}: {value}")
        if not has_type and response.body:
            lines.append("Content-Type: application/octet-stream")
        lines.append(f"Content-Length: {len(response.body)}")
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        writer.write(head if head_only or response.status == 304 else head + response.body)
        try:
            await asyncio.wait_for(writer.drain(), self.write_timeout)
        except TimeoutError:
            writer.transport.abort()  # (a client that reads nothing: its buffer is dropped)
            raise


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(400, "400: malformed chunk size") from None
        if size < 0 or len(body) + size > MAX_BODY:
            raise _BadRequest(413, f"413: the body is over {MAX_BODY} bytes")
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, ignored
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadRequest(400, "400: malformed chunk")


def _wants_close(request: AdminRequest) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" not in tokens
    return "close" in tokens


async def fetch(
    host: str,
    port: int,
    method: str,
    target: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 15.0,
) -> AdminResponse:
    """One request to an admin server (a worker's, from the supervisor of ``workers: N``) on a
    new connection, ``Connection: close``; the response (its body by ``Content-Length``, else
    until the server closes). Raises OSError (TimeoutError on ``timeout``) or ValueError for a
    response that is not HTTP/1.x."""

    async def exchange() -> AdminResponse:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
        try:
            lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
            for name, value in (headers or {}).items():
                if name.lower() not in ("host", "connection", "content-length"):
                    lines.append(f"{name}: {value}")
            lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1") + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP/1.x response: {status_line[:80]!r}")
            pairs = [(n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in header_lines)]
            got = MultiMap(pairs, fold=True)
            length = got.get("Content-Length")
            if method == "HEAD" or parts[1] in ("204", "304"):
                data = b""
            elif length is not None and length.isdigit():
                data = await reader.readexactly(int(length))
            else:
                data = await reader.read()
            return AdminResponse(status=int(parts[1]), body=data, headers=dict(pairs))
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        raise ConnectionError(f"{host}:{port}: the response ended early ({e})") from None
