"""A small synchronous client of namerd's ``/api/1`` (``io.l5d.httpController``), for the
``turnout dtab list|get|put|delete`` commands (Linkerd's ``namerctl``) and the benchmark.

Only the standard library is used. Errors are :class:`NamerdClientError` subclasses whose
message says what to do: :class:`NamerdUnreachable` (nothing answers at the URL),
:class:`NamespaceMissing` (404), :class:`NamespaceAlreadyExists` (409),
:class:`DtabChanged` (412: the dtab was written by someone else since it was read).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..errors import ParseError, TurnoutError
from ..naming import Dtab

#: the default base URL, and the environment variable that changes it (as namerctl)
DEFAULT_BASE_URL = "http://127.0.0.1:4180"
BASE_URL_ENV = "NAMERCTL_BASE_URL"


class NamerdClientError(TurnoutError):
    """A request to namerd failed; the message is meant for an operator."""


class NamerdUnreachable(NamerdClientError):
    pass


class NamespaceMissing(NamerdClientError):
    pass


class NamespaceAlreadyExists(NamerdClientError):
    pass


class DtabChanged(NamerdClientError):
    pass


@dataclass(frozen=True)
class VersionedDtab:
    """A namespace's dtab as namerd shows it: the text and the ``ETag`` version."""

    namespace: str
    dtab: Dtab
    version: str | None


def default_base_url() -> str:
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def dtab_problem(text: str) -> str | None:
    """Why ``text`` is not a dtab (``line L, column C: <parser message>``), or None."""
    try:
        Dtab.read(text)
    except ParseError as e:
        line, column = position(text, e.offset)
        return f"line {line}, column {column}: {e}"
    return None


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of the 0-based ``offset`` in ``text``."""
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column


class NamerdClient:
    """``/api/1`` of the namerd at ``base_url`` (``http://host:port``, or https)."""

    def __init__(self, base_url: str | None = None, timeout: float = 10.0) -> None:
        url = (base_url or default_base_url()).rstrip("/")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise NamerdClientError(
                f"invalid namerd URL {url!r}: give http://HOST:PORT (namerd's "
                "io.l5d.httpController interface, port 4180 by default)"
            )
        self.base_url = url
        self.timeout = timeout

    # -- requests --------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        import urllib.error  # (with http.client and email: not in a linker that never calls)
        import urllib.request

        req = urllib.request.Request(
            self.base_url + target, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, dict(e.headers.items()), e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise NamerdUnreachable(
                f"namerd at {self.base_url} is unreachable ({reason}); is it running? "
                f"Give its io.l5d.httpController address with --namerd or {BASE_URL_ENV}"
            ) from None

    def _fail(self, what: str, status: int, body: bytes) -> NamerdClientError:
        text = body.decode("utf-8", "replace").strip()
        return NamerdClientError(f"{what}: namerd answered {status}{': ' + text if text else ''}")

    @staticmethod
    def _ns(ns: str) -> str:
        return urllib.parse.quote(ns, safe="")

    # -- the API ---------------------------------------------------------------------------
    def list(self) -> list[str]:
        status, _, body = self._request("GET", "/api/1/dtabs")
        if status != 200:
            raise self._fail("listing namespaces", status, body)
        names = json.loads(body)
        return [str(n) for n in names]

    def get(self, ns: str) -> VersionedDtab:
        status, headers, body = self._request(
            "GET", f"/api/1/dtabs/{self._ns(ns)}", headers={"Accept": "application/dtab"}
        )
        if status == 404:
            raise NamespaceMissing(f"namespace {ns!r} does not exist in namerd ({self.base_url})")
        if status != 200:
            raise self._fail(f"reading namespace {ns!r}", status, body)
        version = next((v for k, v in headers.items() if k.lower() == "etag"), None)
        return VersionedDtab(ns, Dtab.read(body.decode("utf-8")), version)

    def create(self, ns: str, dtab: Dtab) -> None:
        status, _, body = self._request(
            "POST",
            f"/api/1/dtabs/{self._ns(ns)}",
            dtab.show.encode(),
            {"Content-Type": "application/dtab"},
        )
        if status == 409:
            raise NamespaceAlreadyExists(
                f"namespace {ns!r} already exists; update it without --create"
            )
        if status != 204:
            raise self._fail(f"creating namespace {ns!r}", status, body)

    def put(self, ns: str, dtab: Dtab, version: str | None) -> None:
        """Write ``dtab``; with ``version`` only if the namespace is still at that version."""
        headers = {"Content-Type": "application/dtab"}
        if version is not None:
            headers["If-Match"] = version
        status, _, body = self._request(
            "PUT", f"/api/1/dtabs/{self._ns(ns)}", dtab.show.encode(), headers
        )
        if status == 412:
            raise DtabChanged(
                f"the dtab of namespace {ns!r} changed meanwhile (it is no longer version "
                f"{version}); nothing was written: re-run to see the new diff"
            )
        if status == 404:
            raise NamespaceMissing(
                f"namespace {ns!r} does not exist (deleted meanwhile?); use --create"
            )
        if status != 204:
            raise self._fail(f"writing namespace {ns!r}", status, body)

    def delete(self, ns: str) -> None:
        status, _, body = self._request("DELETE", f"/api/1/dtabs/{self._ns(ns)}")
        if status == 404:
            raise NamespaceMissing(f"namespace {ns!r} does not exist in namerd ({self.base_url})")
        if status != 204:
            raise self._fail(f"deleting namespace {ns!r}", status, body)

    def delegate(self, ns: str, path: str, dtab: str = "") -> Any:
        query = urllib.parse.urlencode({"path": path, "dtab": dtab})
        status, _, body = self._request("GET", f"/api/1/delegate/{self._ns(ns)}?{query}")
        if status != 200:
            raise self._fail(f"delegating {path} in {ns!r}", status, body)
        return json.loads(body)


__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DtabChanged",
    "NamerdClient",
    "NamerdClientError",
    "NamerdUnreachable",
    "NamespaceAlreadyExists",
    "NamespaceMissing",
    "VersionedDtab",
    "default_base_url",
    "dtab_problem",
    "position",
]
