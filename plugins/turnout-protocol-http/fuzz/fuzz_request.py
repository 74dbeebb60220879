"""Coverage-guided fuzz target of the HTTP/1.1 request path (atheris; hypothesis as fallback).

Bytes in: a real :class:`ServerProtocol` of an ``HttpRouter`` built from a small config (an
``io.l5d.fs`` namer naming one backend) gets them through ``data_received`` in one or several
reads; a fake backend answers what reaches it. Out: responses or a clean close. Checked per
input (a violation raises :class:`Finding`, which atheris reports as a crash with the input):

- nothing escapes a protocol callback, a task or a loop callback, and turnout logs no error;
- what goes back to the client is a sequence of ``HTTP/1.1``/``HTTP/1.0`` responses whose
  status lines, headers and framing parse, nothing after a ``Connection: close`` response;
- what goes upstream parses as HTTP/1.1 requests, each with one Host and unambiguous framing;
- a request that turnout refuses with a 4xx while parsing the read that completed it was
  never written upstream (the "validate before forwarding" promise);
- once the client is gone: no request in flight, no connection left, endpoint load back to 0;
- time: each callback's wall time is measured; inputs slower than ``TURNOUT_FUZZ_SLOW_MS``
  (default 50 ms: atheris' coverage instrumentation slows Python several times) are reported
  on stderr and appended to ``TURNOUT_FUZZ_SLOW_LOG`` (a finding, not a crash, unless
  ``TURNOUT_FUZZ_STRICT_TIME=1``).

Input format: byte 0 is the control byte (see :func:`decode`), then split offsets when the
input asks for explicit reads, then the bytes the client sends. :func:`encode` builds one.

Usage::

    python fuzz_request.py [libFuzzer flags] [CORPUS_DIR...]  # atheris, e.g. -max_total_time=60
    python fuzz_request.py --repro FILE...                    # run inputs once, explain failures
    python fuzz_request.py --hypothesis [N]                   # no atheris: hypothesis bytes
    python fuzz_request.py --write-seeds DIR                  # (re)write the seed corpus
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

try:  # atheris instruments the modules imported inside this block (coverage feedback)
    import atheris

    HAVE_ATHERIS = True
except ImportError:  # pragma: no cover - the hypothesis fallback
    atheris = None
    HAVE_ATHERIS = False

_instrument: Any = (
    atheris.instrument_imports(include=["turnout_protocol_http", "turnout"])
    if HAVE_ATHERIS
    else contextlib.nullcontext()
)
with _instrument:
    from turnout.config import load_text
    from turnout.linker import Linker
    from turnout.plugin_manager import load_plugins
    from turnout_protocol_http import downstream, runtime, upstream, wire  # noqa: F401

SEEDS = Path(__file__).parent / "corpus"
SLOW_MS = float(os.environ.get("TURNOUT_FUZZ_SLOW_MS", "50"))
STRICT_TIME = os.environ.get("TURNOUT_FUZZ_STRICT_TIME") == "1"
SLOW_LOG = os.environ.get("TURNOUT_FUZZ_SLOW_LOG")
#: at most this many bytes of one input are sent (bigger inputs only cost time)
MAX_PAYLOAD = 64 * 1024


class Finding(AssertionError):
    """An invariant of the request path was broken by this input."""


# ---------------------------------------------------------------------------------------------
# input format
# ---------------------------------------------------------------------------------------------

#: how the client's bytes are cut into reads (control bits 0-1)
ONE_READ, SPLITS, BYTEWISE, SEVENS = range(4)
#: what the fake backend answers (control bits 2-4)
BACKENDS = (
    "200-length",  # 200 with Content-Length
    "200-chunked",  # 200 chunked, with a trailer
    "204",  # no content
    "interim",  # 100 Continue and 103 Early Hints, then 200
    "close-delimited",  # 200 whose body ends when the backend closes
    "503",  # retryable (the route retries reads)
    "hangup",  # closes without answering
    "101",  # switching to websocket (a tunnel for a WebSocket upgrade, else turnout's 502)
)


@dataclass
class Plan:
    chunking: int
    backend: str
    answer_on_complete: bool  # the backend answers once the request is complete, not at its head
    half_close: bool  # the client ends with a half-close (else the connection is reset)
    sweep: bool  # run the router's housekeeping as if the client then stalled for a minute
    reads: list[bytes] = field(default_factory=list)


def decode(data: bytes) -> Plan:
    """Control byte: bits 0-1 chunking, 2-4 backend, 5 answer-on-complete, 6 half-close,
    7 sweep. With ``SPLITS``, byte 1 (n, mod 8) then n offset bytes (fractions of 256)."""
    if not data:
        return Plan(ONE_READ, BACKENDS[0], False, False, False, [])
    ctrl, rest = data[0], data[1:]
    plan = Plan(ctrl & 3, BACKENDS[(ctrl >> 2) & 7], bool(ctrl & 32), bool(ctrl & 64), ctrl >= 128)
    cuts: list[int] = []
    if plan.chunking == SPLITS and rest:
        n = rest[0] % 8
        offsets, rest = rest[1 : 1 + n], rest[1 + n :]
        cuts = sorted({o * len(rest[:MAX_PAYLOAD]) // 256 for o in offsets})
    payload = rest[:MAX_PAYLOAD]
    if plan.chunking == ONE_READ:
        plan.reads = [payload]
    elif plan.chunking == SPLITS:
        edges = [0, *cuts, len(payload)]
        plan.reads = [payload[a:b] for a, b in itertools.pairwise(edges) if b > a]
    elif plan.chunking == BYTEWISE:
        plan.reads = [payload[i : i + 1] for i in range(min(len(payload), 2048))]
        plan.reads.append(payload[2048:])
    else:
        plan.reads = [payload[i : i + 7] for i in range(0, len(payload), 7)]
    plan.reads = [r for r in plan.reads if r]
    return plan


def encode(
    payload: bytes,
    *,
    chunking: int = ONE_READ,
    backend: str = "200-length",
    answer_on_complete: bool = False,
    half_close: bool = False,
    sweep: bool = False,
    splits: list[int] | None = None,
) -> bytes:
    """The fuzz input of ``payload`` sent as described (``splits``: byte offsets)."""
    ctrl = chunking | BACKENDS.index(backend) << 2
    ctrl |= 32 if answer_on_complete else 0
    ctrl |= 64 if half_close else 0
    ctrl |= 128 if sweep else 0
    head = bytes([ctrl])
    if chunking == SPLITS:
        cuts = splits or []
        assert len(cuts) < 8
        head += bytes([len(cuts)]) + bytes(
            min(255, -(-c * 256 // max(len(payload), 1))) for c in cuts
        )
    return head + payload


# ---------------------------------------------------------------------------------------------
# fakes
# ---------------------------------------------------------------------------------------------


class ClientTransport:
    """The client side of a downstream connection: records writes, close, pauses."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.protocol: Any = None
        self.out = bytearray()
        self.closed = False
        self.eof_written = False
        self.paused = False
        self.lost = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return  # (asyncio drops writes after close; counted as nothing)
        if self.eof_written:
            raise Finding("write after write_eof() on the client connection")
        self.out += data

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:  # (a WebSocket tunnel takes it over)
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.harness.lose_client, None)

    def abort(self) -> None:
        self.close()


class BackendConnection:
    """The backend side of an upstream connection: parses what turnout sends (strictly) and
    answers as the plan says."""

    def __init__(self, harness: Harness, protocol: Any) -> None:
        self.harness = harness
        self.protocol = protocol
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.lost = False
        self.paused = False
        self.sent = bytearray()
        self.broken = False  # the parser failed (reported at once)
        #: requests parsed: [method, headers, head_done, complete, answered]
        self.requests: list[dict[str, Any]] = []
        self.cur: dict[str, Any] | None = None

    # transport
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.harness.upstream_writes += 1
        self.sent += data
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # (only a WebSocket upgrade is forwarded, checked in on_headers_complete; what
            # follows it is not HTTP)
            self.broken = True
        except httptools.HttpParserError as e:
            raise Finding(f"turnout sent upstream what does not parse as HTTP/1.1: {e}") from e

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:  # (a WebSocket tunnel takes it over)
        self.protocol = protocol

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # (no socket: UpstreamProtocol._salvage has nothing to read)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.lose, None)

    abort = close

    def lose(self, exc: Exception | None) -> None:
        if not self.lost:
            self.lost = True
            self.closed = True
            self.harness.call(self.protocol.connection_lost, exc)

    # parser callbacks
    def on_message_begin(self) -> None:
        self.cur = {"headers": [], "head": False, "complete": False, "answered": False}
        self.requests.append(self.cur)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.cur is not None
        self.cur["headers"].append((name.lower(), value))

    def on_headers_complete(self) -> None:
        cur = self.cur
        assert cur is not None
        cur["method"] = self.parser.get_method()
        names = [n for n, _ in cur["headers"]]
        if names.count(b"host") != 1:
            raise Finding(f"a request went upstream with {names.count(b'host')} Host headers")
        if names.count(b"content-length") > 1:
            raise Finding("a request went upstream with several Content-Length headers")
        if b"content-length" in names and b"transfer-encoding" in names:
            raise Finding("a request went upstream with both Content-Length and Transfer-Encoding")
        for bad in (b"upgrade", b"proxy-connection", b"keep-alive", b"te"):
            if bad in names:
                if bad == b"upgrade" and _websocket_upgrade(cur):
                    continue  # (the one upgrade turnout forwards)
                raise Finding(f"hop-by-hop header {bad.decode()!r} went upstream")
        cur["head"] = True

    def on_message_complete(self) -> None:
        assert self.cur is not None
        self.cur["complete"] = True

    # answering
    def step(self, plan: Plan) -> bool:
        """Answer the oldest unanswered request if it is ready to be answered."""
        if self.closed or getattr(self.protocol, "ex", None) is None:
            return False  # (idle, or a tunnel's now)
        for req in self.requests:
            if req["answered"]:
                continue
            if not req["head"] or (plan.answer_on_complete and not req["complete"]):
                return False
            req["answered"] = True
            self.answer(plan.backend, req["method"] == b"HEAD")
            return True
        return False

    def answer(self, kind: str, head_only: bool) -> None:
        def body(b: bytes) -> bytes:
            return b"" if head_only else b

        h = self.harness
        up = self.protocol
        if kind == "200-length":
            h.call(
                up.data_received, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n" + body(b"ok\n")
            )
        elif kind == "200-chunked":
            h.call(
                up.data_received,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-B: 1\r\n\r\n"
                + body(b"3\r\nok\n\r\n0\r\nX-Trailer: t\r\n\r\n"),
            )
        elif kind == "204":
            h.call(up.data_received, b"HTTP/1.1 204 No Content\r\nX-B: 1\r\n\r\n")
        elif kind == "interim":
            h.call(up.data_received, b"HTTP/1.1 100 Continue\r\n\r\n")
            h.call(up.data_received, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
            h.call(up.data_received, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body(b"ok"))
        elif kind == "close-delimited":
            h.call(up.data_received, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body(b"ok"))
            self.close()
        elif kind == "503":
            h.call(up.data_received, b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
        elif kind == "hangup":
            self.close()
        else:
            h.call(
                up.data_received,
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                b"Upgrade: websocket\r\n\r\n",
            )


def _websocket_upgrade(req: dict[str, Any]) -> bool:
    """A WebSocket opening handshake as turnout forwards it: GET, ``Upgrade: websocket``,
    ``Connection: Upgrade``, no body."""
    headers = req["headers"]
    return (
        req["method"] == b"GET"
        and [v for n, v in headers if n == b"upgrade"] == [b"websocket"]
        and [v for n, v in headers if n == b"connection"] == [b"Upgrade"]
        and not any(n in (b"content-length", b"transfer-encoding") for n, _ in headers)
    )


# ---------------------------------------------------------------------------------------------
# the client's view: responses must parse
# ---------------------------------------------------------------------------------------------

_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [\x20-\x7e\x80-\xff]*\r\n")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\t\x80-\xff]*?)[ \t]*\r\n")


def check_responses(out: bytes, methods: list[bytes], ended: bool) -> list[int]:
    """Parse what turnout wrote to the client: a sequence of responses (``methods``: of the
    requests dispatched, in order, to know which answers are to HEAD). Returns the final
    statuses. A last response cut short is accepted (an exchange aborted mid-response)."""
    pos, final, statuses = 0, 0, []
    while pos < len(out):
        if out[pos : pos + 9] not in (b"HTTP/1.1 ", b"HTTP/1.0 "):
            raise Finding(
                f"bytes at {pos} of the client's stream are no status line: {out[pos : pos + 40]!r}"
            )
        m = _STATUS.match(out, pos)
        if m is None:
            end = out.find(b"\r\n", pos)
            if end < 0:
                return statuses  # cut short
            raise Finding(f"malformed status line {out[pos:end]!r}")
        status = int(m.group(1))
        pos = m.end()
        headers: dict[bytes, list[bytes]] = {}
        while not out.startswith(b"\r\n", pos):
            h = _HEADER.match(out, pos)
            if h is None:
                end = out.find(b"\r\n", pos)
                if end < 0:
                    return statuses  # cut short
                raise Finding(f"malformed response header line {out[pos:end]!r}")
            headers.setdefault(h.group(1).lower(), []).append(h.group(2))
            pos = h.end()
        pos += 2
        if status < 200:
            if headers.get(b"content-length") or headers.get(b"transfer-encoding"):
                raise Finding(f"interim response {status} with framing headers")
            continue
        method = methods[final] if final < len(methods) else b"GET"
        final += 1
        statuses.append(status)
        cl = headers.get(b"content-length", [])
        te = headers.get(b"transfer-encoding", [])
        if len(cl) > 1 or (cl and te):
            raise Finding(f"response {status} has ambiguous framing: CL {cl}, TE {te}")
        if cl and not cl[0].isdigit():
            raise Finding(f"response Content-Length {cl[0]!r} is not a number")
        if method == b"HEAD" or status in (204, 304):
            pass
        elif te:
            if not te[-1].lower().rstrip().endswith(b"chunked"):
                raise Finding(f"Transfer-Encoding {te} does not end with chunked")
            while True:
                end = out.find(b"\r\n", pos)
                if end < 0:
                    return statuses
                size_text = out[pos:end].split(b";", 1)[0]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise Finding(f"bad chunk size line {out[pos:end]!r}") from None
                pos = end + 2
                if size == 0:
                    while True:  # trailers
                        end = out.find(b"\r\n", pos)
                        if end < 0:
                            return statuses
                        line, pos = out[pos:end], end + 2
                        if not line:
                            break
                        if _HEADER.fullmatch(line + b"\r\n") is None:
                            raise Finding(f"malformed trailer {line!r}")
                    break
                if len(out) < pos + size + 2:
                    return statuses
                if out[pos + size : pos + size + 2] != b"\r\n":
                    raise Finding("a chunk is not followed by CRLF")
                pos += size + 2
        elif cl:
            pos += int(cl[0])
            if pos > len(out):
                return statuses
        else:
            if not ended:
                raise Finding(f"close-delimited response {status} on a connection kept open")
            return statuses  # the rest is its body
        conn = b",".join(headers.get(b"connection", [])).lower()
        if b"close" in conn and pos < len(out):
            raise Finding(f"{len(out) - pos} bytes after a 'Connection: close' response")
    return statuses


# ---------------------------------------------------------------------------------------------
# the harness
# ---------------------------------------------------------------------------------------------

CONFIG = """
admin: {{port: 0, ip: 127.0.0.1}}
namers: [{{kind: io.l5d.fs, rootDir: {root}, pollIntervalMs: 60000}}]
routers:
- protocol: http
  dtab: |
    /svc => /#/io.l5d.fs/web;
    /svc/teapot => /$/io.buoyant.http.status/418;
    /svc/nowhere => /$/fail;
  client:
    failureAccrual: {{kind: none}}
    requeueBudget: {{minRetriesPerSec: 1000000}}
  service:
    responseClassifier: {{kind: io.l5d.http.retryableRead5XX}}
    retries:
      budget: {{minRetriesPerSec: 1000000}}
      backoff: {{kind: constant, ms: 0}}
  servers: [{{port: 0, ip: 127.0.0.1}}]
"""


class Harness:
    """One router, built once; each input is one client connection."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="turnout-fuzz-"))
        (self.root / "web").write_text("127.0.0.1 9\n")  # (never connected: the fake backend)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self.tasks: list[asyncio.Task[Any]] = []
        self.loop.set_task_factory(self._task_factory)
        self.errors: list[str] = []
        logging.getLogger().addHandler(_ErrorLog(self.errors))
        logging.getLogger().setLevel(logging.ERROR)
        self.router: Any = None
        self.slowest = 0.0
        self.inputs = 0
        # per input
        self.plan = decode(b"")
        self.client = ClientTransport(self)
        self.protocol: Any = None
        self.backends: list[BackendConnection] = []
        self.upstream_writes = 0
        self.read_no = 0
        self.methods: list[bytes] = []
        self.elapsed = 0.0
        self.loop.run_until_complete(self._build())
        # bind the backend's name before the first input (a real proxy has it warm too)
        self.run(encode(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"))

    def _task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> Any:
        task = asyncio.Task(coro, loop=loop, **kw)
        self.tasks.append(task)
        return task

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        text = "".join(traceback.format_exception(exc)) if exc else ""
        self.errors.append(f"loop: {context.get('message')}\n{text}")

    async def _build(self) -> None:
        plugins = load_plugins()
        linker = Linker.build(
            load_text(CONFIG.format(root=self.root), registry=plugins.registry), plugins
        )
        router = self.router = linker.routers[0]
        await router.start()
        if router._sweeper is not None:  # housekeeping runs when an input asks (deterministic)
            router._sweeper.cancel()
        self.server = router.server_runtimes[0]
        if self.server.server is not None:
            self.server.server.close()  # (only fake connections)
        harness = self

        async def connect(pool: Any) -> Any:  # Pool.connect, to a fake backend
            try:
                up = upstream.UpstreamProtocol(pool)
                conn = BackendConnection(harness, up)
                harness.backends.append(conn)
                up.connection_made(conn)
            finally:
                pool.connecting -= 1
            pool.open.add(up)
            return up

        upstream.Pool.connect = connect  # type: ignore[method-assign]
        dispatch = router.dispatch

        def recording_dispatch(ex: Any) -> None:
            if not ex.finished:
                ex.fuzz_read = harness.read_no
                harness.methods.append(ex.method)
            dispatch(ex)

        router.dispatch = recording_dispatch
        respond_local = router.respond_local

        def checked_respond_local(ex: Any, status: int, message: str, **kw: Any) -> None:
            if (
                400 <= status < 500
                and not ex.finished
                and ex.written
                and getattr(ex, "fuzz_read", -1) == harness.read_no
            ):
                raise Finding(
                    f"{status} ({message}) for a request written upstream in the same read"
                )
            respond_local(ex, status, message, **kw)

        router.respond_local = checked_respond_local

    # -- one input ---------------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a protocol callback as the loop would: timed; nothing may escape."""
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except Finding:
            raise
        except BaseException as e:
            raise Finding(f"{type(e).__name__} escaped {fn.__qualname__}: {e}") from e
        finally:
            dt = time.perf_counter() - t0
            self.elapsed = max(self.elapsed, dt)

    def lose_client(self, exc: Exception | None) -> None:
        if not self.client.lost:
            self.client.lost = True
            self.call(self.client.protocol.connection_lost, exc)  # (a tunnel's, if one opened)

    async def settle(self) -> None:
        """Run the loop until nothing is left to do: tasks, callbacks, backend answers."""
        deadline = time.monotonic() + 2.0
        while True:
            for _ in range(3):
                await asyncio.sleep(0)
            moved = False
            for backend in list(self.backends):
                if backend.step(self.plan):
                    moved = True
            pending = [t for t in self.tasks if not t.done() and _awaited(t)]
            if not moved and not pending:
                return
            if time.monotonic() > deadline:
                raise Finding(f"tasks still pending after 2 s: {pending}")
            if pending and not moved:
                await asyncio.sleep(0.001)

    def run(self, data: bytes) -> None:
        self.loop.run_until_complete(self._one(data))

    async def _one(self, data: bytes) -> None:
        plan = self.plan = decode(data)
        self.client = ClientTransport(self)
        self.backends = []
        self.tasks = [t for t in self.tasks if not t.done()]
        self.upstream_writes = 0
        self.methods = []
        self.errors.clear()
        self.elapsed = 0.0
        protocol = self.protocol = downstream.ServerProtocol(self.router, self.server)
        self.client.protocol = protocol
        self.call(protocol.connection_made, self.client)
        for chunk in plan.reads:
            if self.client.closed or self.client.paused:
                break  # a real transport delivers nothing more
            self.read_no += 1
            self.call(protocol.data_received, chunk)
            await self.settle()
        if plan.sweep and not self.client.closed:
            self.read_no += 1
            self.call(self.router.sweep, time.monotonic() + 60)
            await self.settle()
        if not self.client.closed:
            if plan.half_close and not self.client.paused:
                if not self.call(self.client.protocol.eof_received):
                    self.client.close()
            else:
                self.lose_client(ConnectionResetError("reset by the fuzzer"))
            await self.settle()
        if not self.client.lost:
            self.lose_client(ConnectionResetError("reset by the fuzzer"))
            await self.settle()
        self._check(plan)
        for backend in self.backends:  # the next input starts with no connection
            backend.close()
        await self.settle()
        self._check_clean()

    def _check(self, plan: Plan) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                raise Finding(f"task {task.get_coro()} failed: {exc!r}") from exc
        if self.errors:
            raise Finding("errors logged:\n" + "\n".join(self.errors))
        check_responses(bytes(self.client.out), self.methods, ended=True)
        self.inputs += 1
        self.slowest = max(self.slowest, self.elapsed * 1000)
        if self.inputs % 20000 == 0:
            print(
                f"fuzz_request: {self.inputs} inputs, slowest callback {self.slowest:.1f} ms",
                file=sys.stderr,
            )
        if self.elapsed * 1000 > SLOW_MS:
            self.report_slow(plan)

    def _check_clean(self) -> None:
        server = self.server
        if server.in_flight:
            raise Finding(
                f"{server.in_flight} requests still counted in flight after the client left"
            )
        if server.connections:
            raise Finding(f"{len(server.connections)} client connections still registered")
        if server.tunnels:
            raise Finding(f"{len(server.tunnels)} tunnels still open after the client left")
        for client in self.router.core.clients.values():
            for endpoint in client.endpoints:
                pool = endpoint.pool
                if endpoint.load:
                    raise Finding(
                        f"endpoint {endpoint.address} load {endpoint.load} after the client left"
                    )
                if pool.open or pool.waiters or pool.connecting:
                    raise Finding(
                        f"pool {pool.address}: {len(pool.open)} open, {len(pool.waiters)} waiting, "
                        f"{pool.connecting} connecting after every connection closed"
                    )

    def report_slow(self, plan: Plan) -> None:
        ms = self.elapsed * 1000
        line = (
            f"fuzz_request: slow input: one callback took {ms:.1f} ms "
            f"({plan.backend}, {len(plan.reads)} reads)"
        )
        print(line, file=sys.stderr)
        if SLOW_LOG:
            with open(SLOW_LOG, "a") as f:
                f.write(f"{ms:.1f} {self.current_input.hex()}\n")
        if STRICT_TIME:
            raise Finding(line)

    current_input = b""


def _awaited(task: asyncio.Task[Any]) -> bool:
    """A task of the request path (binding waits, connects, retries), which settle() waits
    for; not the namers' watchers, which live on."""
    name = getattr(task.get_coro(), "__qualname__", "")
    return name.startswith(("HttpRouter.", "Harness._build.<locals>.connect"))


class _ErrorLog(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


_harness: Harness | None = None


def harness() -> Harness:
    global _harness
    if _harness is None:
        _harness = Harness()
    return _harness


def test_one_input(data: bytes) -> None:
    """The fuzz target: one client connection sending ``data`` (see :func:`decode`)."""
    h = harness()
    h.current_input = data
    h.run(data)


# ---------------------------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------------------------


def _req(head: str, *headers: str, body: bytes = b"", eol: bytes = b"\r\n") -> bytes:
    """A request from its request line and header lines (``body`` appended as is)."""
    lines = [head.encode("latin-1"), *(h.encode("latin-1") for h in headers)]
    return eol.join(lines) + eol + eol + body


def seeds() -> Iterator[tuple[str, bytes]]:
    """The seed corpus: valid requests and the tricky ones (smuggling, chunked, Upgrade,
    Expect, pipelining), each under a few read and backend plans."""
    h11, h10, host = "HTTP/1.1", "HTTP/1.0", "Host: web"
    te, cl = "Transfer-Encoding: chunked", "Content-Length"
    get = _req(f"GET / {h11}", host)
    post = _req(f"POST /p {h11}", host, f"{cl}: 5", body=b"hello")
    chunked = _req(f"POST /c {h11}", host, te, body=b"5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n")
    last_chunk = b"0\r\n\r\n"
    requests = {
        "get": get,
        "get-10": _req(f"GET /x?y=1 {h10}", host, "Connection: keep-alive"),
        "get-10-nohost": _req(f"GET / {h10}"),
        "head": _req(f"HEAD / {h11}", host),
        "post": post,
        "chunked": chunked,
        "absolute": _req(f"GET http://web:80/a?b {h11}", "Host: other"),
        "options-star": _req(f"OPTIONS * {h11}", host),
        "trace-final": _req(f"TRACE / {h11}", host, "Max-Forwards: 0", "Cookie: c"),
        "options-mf": _req(f"OPTIONS /o {h11}", host, "Max-Forwards: 2"),
        "teapot": _req(f"GET / {h11}", "Host: teapot"),
        "nowhere": _req(f"GET / {h11}", "Host: nowhere"),
        "l5d-dtab": _req(f"GET / {h11}", host, "l5d-dtab: /svc/web => /$/fail"),
        "l5d-dtab-bad": _req(f"GET / {h11}", host, "l5d-dtab: => =>;;"),
        # found by the fuzzer: a non-UTF-8 byte in l5d-dtab made the 400's l5d-err raise
        "l5d-dtab-nonutf8": _req(f"GET / {h11}", host, "l5d-dtab: /svc/we\xf8b => /$/fail"),
        "via-loop": _req(f"GET / {h11}", host, "Via: " + ", ".join(["1.1 x"] * 20)),
        "connection-tokens": _req(f"GET / {h11}", host, "Connection: x-a, close", "X-A: 1"),
        "expect": _req(f"PUT /e {h11}", host, "Expect: 100-continue", f"{cl}: 3", body=b"abc"),
        "expect-other": _req(f"PUT /e {h11}", host, "Expect: x", f"{cl}: 0"),
        "upgrade": _req(f"GET /ws {h11}", host, "Connection: Upgrade", "Upgrade: websocket") + get,
        # smuggling through Upgrade: the body is the body, whatever Upgrade says
        "upgrade-body": _req(
            f"POST /u {h11}",
            host,
            "Upgrade: foo",
            "Connection: Upgrade",
            f"{cl}: {len(get)}",
            body=get,
        )
        + get,
        "upgrade-chunked": _req(
            f"POST /u {h11}",
            host,
            "Upgrade: h2c",
            "Connection: Upgrade",
            te,
            body=b"%x\r\n" % len(get),
        )
        + get
        + b"\r\n"
        + last_chunk
        + get,
        "connect": _req(f"CONNECT web:443 {h11}", "Host: web:443"),
        "pipelined": get + post + chunked + _req(f"GET /last {h11}", host, "Connection: close"),
        "pipelined-head": _req(f"HEAD / {h11}", host) + get,
        # smuggling: every one of these must be refused before anything goes upstream
        "cl-te": _req(f"POST / {h11}", host, f"{cl}: 4", te, body=last_chunk) + get,
        "te-cl": _req(f"POST / {h11}", host, te, f"{cl}: 3", body=b"1\r\nZ\r\n" + last_chunk),
        "cl-cl": _req(f"POST / {h11}", host, f"{cl}: 3", f"{cl}: 4", body=b"abcd"),
        "te-te": _req(f"POST / {h11}", host, te, "Transfer-Encoding: identity", body=last_chunk),
        "te-obfuscated": _req(
            f"POST / {h11}", host, "Transfer-Encoding: xchunked", body=last_chunk
        ),
        "te-tab": _req(f"POST / {h11}", host, te + "\t", body=last_chunk),
        "te-10": _req(f"POST / {h10}", host, te, body=last_chunk),
        "te-gzip-chunked": _req(
            f"POST / {h11}", host, "Transfer-Encoding: gzip, chunked", body=last_chunk
        ),
        "cl-underscore": _req(f"POST / {h11}", host, "Content_Length: 4", body=b"abcd"),
        "cl-sign": _req(f"POST / {h11}", host, f"{cl}: +4", body=b"abcd"),
        "cl-space": _req(f"POST / {h11}", host, f"{cl} : 4", body=b"abcd"),
        "folded": _req(f"GET / {h11}", host, "X-F: a", " b"),
        "bare-lf": _req(f"GET / {h11}", host, eol=b"\n"),
        "bare-cr": b"GET / HTTP/1.1\rHost: web\r\n\r\n",
        "chunk-ext-lf": _req(f"POST / {h11}", host, te, body=b"3;a\nxyz\r\n" + last_chunk),
        "chunk-size-overflow": _req(
            f"POST / {h11}", host, te, body=b"fffffffffffffffff\r\nx\r\n" + last_chunk
        ),
        "host-dup": _req(f"GET / {h11}", host, "Host: evil"),
        "host-bad": _req(f"GET / {h11}", "Host: web/evil"),
        "host-port": _req(f"GET / {h11}", "Host: web:99999"),
        "host-missing": _req(f"GET / {h11}", "X: y"),
        "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "http09": b"GET /\r\n",
        "version-bad": _req("GET / HTTP/1.2", host),
        "nul-header": _req(f"GET / {h11}", host, "X: a\x00b"),
        "long-line": _req(f"GET /{'a' * 9000} {h11}", host),
        "long-header": _req(f"GET / {h11}", host, "X: " + "v" * 9000),
        "post-partial": _req(f"POST / {h11}", host, f"{cl}: 100", body=b"short"),
        "post-early-close": _req(
            f"POST / {h11}", host, "Connection: close", f"{cl}: 3", body=b"abc"
        )
        + get,
    }
    plans: list[dict[str, Any]] = [
        {},
        {"chunking": BYTEWISE, "backend": "200-chunked", "answer_on_complete": True},
        {"chunking": SPLITS, "splits": [5, 30], "backend": "interim", "half_close": True},
        {"chunking": SEVENS, "backend": "close-delimited", "sweep": True},
        {"backend": "503", "answer_on_complete": True, "half_close": True},
        {"backend": "hangup"},
        {"backend": "101"},
        {"backend": "204", "chunking": SPLITS, "splits": [1]},
    ]
    #: requests tried under every plan (the others under plans 0, 1 and 3)
    every_plan = {"get", "post", "chunked", "pipelined", "expect", "upgrade", "head", "cl-te"}
    every_plan |= {"upgrade-body", "upgrade-chunked"}
    every_plan.add("post-partial")
    for name, payload in requests.items():
        for i, plan in enumerate(plans):
            if name in every_plan or i in (0, 1, 3):
                yield f"{name}-{i}", encode(payload, **plan)


def write_seeds(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, data in seeds():
        (directory / name).write_bytes(data)
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------


def repro(paths: list[str]) -> int:
    """Run inputs once each; print the finding of each failing one. Exit status 1 if any."""
    failed = 0
    harness()  # (a harness that cannot start is no finding of an input)
    for p in paths:
        files = sorted(Path(p).iterdir()) if Path(p).is_dir() else [Path(p)]
        for f in files:
            data = f.read_bytes()
            try:
                test_one_input(data)
            except Exception:
                failed += 1
                print(f"== {f}: {decode(data)}", file=sys.stderr)
                traceback.print_exc()
    h = harness()
    print(
        f"{h.inputs} inputs passed, {failed} failed; slowest callback {h.slowest:.1f} ms",
        file=sys.stderr,
    )
    return 1 if failed else 0


def show(paths: list[str]) -> int:
    """Run inputs once each and print what the client and the backend saw."""
    h = harness()
    for p in paths:
        data = Path(p).read_bytes()
        print(f"== {p}: {decode(data)}")
        try:
            test_one_input(data)
        except Exception:
            traceback.print_exc()
        print(f"-- client received ({len(h.client.out)} bytes):\n{bytes(h.client.out)!r}")
        for i, b in enumerate(h.backends):
            print(f"-- backend connection {i} received:\n{bytes(b.sent)!r}")
    return 0


def run_hypothesis(examples: int) -> int:
    """Fallback without atheris: hypothesis-generated inputs (seeds first, then mutations)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    seed_inputs = [data for _, data in seeds()]
    fragments = st.sampled_from(
        [
            b"\r\n",
            b"\n",
            b": ",
            b"Host: web",
            b"Transfer-Encoding: chunked",
            b"Content-Length: ",
            b"0\r\n\r\n",
            b"GET / HTTP/1.1",
            b"HTTP/1.0",
            b"Connection: close",
            b"Expect: 100-continue",
            b"Upgrade: x",
            b" ",
            b"\t",
            b"\x00",
            b"1",
            b"ff",
            b";",
        ]
    )
    mutated = st.tuples(
        st.sampled_from(seed_inputs),
        st.lists(st.tuples(st.integers(0, 4096), fragments | st.binary(max_size=8)), max_size=6),
    ).map(_splice)

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(mutated | st.binary(max_size=512))
    def fuzz(data: bytes) -> None:
        test_one_input(data)

    fuzz()
    print(f"hypothesis: {harness().inputs} inputs passed", file=sys.stderr)
    return 0


def _splice(arg: tuple[bytes, list[tuple[int, bytes]]]) -> bytes:
    data, edits = arg
    for at, frag in edits:
        at %= max(len(data), 1)
        data = data[:at] + frag + data[at:]
    return data


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--write-seeds"]:
        n = write_seeds(Path(argv[2]) if len(argv) > 2 else SEEDS)
        print(f"{n} seeds written")
        return 0
    if argv[1:2] == ["--show"]:
        return show(argv[2:])
    if argv[1:2] == ["--repro"]:
        return repro(argv[2:] or [str(SEEDS)])
    if argv[1:2] == ["--hypothesis"] or not HAVE_ATHERIS:
        n = int(argv[2]) if len(argv) > 2 and argv[2].isdigit() else 2000
        return run_hypothesis(n)
    harness()  # (built before fuzzing: not counted in the first input's time)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
