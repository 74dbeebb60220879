"""``io.l5d.inMemory``: a dtab store in namerd's memory (lost when namerd stops).

Versions are 8-byte big-endian counters starting at 1, as Linkerd's ``InMemoryDtabStore``
(so the first ``ETag`` is ``AAAAAAAAAAE=``); a namespace deleted and created again starts at
1 again, as in Linkerd.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Mapping

from ..naming import Dtab
from .store import (
    ChangeFeed,
    DtabStore,
    Names,
    NamespaceExists,
    NamespaceNotFound,
    Versioned,
    VersionMismatch,
)

INITIAL_VERSION = 1


def encode_version(n: int) -> bytes:
    return n.to_bytes(8, "big", signed=True)


class InMemoryDtabStore(DtabStore):
    """A :class:`DtabStore` in a dict (see the module docstring)."""

    def __init__(self, namespaces: Mapping[str, Dtab] | None = None) -> None:
        self._dtabs: dict[str, tuple[Dtab, int]] = {
            ns: (dtab, INITIAL_VERSION) for ns, dtab in (namespaces or {}).items()
        }
        # a feed lives while a watcher holds it (its generator does)
        self._feeds: weakref.WeakValueDictionary[str, ChangeFeed] = weakref.WeakValueDictionary()
        self._list_feed = ChangeFeed()

    def _feed(self, ns: str) -> ChangeFeed:
        feed = self._feeds.get(ns)
        if feed is None:
            feed = self._feeds[ns] = ChangeFeed()
        return feed

    def _changed(self, ns: str, listed: bool) -> None:
        feed = self._feeds.get(ns)
        if feed is not None:
            feed.notify()
        if listed:
            self._list_feed.notify()

    def _state(self, ns: str) -> Versioned:
        found = self._dtabs.get(ns)
        return (None, None) if found is None else (found[0], encode_version(found[1]))

    async def list(self) -> Names:
        return sorted(self._dtabs)

    async def get(self, ns: str) -> tuple[Dtab, bytes] | None:
        found = self._dtabs.get(ns)
        return None if found is None else (found[0], encode_version(found[1]))

    async def create(self, ns: str, dtab: Dtab) -> bytes:
        if ns in self._dtabs:
            raise NamespaceExists(ns)
        self._dtabs[ns] = (dtab, INITIAL_VERSION)
        self._changed(ns, listed=True)
        return encode_version(INITIAL_VERSION)

    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        found = self._dtabs.get(ns)
        if expected is not None:
            if found is None:
                raise NamespaceNotFound(ns)
            if encode_version(found[1]) != expected:
                raise VersionMismatch()
        version = INITIAL_VERSION if found is None else found[1] + 1
        self._dtabs[ns] = (dtab, version)
        self._changed(ns, listed=found is None)
        return encode_version(version)

    async def delete(self, ns: str) -> None:
        if self._dtabs.pop(ns, None) is None:
            raise NamespaceNotFound(ns)
        self._changed(ns, listed=True)

    def watch(self, ns: str) -> AsyncIterator[Versioned]:
        # a delete and a re-create both restart at version 1: the key includes the dtab
        return self._feed(ns).follow(lambda: self._state(ns), key=lambda v: (v[1], v[0]))

    def watch_list(self) -> AsyncIterator[Names]:
        return self._list_feed.follow(lambda: sorted(self._dtabs))


__all__ = ["INITIAL_VERSION", "InMemoryDtabStore", "encode_version"]
