"""A recording HTTP/1.1 test backend: an asyncio server in a background thread that keeps
every byte it receives, per connection, and answers each request as told."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .loop import LoopThread
from .net import LOCALHOST, free_port


class _Close:
    def __repr__(self) -> str:
        return "CLOSE"


#: In a response part list: close the connection here.
CLOSE: Any = _Close()

#: What a responder returns: raw response bytes; ``None`` (close without answering); or parts
#: written in order: bytes, a float (sleep that many seconds), :data:`CLOSE`.
ResponseSpec = bytes | None | Iterable[Any]
Responder = Callable[["RecordedRequest"], ResponseSpec]


def http_response(
    status: int = 200,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    reason: str = "",
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """Raw bytes of a response with ``Content-Length`` (unless ``length=False``)."""
    from http import HTTPStatus

    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"{version} {status} {reason}"]
    lines += [f"{n}: {v}" for n, v in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked_body(chunks: Iterable[bytes], trailers: Iterable[tuple[str, str]] = ()) -> bytes:
    """Chunked encoding of ``chunks`` (empty ones skipped) with the last chunk and trailers."""
    out = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c]
    out.append(b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in trailers))
    out.append(b"\r\n")
    return b"".join(out)


@dataclass
class RecordedRequest:
    """One request as the backend received it."""

    connection: int
    head: bytes
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    body_size: int = 0
    body_sha256: str = ""
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = False

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive)."""
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def header_names(self) -> list[str]:
        """Lower-cased names of the headers, in order."""
        return [n.lower() for n, _ in self.headers]


@dataclass
class RecordedConnection:
    """One connection to the backend: every byte received (up to the record limit)."""

    index: int
    peer: tuple[str, int]
    raw: bytearray = field(default_factory=bytearray)
    bytes_received: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    closed: bool = False


class _Closed(Exception):
    pass


class RecordingBackend:
    """An HTTP/1.1 server on 127.0.0.1 that records what it receives (see module docstring).

    ``response``: raw bytes sent for every request, or a callable receiving the
    :class:`RecordedRequest` (its ``head`` holds the raw request head) and returning a
    :data:`ResponseSpec`. The default answers ``200`` with ``"<name> <target>\\n"``.
    ``delay``: seconds to wait before answering each request. ``respond_after``: ``"body"``
    (answer once the request body was read) or ``"head"`` (answer at once, read the body
    meanwhile). ``Expect: 100-continue`` gets an interim ``100 Continue`` (unless
    ``send_continue=False``). Bodies are hashed (SHA-256) and counted; at most
    ``record_limit`` bytes of raw input and of each body are kept.
    """

    def __init__(
        self,
        response: bytes | Responder | None = None,
        *,
        name: str = "backend",
        port: int | None = None,
        delay: float = 0.0,
        respond_after: str = "body",
        send_continue: bool = True,
        record_limit: int = 1 << 20,
    ) -> None:
        if respond_after not in ("body", "head"):
            raise ValueError("respond_after is 'body' or 'head'")
        self.name = name
        self.host = LOCALHOST
        self.port = port or free_port()
        self.response = response
        self.delay = delay
        self.respond_after = respond_after
        self.send_continue = send_continue
        self.record_limit = record_limit
        self.connections: list[RecordedConnection] = []
        self.errors: list[str] = []
        self._loops = LoopThread(f"backend-{name}", self._loop_error)
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()

    # -- what was received -----------------------------------------------------------------
    @property
    def address(self) -> str:
        """``"127.0.0.1 <port>"``: a line for an ``io.l5d.fs`` namer file."""
        return f"{self.host} {self.port}"

    def url(self, path: str = "/") -> str:
        """A URL on this backend."""
        return f"http://{self.host}:{self.port}{path}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received (whose head was complete), in arrival order per connection."""
        with self._lock:
            return [r for c in self.connections for r in c.requests]

    @property
    def request_count(self) -> int:
        """How many request heads were received."""
        return len(self.requests)

    @property
    def connection_count(self) -> int:
        """How many connections were accepted."""
        return len(self.connections)

    @property
    def bytes_received(self) -> int:
        """Bytes received over all connections."""
        return sum(c.bytes_received for c in self.connections)

    def raw(self) -> bytes:
        """Every recorded byte, all connections concatenated in order of connection."""
        with self._lock:
            return b"".join(bytes(c.raw) for c in self.connections)

    def reset(self) -> None:
        """Forget what was recorded: closed connections are dropped, open ones (turnout's
        pooled connections) stay listed with their records emptied."""
        with self._lock:
            self.connections[:] = [c for c in self.connections if not c.closed]
            for c in self.connections:
                c.raw.clear()
                c.bytes_received = 0
                c.requests.clear()
            self.errors.clear()

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``n`` requests were received (and complete); return them all."""
        deadline = time.monotonic() + timeout
        while True:
            reqs = self.requests
            if len(reqs) >= n and all(r.complete for r in reqs[:n]):
                return reqs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {len(reqs)} of {n} requests in {timeout}s")
            time.sleep(0.01)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> RecordingBackend:
        """Start the server thread and wait until it listens."""
        assert self._loops.loop is None, "already started"
        self._loops.start(timeout)
        self._loops.call(self._listen(), timeout)
        return self

    async def _listen(self) -> None:
        # Not asyncio.start_server: closing a Server while a connection is half accepted
        # leaks that socket (Server._attach asserts), which happens when a test ends.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._listener = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_acceptable)

    def _on_acceptable(self) -> None:
        # accepted synchronously, so that no accepted socket can be lost to a cancellation
        listener = self._listener
        if listener is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:  # BlockingIOError: nothing more to accept now
                return
            sock.setblocking(False)
            self._sockets.add(sock)  # closed by stop() whatever happens to its task
            task = loop.create_task(self._serve(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(str(context.get("exception") or context.get("message")))

    def stop(self, timeout: float = 10.0) -> None:
        """Close the server and every connection, stop the thread (idempotent)."""
        if self._loops.loop is None:
            return
        with contextlib.suppress(Exception):
            self._loops.call(self._shutdown(), timeout)
        self._loops.close(timeout)

    async def _shutdown(self) -> None:
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in list(self._sockets):  # tasks cancelled before they ran
            sock.close()
        self._sockets.clear()

    def __enter__(self) -> RecordingBackend:
        return self.start() if self._loops.loop is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------
    async def _serve(self, sock: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        conn: RecordedConnection | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
            peer = writer.get_extra_info("peername") or ("?", 0)
            with self._lock:
                conn = RecordedConnection(len(self.connections), (peer[0], peer[1]))
                self.connections.append(conn)
            await _Session(self, conn, reader, writer).run()
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as e:  # recorded, not raised: the test asserts on what it needs
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            if conn is not None:
                conn.closed = True
            if writer is not None:
                writer.close()
                with contextlib.suppress(BaseException):
                    await writer.wait_closed()
            sock.close()
            self._sockets.discard(sock)

    def _respond(self, req: RecordedRequest) -> ResponseSpec:
        if self.response is None:
            body = f"{self.name} {req.target}\n".encode()
            return http_response(200, body, [("Content-Type", "text/plain")])
        if callable(self.response):
            return self.response(req)
        return self.response


class _Session:
    """Reads requests from one connection and answers them in order."""

    def __init__(
        self,
        backend: RecordingBackend,
        conn: RecordedConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.backend = backend
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.reading_body = False

    async def _fill(self) -> None:
        data = await self.reader.read(256 * 1024)
        if not data:
            raise _Closed
        conn = self.conn
        conn.bytes_received += len(data)
        room = self.backend.record_limit - len(conn.raw)
        if room > 0:
            conn.raw += data[:room]
        self.buf += data

    async def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > 64 * 1024:
                raise ValueError("line too long")
            await self._fill()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, still reading: a peer that closes meanwhile ends the session at once."""
        if self.reading_body:  # (respond_after="head": the body reader owns the stream)
            await asyncio.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
        try:
            while not sleeper.done():
                filler = asyncio.ensure_future(self._fill())
                await asyncio.wait({sleeper, filler}, return_when=asyncio.FIRST_COMPLETED)
                if filler.done():
                    filler.result()  # raises _Closed when the peer closed
                else:
                    filler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await filler
        finally:
            sleeper.cancel()

    async def run(self) -> None:
        while True:
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                if len(self.buf) > 1 << 20:
                    raise ValueError("request head over 1 MiB")
                await self._fill()
            head = bytes(self.buf[: end + 4])
            del self.buf[: end + 4]
            req = _parse_head(self.conn.index, head)
            with self.backend._lock:
                self.conn.requests.append(req)
            expect = (req.header("expect") or "").lower() == "100-continue"
            if expect and self.backend.send_continue:
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await self.writer.drain()
            if self.backend.respond_after == "head":
                answer = asyncio.ensure_future(self._answer(req))
                try:
                    await self._body(req)
                finally:
                    keep = await answer
            else:
                await self._body(req)
                keep = await self._answer(req)
            if not keep:
                return

    async def _body(self, req: RecordedRequest) -> None:
        self.reading_body = True
        try:
            await self._read_body(req)
        finally:
            self.reading_body = False

    async def _read_body(self, req: RecordedRequest) -> None:
        te = [v.lower() for v in req.header_all("transfer-encoding")]
        digest = hashlib.sha256()
        limit = self.backend.record_limit
        kept = bytearray()

        def take(n: int) -> None:
            data = self.buf[:n]
            digest.update(data)
            if len(kept) < limit:
                kept.extend(data[: limit - len(kept)])
            req.body_size += n
            del self.buf[:n]

        if te and te[-1].endswith("chunked"):
            req.chunked = True
            while True:
                line = await self._line()
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while line := await self._line():
                        name, _, value = line.decode("latin-1").partition(":")
                        req.trailers.append((name, value.strip(" \t")))
                    break
                while size:
                    if not self.buf:
                        await self._fill()
                    n = min(size, len(self.buf))
                    take(n)
                    size -= n
                if await self._line() != b"":
                    raise ValueError("chunk data not followed by CRLF")
        else:
            cl = req.header("content-length")
            remaining = int(cl) if cl and cl.strip().isdigit() else 0
            while remaining:
                if not self.buf:
                    await self._fill()
                n = min(remaining, len(self.buf))
                take(n)
                remaining -= n
        req.body = bytes(kept)
        req.body_sha256 = digest.hexdigest()
        req.complete = True

    async def _answer(self, req: RecordedRequest) -> bool:
        """Send the response; False when the connection is to be closed."""
        backend = self.backend
        if backend.delay:
            await self._sleep(backend.delay)
        spec = backend._respond(req)
        if spec is None:
            return False
        parts: Iterable[Any] = [spec] if isinstance(spec, (bytes, bytearray)) else spec
        for part in parts:
            if part is CLOSE:
                return False
            if isinstance(part, (int, float)):
                await self._sleep(part)
                continue
            self.writer.write(part)
            await self.writer.drain()
        connection = (req.header("connection") or "").lower()
        if req.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def _parse_head(index: int, head: bytes) -> RecordedRequest:
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target, _, version = rest.rpartition(" ")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return RecordedRequest(index, head, method, target, version, headers)
