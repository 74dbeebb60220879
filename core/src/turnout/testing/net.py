"""Sockets for end-to-end tests: free ports, waiting for listeners, raw HTTP/1.1 exchanges.

Everything here talks to 127.0.0.1 only and every call is bounded by a timeout.
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

LOCALHOST = "127.0.0.1"


#: the ports free_port gave out lately: a test takes several (a router's, the admin's) before
#: anything binds them, and the kernel may hand the same free port out twice in a row
_GIVEN: collections.deque[int] = collections.deque(maxlen=512)


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that was free a moment ago (bound to port 0 by the kernel, then released),
    and not one this process got from free_port lately (so two calls made for one
    configuration never answer the same port)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            break
    _GIVEN.append(port)
    return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether ``host:port`` accepts a TCP connection right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until ``host:port`` accepts connections; :class:`TimeoutError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if port_open(host, port):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted connections on {host}:{port} in {timeout}s")
        time.sleep(0.02)


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02
) -> bool:
    """Call ``predicate()`` until it is true or ``timeout`` passes; return its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1
# ---------------------------------------------------------------------------------------------


@dataclass
class Response:
    """One parsed HTTP/1.x response (see :func:`parse_response`)."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)
    #: "content-length", "chunked", "close" (read to the end) or "none" (bodyless)
    framing: str = "none"
    #: bytes of the raw head (status line and headers, with the blank line)
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def has_header(self, name: str) -> bool:
        """Whether header ``name`` is present (case-insensitive)."""
        return self.header(name) is not None

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")


class Incomplete(ValueError):
    """The bytes end before the response does."""


def _parse_head(data: bytes, start: int) -> tuple[str, int, str, list[tuple[str, str]], int]:
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise Incomplete("response head not complete")
    lines = data[start:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ValueError(f"not an HTTP response: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return version, int(code), reason, headers, end + 4


def _parse_chunked(data: bytes, pos: int) -> tuple[bytes, list[tuple[str, str]], int]:
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Incomplete("chunk size line not complete")
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError(f"bad chunk size {size_text!r}") from None
        pos = eol + 2
        if size == 0:
            trailers: list[tuple[str, str]] = []
            while True:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    raise Incomplete("trailers not complete")
                line = data[pos:eol]
                pos = eol + 2
                if not line:
                    return bytes(body), trailers, pos
                name, _, value = line.decode("latin-1").partition(":")
                trailers.append((name, value.strip(" \t")))
        if len(data) < pos + size + 2:
            raise Incomplete("chunk data not complete")
        body += data[pos : pos + size]
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
        pos += size + 2


def parse_response_at(
    data: bytes, start: int = 0, *, head: bool = False, eof: bool = True
) -> tuple[Response, int]:
    """Parse the response starting at ``data[start]``; return it and the offset after it.

    ``head``: the response answers a HEAD request (no body whatever the headers say).
    ``eof``: ``data`` ends where the connection was closed, so a response without length
    ends there; otherwise :class:`Incomplete` is raised for it. Raises :class:`Incomplete`
    when the bytes end early and :class:`ValueError` when they are not HTTP.
    """
    version, status, reason, headers, pos = _parse_head(data, start)
    raw_head = data[start:pos]
    lower = [(n.lower(), v) for n, v in headers]
    te = [v.lower() for n, v in lower if n == "transfer-encoding"]
    cl = [v for n, v in lower if n == "content-length"]
    if head or status < 200 or status in (204, 304):
        return Response(version, status, reason, headers, b"", [], "none", raw_head), pos
    if te and te[-1].endswith("chunked"):
        body, trailers, end = _parse_chunked(data, pos)
        return Response(version, status, reason, headers, body, trailers, "chunked", raw_head), end
    if cl:
        length = int(cl[0])
        if len(data) < pos + length:
            raise Incomplete(f"body has {len(data) - pos} of {length} bytes")
        body = data[pos : pos + length]
        return Response(version, status, reason, headers, body, [], "content-length", raw_head), (
            pos + length
        )
    if not eof:
        raise Incomplete("close-delimited body: read until the connection closes")
    return Response(version, status, reason, headers, data[pos:], [], "close", raw_head), len(data)


def parse_response(data: bytes, *, head: bool = False) -> Response:
    """Parse the first final (non-1xx) response in ``data`` (interim responses are skipped).

    ``data`` is taken as everything read until the connection closed (a body without
    Content-Length or chunked framing runs to its end).
    """
    pos = 0
    while True:
        response, pos = parse_response_at(data, pos, head=head)
        if response.status >= 200 or response.status == 101:
            return response


def parse_responses(data: bytes, *, head: bool = False) -> list[Response]:
    """Every response in ``data`` (interim 1xx responses included), in order."""
    out = []
    pos = 0
    while pos < len(data):
        response, pos = parse_response_at(data, pos, head=head)
        out.append(response)
    return out


def raw_request(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and return everything received until the peer
    closes the connection or ``timeout`` seconds pass (whichever is first)."""
    with RawClient(host, port, timeout=timeout) as client:
        client.send(data)
        received, _ = client.read_until_close(timeout)
        return received


class RawClient:
    """A client socket that writes exact bytes and reads raw responses (for malformed input,
    pipelining, keep-alive and close detection). Use it as a context manager."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Write ``data`` (all of it)."""
        self.sock.sendall(data)

    def _recv(self, deadline: float) -> bool:
        """Read once into the buffer; False on timeout, sets ``eof`` on close/reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(256 * 1024)
        except TimeoutError:
            return False
        except ConnectionError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def read_response(self, timeout: float | None = None, *, head: bool = False) -> Response:
        """Read and return the next response (1xx included); :class:`TimeoutError` when it
        does not arrive in time, :class:`ConnectionError` when the peer closes first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self.buffer:
                try:
                    response, end = parse_response_at(self.buffer, head=head, eof=self.eof)
                except Incomplete:
                    pass
                else:
                    self.buffer = self.buffer[end:]
                    return response
            if self.eof:
                raise ConnectionError(f"connection closed; unparsed bytes: {self.buffer[:200]!r}")
            if not self._recv(deadline) and not self.eof:
                raise TimeoutError(f"no complete response in time; got {self.buffer[:200]!r}")

    def read_final(self, timeout: float | None = None, *, head: bool = False) -> Response:
        """Read responses until a final (status >= 200) one and return it."""
        while True:
            response = self.read_response(timeout, head=head)
            if response.status >= 200:
                return response

    def read_until_close(self, timeout: float | None = None) -> tuple[bytes, bool]:
        """Read until the peer closes or ``timeout``; return (bytes read, closed?).

        The bytes include what earlier reads left unparsed; the buffer is emptied.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof and time.monotonic() < deadline:
            self._recv(deadline)
        data, self.buffer = self.buffer, b""
        return data, self.eof

    def wait_for(self, data: bytes, timeout: float | None = None) -> bool:
        """Read until the received bytes (kept in ``buffer``) contain ``data``; False when
        the peer closes first or ``timeout`` passes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while data not in self.buffer:
            if self.eof or (not self._recv(deadline) and time.monotonic() >= deadline):
                return data in self.buffer
        return True

    def is_closed(self, timeout: float = 2.0) -> bool:
        """Whether the peer closes the connection within ``timeout`` (bytes that arrive
        meanwhile are kept in the buffer)."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._recv(deadline)
        return self.eof


def build_request(
    method: str = "GET",
    target: str = "/",
    headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    body: bytes | None = None,
    *,
    version: str = "HTTP/1.1",
    close: bool = False,
) -> bytes:
    """Raw bytes of a request. ``Content-Length`` is added for ``body`` unless a
    ``Content-Length`` or ``Transfer-Encoding`` header is given (then ``body`` is sent as is);
    ``close`` adds ``Connection: close``."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    names = {n.lower() for n, _ in items}
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        items.append(("Content-Length", str(len(body))))
    if close and "connection" not in names:
        items.append(("Connection", "close"))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in items)
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def http_request(
    port: int,
    method: str = "GET",
    target: str = "/",
    headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    body: bytes | None = None,
    *,
    host: str = LOCALHOST,
    version: str = "HTTP/1.1",
    timeout: float = 5.0,
) -> Response:
    """One request on a fresh connection (``Connection: close``); the parsed final response.

    A ``Host`` header is not added: give it in ``headers`` (HTTP/1.1 requires it).
    """
    data = build_request(method, target, headers, body, version=version, close=True)
    with RawClient(host, port, timeout=timeout) as client:
        client.send(data)
        return client.read_final(head=method == "HEAD")
