"""The ``io.l5d.etcd`` dtab store against a real etcd: the dtab store contract, then what only
etcd has: the key layout and Linkerd's versions, writes by another etcd client reaching a
watcher, compare-and-set racing another writer, etcd going away and coming back (watchers
reconnect and end on the current state; operations fail as a store outage meanwhile and
nothing stored is lost), and a watch cancelled by a compaction."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from turnout.api import Dtab, NamespaceNotFound, VersionMismatch, constant_backoff
from turnout.namerd.store_contract import DtabStoreContract, MakeStore, next_matching, next_of
from turnout_namerd_etcd.store import EtcdDtabStore, EtcdStoreError
from turnout_namerd_etcd.testing import EtcdServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

A = Dtab.read("/svc=>/#/io.l5d.fs/a")
B = Dtab.read("/svc=>/#/io.l5d.fs/b")
C = Dtab.read("/svc=>/#/io.l5d.fs/c")

_prefixes = itertools.count()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class TestEtcdDtabStoreContract(DtabStoreContract):
    @pytest.fixture
    def make_store(self, shared_etcd: EtcdServer) -> MakeStore:
        prefix = f"/contract/t{next(_prefixes)}/dtabs"  # an empty store per test
        return lambda: EtcdDtabStore(shared_etcd.url, prefix)


def run(coro_fn: Callable[[], Any], timeout: float = 90.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())


def test_key_layout_and_linkerd_versions(shared_etcd: EtcdServer) -> None:
    """One key per namespace holding the dtab text; the version is the key's mod revision
    in decimal (Linkerd's v2 modifiedIndex form); a write by another etcd client reaches a
    watcher; keys of nested "directories" and odd names are not namespaces."""

    async def scenario() -> None:
        store = EtcdDtabStore(shared_etcd.url, "/layout/dtabs")
        try:
            v0 = await store.create("default", A)
            got = shared_etcd.call("range", {"key": b64("/layout/dtabs/default")})
            [kv] = got["kvs"]
            assert base64.b64decode(kv["value"]).decode() == A.show
            assert v0 == kv["mod_revision"].encode()  # e.g. b"12": ETag "MTI="
            it = store.watch("default")
            assert await next_of(it) == (A, v0)
            put = shared_etcd.call(  # another writer
                "put", {"key": b64("/layout/dtabs/default"), "value": b64(C.show)}
            )
            revision = put["header"]["revision"].encode()
            assert await next_matching(it, lambda s: s[0] == C) == (C, revision)
            await it.aclose()  # type: ignore[attr-defined]
            shared_etcd.call("put", {"key": b64("/layout/dtabs/nested/x"), "value": b64("")})
            shared_etcd.call("put", {"key": b64("/layout/dtabs/.."), "value": b64("")})
            shared_etcd.call("put", {"key": b64("/layout/dtabsX"), "value": b64("")})
            assert await store.list() == ["default"]
        finally:
            await store.close()

    run(scenario)


def test_compare_and_set_against_another_writer(shared_etcd: EtcdServer) -> None:
    """A put with the version read before another client wrote fails and changes nothing;
    a version that names no revision never matches; a missing namespace is not found."""

    async def scenario() -> None:
        store = EtcdDtabStore(shared_etcd.url, "/cas/dtabs")
        try:
            v0 = await store.create("default", A)
            shared_etcd.call("put", {"key": b64("/cas/dtabs/default"), "value": b64(B.show)})
            with pytest.raises(VersionMismatch):
                await store.put("default", C, v0)
            found = await store.get("default")
            assert found is not None and found[0] == B
            with pytest.raises(VersionMismatch):
                await store.put("default", C, b"not-a-revision")
            with pytest.raises(NamespaceNotFound):
                await store.put("missing", C, b"not-a-revision")
            with pytest.raises(NamespaceNotFound):
                await store.put("missing", C, found[1])
            assert await store.get("missing") is None  # (nothing was created)
            v2 = await store.put("default", C, found[1])
            assert await store.get("default") == (C, v2)
        finally:
            await store.close()

    run(scenario)


def test_an_outage_fails_operations_then_watchers_end_on_the_current_state(
    etcd: EtcdServer,
) -> None:
    """etcd stops: operations raise the store error (503 in namerd's API), watches keep
    retrying; etcd starts again on the same data: every dtab is still there, and watchers
    (of a namespace and of the list) see the writes made after it came back."""

    async def scenario() -> None:
        fast = constant_backoff(0.2)
        store = EtcdDtabStore(etcd.url, backoff=fast)
        other = EtcdDtabStore(etcd.url)
        try:
            await store.create("default", A)
            await store.create("second", B)
            it = store.watch("default")
            names = store.watch_list()
            assert (await next_of(it))[0] == A
            assert await next_of(names) == ["default", "second"]
            pending = asyncio.ensure_future(next_of(it))

            await asyncio.to_thread(etcd.stop)
            with pytest.raises(EtcdStoreError):
                await store.get("default")
            with pytest.raises(EtcdStoreError):
                await store.put("default", C)
            assert not pending.done()  # the watch waits (and retries), it does not end

            await asyncio.to_thread(etcd.start)
            assert (await store.get("default") or (None,))[0] == A  # nothing lost
            assert (await store.get("second") or (None,))[0] == B
            version = await other.put("default", C)
            assert await asyncio.wait_for(pending, 30) == (C, version)
            await other.create("third", A)
            assert await next_matching(names, lambda n: "third" in n) == [
                "default",
                "second",
                "third",
            ]
            await it.aclose()  # type: ignore[attr-defined]
            await names.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()
            await other.close()

    run(scenario)


def test_a_change_made_while_the_watcher_was_cut_off_is_seen(etcd: EtcdServer) -> None:
    """The watcher's stream breaks (etcd restarts); a write lands right after etcd is back,
    before the watcher reconnects: it still ends on that state (it reads, then watches from
    the revision it read)."""

    async def scenario() -> None:
        store = EtcdDtabStore(etcd.url, backoff=constant_backoff(1.0))
        other = EtcdDtabStore(etcd.url)
        try:
            await store.create("default", A)
            it = store.watch("default")
            assert (await next_of(it))[0] == A
            await asyncio.to_thread(etcd.stop)
            await asyncio.to_thread(etcd.start)
            version = await other.put("default", B)  # (likely before the watch is back)
            assert await next_matching(it, lambda s: s[0] == B) == (B, version)
            await it.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()
            await other.close()

    run(scenario)


def test_a_watch_cancelled_by_compaction_reads_again(shared_etcd: EtcdServer) -> None:
    """A watch from a revision etcd compacted away is cancelled by etcd; the store reads the
    state again and keeps following."""

    async def scenario() -> None:
        store = EtcdDtabStore(shared_etcd.url, "/compact/dtabs")
        try:
            await store.create("default", A)
            key = b64("/compact/dtabs/default")
            stream = store._events({"key": key}, 1)  # revision 1: compacted below
            for dtab in (B, C):
                shared_etcd.call("put", {"key": key, "value": b64(dtab.show)})
            now = int(shared_etcd.call("range", {"key": key})["header"]["revision"])
            shared_etcd.call("compaction", {"revision": str(now), "physical": True})
            with pytest.raises(StopAsyncIteration):  # cancelled: the stream just ends
                await asyncio.wait_for(stream.__anext__(), 10)
            it = store.watch("default")
            assert (await next_of(it))[0] == C
            shared_etcd.call("put", {"key": key, "value": b64(A.show)})
            assert (await next_matching(it, lambda s: s[0] == A))[0] == A
            await it.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()

    run(scenario)
