"""HTTP identifiers: request → logical name (``/svc/web``), computed per request, cached by
the header value so that the common case is one dictionary lookup."""

from __future__ import annotations

from typing import Protocol

from turnout.api import ParseError, Path

_CACHE_LIMIT = 10_000


class Request(Protocol):
    """What identifiers read from a request (implemented by the server's exchange)."""

    method: bytes
    target: bytes
    version: bytes

    def header(self, lname: bytes) -> bytes | None: ...


class Identifier:
    """Returns the name of a request, or ``None`` when this identifier cannot name it."""

    def identify(self, req: Request) -> Path | None:
        raise NotImplementedError


class HeaderTokenIdentifier(Identifier):
    def __init__(self, prefix: Path, header: str) -> None:
        self.prefix = prefix
        self.lname = header.lower().encode("latin-1")
        #: names by header value (public: the HTTP router looks Host up in it directly)
        self.cache: dict[bytes, Path] = {}

    def identify(self, req: Request) -> Path | None:
        value = req.header(self.lname)
        if not value:
            return None
        path = self.cache.get(value)
        if path is None:
            if len(self.cache) > _CACHE_LIMIT:
                self.cache.clear()
            path = self.cache[value] = self.prefix + Path(value)
        return path


def _segments(target: bytes) -> list[bytes]:
    path = target.split(b"?", 1)[0]
    if path.startswith((b"http://", b"https://")):
        path = b"/" + path.split(b"/", 3)[3] if path.count(b"/") >= 3 else b"/"
    return [s for s in path.split(b"/") if s]


class MethodAndHostIdentifier(Identifier):
    def __init__(self, prefix: Path, uri_in_dst: bool) -> None:
        self.prefix = prefix
        self.uri_in_dst = uri_in_dst

    def identify(self, req: Request) -> Path | None:
        elems = [req.version, req.method]
        if req.version == b"1.1":
            host = req.header(b"host")
            if not host:
                return None
            elems.append(host.lower())
        if self.uri_in_dst:
            elems.extend(_segments(req.target))
        return self.prefix + Path(*elems)


class PathIdentifier(Identifier):
    def __init__(self, prefix: Path, segments: int, consume: bool) -> None:
        self.prefix = prefix
        self.segments = segments
        self.consume = consume

    def identify(self, req: Request) -> Path | None:
        parts = _segments(req.target)
        if len(parts) < self.segments:
            return None
        if self.consume:
            req.target = _consume(req.target, self.segments)
        return self.prefix + Path(*parts[: self.segments])


def _consume(target: bytes, n: int) -> bytes:
    """``target`` without its first ``n`` path segments (the query string is kept)."""
    path, sep, query = target.partition(b"?")
    parts = path.split(b"/")
    i, dropped = 0, 0
    while i < len(parts) and dropped < n:
        dropped += 1 if parts[i] else 0
        i += 1
    return b"/" + b"/".join(parts[i:]) + sep + query


class HeaderPathIdentifier(Identifier):
    def __init__(self, prefix: Path, header: str) -> None:
        self.prefix = prefix
        self.lname = header.lower().encode("latin-1")
        self._cache: dict[bytes, Path | None] = {}

    def identify(self, req: Request) -> Path | None:
        value = req.header(self.lname)
        if not value:
            return None
        if value in self._cache:
            return self._cache[value]
        try:
            path: Path | None = self.prefix + Path.read(value.decode("latin-1"))
        except ParseError:
            path = None
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        self._cache[value] = path
        return path


class StaticIdentifier(Identifier):
    def __init__(self, path: Path) -> None:
        self.path = path

    def identify(self, req: Request) -> Path | None:
        return self.path
