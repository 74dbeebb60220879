"""h2 identifiers: a request's header block → a name (or why it has none).

An identifier's :meth:`identify` takes the request headers as a dict of lower-case name →
value (the last value of a repeated header, as Linkerd's ``headers.get``) and returns the
name, or raises :class:`Unidentified` with the reason (answered 400).
"""

from __future__ import annotations

from turnout.api import ParseError, Path


class Unidentified(Exception):
    """The request carries nothing to name it by (answered 400 with the reason)."""


class Identifier:
    def identify(self, headers: dict[bytes, bytes]) -> Path:
        raise NotImplementedError


def _segments(text: str) -> list[str]:
    return [s for s in text.split("/") if s]


class HeaderTokenIdentifier(Identifier):
    """``/<prefix>/<value>`` (Linkerd's h2 ``HeaderTokenIdentifier``)."""

    def __init__(self, prefix: Path, header: str) -> None:
        self.prefix = prefix
        self.name = header
        self.header = header.lower().encode()
        self._cache: dict[bytes, Path] = {}

    def identify(self, headers: dict[bytes, bytes]) -> Path:
        value = headers.get(self.header)
        if not value:
            raise Unidentified(f"missing header: '{self.name}'")
        hit = self._cache.get(value)
        if hit is not None:
            return hit
        try:
            path = self.prefix + Path.of(value.decode("utf-8"))
        except (UnicodeDecodeError, ParseError, ValueError) as e:
            raise Unidentified(f"header '{self.name}' is not a name segment: {e}") from None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[value] = path
        return path


class HeaderPathIdentifier(Identifier):
    """``/<prefix>/<the first N segments>`` of a path header, query and trailing slash
    removed (Linkerd's ``HeaderPathIdentifier``; ``segments: 1`` names a gRPC service)."""

    def __init__(self, prefix: Path, header: str, segments: int | None) -> None:
        self.prefix = prefix
        self.name = header
        self.header = header.lower().encode()
        self.segments = segments
        self._cache: dict[bytes, Path] = {}

    def identify(self, headers: dict[bytes, bytes]) -> Path:
        value = headers.get(self.header, b"")
        hit = self._cache.get(value)
        if hit is not None:
            return hit
        uri = value.split(b"?", 1)[0]
        try:
            parts = _segments(uri.decode("utf-8"))
            n = self.segments
            if n is None:
                if not parts:
                    raise Unidentified("Missing destination path")
            elif len(parts) < n:
                raise Unidentified(f"Path must have at least {n} segment(s)")
            else:
                parts = parts[:n]
            path = self.prefix + Path.of(*parts)
        except (UnicodeDecodeError, ParseError, ValueError) as e:
            raise Unidentified(f"header '{self.name}' is not a path: {e}") from None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[value] = path
        return path


class HeaderNameIdentifier(Identifier):
    """``/<prefix><value>``: the header's value is itself a path (``l5d-name: /web/v2``)."""

    def __init__(self, prefix: Path, header: str) -> None:
        self.prefix = prefix
        self.name = header
        self.header = header.lower().encode()

    def identify(self, headers: dict[bytes, bytes]) -> Path:
        value = headers.get(self.header)
        if not value:
            raise Unidentified(f"missing header: '{self.name}'")
        try:
            return self.prefix + Path.read(value.decode("utf-8"))
        except (UnicodeDecodeError, ParseError, ValueError) as e:
            raise Unidentified(f"header '{self.name}' is not a path: {e}") from None


class StaticIdentifier(Identifier):
    def __init__(self, path: Path) -> None:
        self.path = path

    def identify(self, headers: dict[bytes, bytes]) -> Path:
        return self.path


class FirstOf(Identifier):
    """Identifiers tried in order: the first that names the request wins."""

    def __init__(self, identifiers: list[Identifier]) -> None:
        self.identifiers = identifiers

    def identify(self, headers: dict[bytes, bytes]) -> Path:
        reasons = []
        for identifier in self.identifiers:
            try:
                return identifier.identify(headers)
            except Unidentified as e:
                reasons.append(str(e))
        raise Unidentified("; ".join(reasons))
