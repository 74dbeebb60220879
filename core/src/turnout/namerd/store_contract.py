"""The dtab store contract, as tests any store runs (see :mod:`turnout.namerd.store`).

For tests only (it imports pytest). A store's test module subclasses
:class:`DtabStoreContract` and provides the fixture ``make_store``: a function that
returns a new, empty store, called inside the event loop of the test (a store may open
connections there)::

    from turnout.namerd.store_contract import DtabStoreContract

    class TestEtcdStore(DtabStoreContract):
        @pytest.fixture
        def make_store(self, etcd_server):
            return lambda: EtcdDtabStore(etcd_server.url, path_prefix="/namerd/dtabs")

Each test runs its scenario in ``asyncio.run`` with a bound on every wait (``WAIT``
seconds: generous, for a store that talks to a server on a loaded machine).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from ..naming import Dtab
from .store import DtabStore, NamespaceExists, NamespaceNotFound, VersionMismatch

T = TypeVar("T")
WAIT = 10.0

D = Dtab.read
A = D("/svc=>/#/io.l5d.fs")
B = D("/svc=>/#/io.l5d.fs/b;/host=>/svc")
C = D("/svc/web=>/$/inet/127.0.0.1/8080")

MakeStore = Callable[[], DtabStore]


def run(make_store: MakeStore, scenario: Callable[[DtabStore], Awaitable[T]]) -> T:
    async def main() -> T:
        store = make_store()
        try:
            return await asyncio.wait_for(scenario(store), WAIT * 3)
        finally:
            await store.close()

    return asyncio.run(main())


async def next_of(it: AsyncIterator[T]) -> T:
    return await asyncio.wait_for(it.__anext__(), WAIT)


async def next_matching(it: AsyncIterator[T], pred: Callable[[T], bool]) -> T:
    """The first item satisfying ``pred`` (a store may show intermediate states)."""
    while True:
        item = await next_of(it)
        if pred(item):
            return item


async def nothing_within(it: AsyncIterator[Any], seconds: float = 0.3) -> bool:
    """Whether ``it`` yields nothing for ``seconds`` (a short quiet period; a store that
    yields spuriously fails, one that is slow passes). Ends ``it``."""
    try:
        await asyncio.wait_for(it.__anext__(), seconds)
    except TimeoutError:
        return True
    return False


class DtabStoreContract:
    """Every behaviour turnout expects of a dtab store."""

    @pytest.fixture
    def make_store(self) -> MakeStore:  # pragma: no cover - provided by the subclass
        raise NotImplementedError("a store's test class provides the make_store fixture")

    def test_empty_store(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            assert await store.list() == []
            assert await store.get("default") is None

        run(make_store, scenario)

    def test_create_get_list(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            v1 = await store.create("default", A)
            assert isinstance(v1, bytes)
            assert v1
            assert await store.get("default") == (A, v1)
            await store.create("other", B)
            assert await store.list() == ["default", "other"]
            with pytest.raises(NamespaceExists):
                await store.create("default", B)
            assert await store.get("default") == (A, v1)

        run(make_store, scenario)

    def test_put_is_an_upsert_and_changes_the_version(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            v1 = await store.put("default", A)
            assert await store.get("default") == (A, v1)
            v2 = await store.put("default", B)
            assert v2 != v1
            assert await store.get("default") == (B, v2)
            v3 = await store.put("default", B)  # the same dtab again: still a new version
            assert v3 not in (v1, v2)

        run(make_store, scenario)

    def test_put_with_expected_version(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            with pytest.raises(NamespaceNotFound):
                await store.put("default", A, b"\x00" * 8)
            assert await store.get("default") is None
            v1 = await store.create("default", A)
            v2 = await store.put("default", B, v1)
            assert await store.get("default") == (B, v2)
            with pytest.raises(VersionMismatch):
                await store.put("default", C, v1)  # stale
            with pytest.raises(VersionMismatch):
                await store.put("default", C, b"garbage")
            assert await store.get("default") == (B, v2)  # nothing changed

        run(make_store, scenario)

    def test_delete(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            with pytest.raises(NamespaceNotFound):
                await store.delete("default")
            await store.create("default", A)
            await store.delete("default")
            assert await store.get("default") is None
            assert await store.list() == []
            await store.create("default", B)  # can be created again
            found = await store.get("default")
            assert found is not None
            assert found[0] == B

        run(make_store, scenario)

    def test_watch_yields_the_current_state_first(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            missing = store.watch("default")
            assert await next_of(missing) == (None, None)
            v1 = await store.create("default", A)
            assert await next_matching(missing, lambda s: s[1] is not None) == (A, v1)
            await missing.aclose()  # type: ignore[attr-defined]
            existing = store.watch("default")
            assert await next_of(existing) == (A, v1)
            await existing.aclose()  # type: ignore[attr-defined]

        run(make_store, scenario)

    def test_watch_follows_writes_and_deletes(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            v1 = await store.create("default", A)
            it = store.watch("default")
            assert await next_of(it) == (A, v1)
            v2 = await store.put("default", B)
            assert await next_matching(it, lambda s: s[1] != v1) == (B, v2)
            await store.delete("default")
            assert await next_matching(it, lambda s: s[0] is None) == (None, None)
            v3 = await store.create("default", C)
            assert await next_matching(it, lambda s: s[0] is not None) == (C, v3)
            await it.aclose()  # type: ignore[attr-defined]

        run(make_store, scenario)

    def test_watch_is_quiet_without_changes_and_ignores_other_namespaces(
        self, make_store: MakeStore
    ) -> None:
        async def scenario(store: DtabStore) -> None:
            await store.create("default", A)
            it = store.watch("default")
            await next_of(it)
            await store.put("other", B)
            assert await nothing_within(it)
            await it.aclose()  # type: ignore[attr-defined]

        run(make_store, scenario)

    def test_a_slow_watcher_gets_the_latest_state(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            await store.create("default", A)
            it = store.watch("default")
            await next_of(it)
            for dtab in (B, C, A, B):
                last = await store.put("default", dtab)
            assert await next_matching(it, lambda s: s[1] == last) == (B, last)
            await it.aclose()  # type: ignore[attr-defined]

        run(make_store, scenario)

    def test_watchers_are_independent(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            one, two = store.watch("default"), store.watch("default")
            assert await next_of(one) == (None, None)
            v1 = await store.put("default", A)
            assert await next_matching(one, lambda s: s[1] is not None) == (A, v1)
            assert await next_matching(two, lambda s: s[1] is not None) == (A, v1)
            await one.aclose()  # type: ignore[attr-defined]
            v2 = await store.put("default", B)
            assert await next_matching(two, lambda s: s[1] == v2) == (B, v2)
            await two.aclose()  # type: ignore[attr-defined]

        run(make_store, scenario)

    def test_watch_list(self, make_store: MakeStore) -> None:
        async def scenario(store: DtabStore) -> None:
            it = store.watch_list()
            assert await next_of(it) == []
            await store.create("b", A)
            assert await next_matching(it, lambda s: s != []) == ["b"]
            await store.put("a", B)
            assert await next_matching(it, lambda s: len(s) == 2) == ["a", "b"]
            await store.put("a", C)  # a write to an existing namespace: same list
            await store.delete("b")
            assert await next_matching(it, lambda s: s != ["a", "b"]) == ["a"]
            await it.aclose()  # type: ignore[attr-defined]

        run(make_store, scenario)


__all__ = ["WAIT", "DtabStoreContract", "MakeStore", "next_matching", "next_of", "run"]
