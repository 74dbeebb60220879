"""The dtab store contract: where namerd keeps one dtab per namespace.

A store is asynchronous and versioned. Every namespace holds a :class:`~turnout.naming.Dtab`
and an opaque version (``bytes``) that changes whenever the dtab is written; the HTTP API
shows it base64-encoded as the ``ETag`` (Linkerd's ``DtabStore.versionString``).

What a store author implements (subclass :class:`DtabStore`):

- ``list()`` → the namespaces that hold a dtab, sorted.
- ``get(ns)`` → ``(dtab, version)``, or ``None`` when the namespace does not exist.
- ``create(ns, dtab)`` → the new version; :class:`NamespaceExists` if it already exists.
- ``put(ns, dtab, expected=None)`` → the new version. Without ``expected`` it is an upsert
  (Linkerd's ``put``: creates a missing namespace). With ``expected`` (Linkerd's ``update``)
  it writes only when the current version equals ``expected``: :class:`VersionMismatch`
  otherwise, :class:`NamespaceNotFound` when the namespace does not exist.
- ``delete(ns)``; :class:`NamespaceNotFound` when it does not exist.
- ``watch(ns)`` → an async iterator of :data:`Versioned` (``(dtab, version)``, or
  ``(None, None)`` while the namespace does not exist). It **always yields the current state
  first**, then each later state. A slow reader may miss intermediate states (it gets the
  latest), but never sees the same version twice in a row.
- ``watch_list()`` → an async iterator of the sorted namespace list, current list first,
  then each change (same coalescing rule).
- ``close()`` → release connections; watches end.

Namespace names are checked by the caller with :func:`check_namespace` before they reach a
store; a store may refuse more (raise :class:`InvalidNamespace`). Any other exception is a
store failure (the HTTP API answers 503, namerd's interpreters keep their last good dtab);
:class:`DtabStoreForbidden` says the store refused namerd's credentials (403).

A store kind is registered with the ``turnout_register_dtab_stores`` hook (see
:mod:`turnout.hookspecs`); its config class subclasses :class:`turnout.namerd.DtabStoreConfig`.
The contract tests in :mod:`turnout.namerd.store_contract` run against any store: subclass
``DtabStoreContract`` and supply a ``make_store`` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from ..errors import TurnoutError
from ..naming import Dtab

T = TypeVar("T")

#: a sorted list of namespace names (an alias: ``list`` is also a method name of stores)
Names = list[str]

#: a namespace's dtab and its version, or ``(None, None)`` when the namespace does not exist
Versioned = tuple[Dtab | None, bytes | None]

_NS = re.compile(r"[A-Za-z0-9_.-]+")


class DtabStoreError(TurnoutError):
    """Base of the errors a store raises for a refused operation."""


class NamespaceExists(DtabStoreError):
    def __init__(self, ns: str) -> None:
        super().__init__(f"The dtab namespace {ns} already exists")
        self.ns = ns


class NamespaceNotFound(DtabStoreError):
    def __init__(self, ns: str) -> None:
        super().__init__(f"The dtab namespace {ns} does not exist")
        self.ns = ns


class VersionMismatch(DtabStoreError):
    def __init__(self) -> None:
        super().__init__("Could not update dtab: current version does not match provided version")


class DtabStoreForbidden(DtabStoreError):
    """The store refused namerd's credentials for this operation (ZooKeeper's NoAuth, an ACL
    token without the right): the HTTP API answers 403, as Linkerd's did."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or "the dtab store refused this operation to namerd")


class InvalidNamespace(DtabStoreError):
    def __init__(self, ns: str, why: str = "") -> None:
        super().__init__(
            f"invalid dtab namespace {ns!r}: "
            + (why or "a namespace is letters, digits, '-', '_' and '.', and not '.' or '..'")
        )
        self.ns = ns


def check_namespace(ns: str) -> str:
    """``ns`` if it is a valid namespace name; :class:`InvalidNamespace` otherwise (no ``/``,
    no ``.``/``..``, no empty name, at most 255 characters)."""
    if not _NS.fullmatch(ns) or ns in (".", "..") or len(ns) > 255:
        raise InvalidNamespace(ns)
    return ns


def version_string(version: bytes) -> str:
    """The ``ETag`` form of a version: base64 (Linkerd's ``DtabStore.versionString``)."""
    return base64.b64encode(version).decode("ascii")


def encode_decimal_version(number: int) -> bytes:
    """The version of a dtab kept in a store that numbers its writes (Consul's
    ``ModifyIndex``, etcd's ``mod_revision``): the number in decimal UTF-8, as Linkerd's
    Consul store makes it."""
    return str(number).encode("utf-8")


def decode_decimal_version(version: bytes) -> int | None:
    """The write number a version made by :func:`encode_decimal_version` names; None when it
    names none (not a positive decimal number: such a version matches nothing)."""
    try:
        text = version.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number > 0 else None


def parse_version(etag: str) -> bytes | None:
    """The version an ``If-Match`` value names, or None when it is not valid base64 (such a
    version matches nothing). Surrounding quotes (a quoted ETag) are accepted."""
    text = etag.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class DtabStore(ABC):
    """A namerd dtab store (see the module docstring for the contract)."""

    @abstractmethod
    async def list(self) -> Names:
        """The namespaces that hold a dtab, sorted."""

    @abstractmethod
    async def get(self, ns: str) -> tuple[Dtab, bytes] | None:
        """The dtab of ``ns`` and its version, or None when ``ns`` does not exist."""

    @abstractmethod
    async def create(self, ns: str, dtab: Dtab) -> bytes:
        """Create ``ns``; its version. :class:`NamespaceExists` when it exists."""

    @abstractmethod
    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        """Write ``ns`` (upsert without ``expected``); the new version."""

    @abstractmethod
    async def delete(self, ns: str) -> None:
        """Delete ``ns``. :class:`NamespaceNotFound` when it does not exist."""

    @abstractmethod
    def watch(self, ns: str) -> AsyncIterator[Versioned]:
        """The current state of ``ns``, then every change (see the module docstring)."""

    @abstractmethod
    def watch_list(self) -> AsyncIterator[Names]:
        """The current namespace list, then every change."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the store holds."""


class ChangeFeed:
    """Wakes watchers when something changed; each watcher re-reads the current state.

    A helper for store authors: call :meth:`notify` after every write, and implement
    ``watch`` as ``feed.follow(lambda: current_state, key)``. Readers get the current state
    first and then the latest state after each change, skipping states they were too slow to
    see and states whose ``key`` equals the one they saw last.
    """

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def notify(self) -> None:
        for event in list(self._events):
            event.set()

    @property
    def watchers(self) -> int:
        return len(self._events)

    async def follow(
        self, current: Callable[[], T], key: Callable[[T], Any] = lambda v: v
    ) -> AsyncIterator[T]:
        event = asyncio.Event()
        self._events.add(event)
        unset = object()
        last: Any = unset
        try:
            while True:
                value = current()
                k = key(value)
                if last is unset or k != last:
                    last = k
                    yield value
                await event.wait()
                event.clear()
        finally:
            self._events.discard(event)


__all__ = [
    "ChangeFeed",
    "DtabStore",
    "DtabStoreError",
    "InvalidNamespace",
    "Names",
    "NamespaceExists",
    "NamespaceNotFound",
    "VersionMismatch",
    "Versioned",
    "check_namespace",
    "parse_version",
    "version_string",
]
