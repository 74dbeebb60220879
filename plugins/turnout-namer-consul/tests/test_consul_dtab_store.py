"""namerd's io.l5d.consul dtab store against the Consul API double: the store contract, CAS
conflicts between writers, Consul outages, and what it sends (Linkerd's requests)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest
from turnout.api import (
    Dtab,
    DtabStoreForbidden,
    InvalidNamespace,
    NamespaceExists,
    VersionMismatch,
)
from turnout.namerd.store_contract import (
    DtabStoreContract,
    MakeStore,
    next_matching,
    next_of,
    run,
)
from turnout.testing import wait_until
from turnout_namer_consul.client import ConsulClient
from turnout_namer_consul.dtab_store import (
    ConsulDtabStore,
    ConsulStoreError,
    decode_version,
    encode_version,
)
from turnout_namer_consul.testing import ConsulDouble

pytestmark = pytest.mark.timeout(120)

A = Dtab.read("/svc=>/#/io.l5d.fs/a")
B = Dtab.read("/svc=>/#/io.l5d.fs/b")


def store_for(double: ConsulDouble, **kw: Any) -> ConsulDtabStore:
    kw.setdefault("backoff", lambda: iter(lambda: 0.05, None))
    token = kw.get("token")
    return ConsulDtabStore(
        lambda: ConsulClient(double.host, double.port, token=token, wait=5.0),
        kw.pop("path_prefix", "namerd/dtabs"),
        **kw,
    )


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    d = ConsulDouble(jitter=False)
    d.start()
    try:
        yield d
    finally:
        settle(d)
        d.close()


def settle(double: ConsulDouble) -> None:
    """Let the double see the store's connections close before it stops (a connection still
    being torn down when its event loop ends would be left unclosed)."""
    if double.listening:
        wait_until(lambda: double.open_connections() == 0, timeout=5)


class TestConsulDtabStoreContract(DtabStoreContract):
    @pytest.fixture
    def make_store(self, double: ConsulDouble) -> MakeStore:
        return lambda: store_for(double)


def kv(double: ConsulDouble, key: str) -> dict[str, Any] | None:
    return double.call(lambda s: s.state.kv.get(key))  # type: ignore[no-any-return]


def test_one_key_per_namespace_versioned_by_its_modify_index(double: ConsulDouble) -> None:
    async def scenario(store: Any) -> None:
        v1 = await store.create("default", A)
        entry = kv(double, "namerd/dtabs/default")
        assert entry is not None
        assert entry["Value"] == A.show.encode()
        assert v1 == str(entry["ModifyIndex"]).encode()  # Linkerd: Buf.Utf8(index)
        assert decode_version(v1) == entry["ModifyIndex"]
        double.call(lambda s: s.state.kv_put("namerd/dtabs/nested/x", b"/a=>/b"))
        double.call(lambda s: s.state.kv_put("namerd/dtabs/bad.name", b"/a=>/b"))
        double.call(lambda s: s.state.kv_put("elsewhere/x", b"/a=>/b"))
        assert await store.list() == ["default"]  # directories and invalid names skipped

    run(lambda: store_for(double), scenario)
    methods = [(c["method"], c["query"]) for c in double.requests("/v1/kv/")]
    assert ("PUT", {"cas": ["0"]}) in methods
    assert ("GET", {"keys": [""], "separator": ["/"]}) in methods


def test_options_reach_consul(double: ConsulDouble) -> None:
    double.close()
    secured = ConsulDouble(acl_token="s3cret", jitter=False, datacenter="dc7").start()
    try:

        async def scenario(store: Any) -> None:
            version = await store.put("default", A)
            assert await store.put("default", B, version) != version
            it = store.watch("default")
            assert (await next_of(it))[0] == B
            await it.aclose()

        run(
            lambda: store_for(
                secured,
                token="s3cret",
                datacenter="dc7",
                read_consistency="stale",
                write_consistency="consistent",
                path_prefix="/my/dtabs/",
            ),
            scenario,
        )
        calls = secured.requests("/v1/kv/my/dtabs/default")
        assert calls and all(c["token"] == "s3cret" for c in calls)
        assert all(c["query"]["dc"] == ["dc7"] for c in calls)
        reads = [c for c in calls if c["method"] == "GET"]
        assert all("stale" in c["query"] for c in reads if "index" in c["query"])
        writes = [c for c in calls if c["method"] == "PUT"]
        assert all("consistent" in c["query"] for c in writes)
        assert any(c["query"].get("cas") for c in writes)

        async def unauthorised(store: Any) -> None:
            with pytest.raises(DtabStoreForbidden, match="403 Permission denied"):
                await store.get("default")

        run(lambda: store_for(secured, datacenter="dc7"), unauthorised)
    finally:
        settle(secured)
        secured.close()


def test_a_second_writer_makes_a_stale_version_fail(double: ConsulDouble) -> None:
    async def scenario(store: Any) -> None:
        other = store_for(double)
        try:
            v1 = await store.create("default", A)
            with pytest.raises(NamespaceExists):
                await other.create("default", B)
            v2 = await other.put("default", B, v1)  # the other writer wins the race
            with pytest.raises(VersionMismatch):
                await store.put("default", A, v1)
            assert await store.get("default") == (B, v2)
            v3 = await store.put("default", A, v2)  # with the current version it works
            assert await other.get("default") == (A, v3)
        finally:
            await other.close()

    run(lambda: store_for(double), scenario)


def test_a_write_raced_between_put_and_read_back_returns_a_version_that_matches_nothing(
    double: ConsulDouble,
) -> None:
    async def scenario(store: ConsulDtabStore) -> None:
        await store.create("default", A)
        real = store._read

        async def racing_read(ns: str, **kw: Any) -> Any:
            double.call(lambda s: s.state.kv_put("namerd/dtabs/default", B.show.encode()))
            return await real(ns, **kw)

        store._read = racing_read  # type: ignore[method-assign]
        version = await store.put("default", Dtab.read("/x=>/y"))
        store._read = real  # type: ignore[method-assign]
        assert version == b"0"
        with pytest.raises(VersionMismatch):
            await store.put("default", A, version)
        assert (await store.get("default") or (None,))[0] == B

    run(lambda: store_for(double), scenario)


def test_namespace_names_are_linkerds(double: ConsulDouble) -> None:
    async def scenario(store: Any) -> None:
        with pytest.raises(InvalidNamespace, match=r"io\.l5d\.consul"):
            await store.create("with.dot", A)

    run(lambda: store_for(double), scenario)
    assert encode_version(42) == b"42"
    assert base64.b64encode(encode_version(42)) == b"NDI="
    assert decode_version(b"0") is None and decode_version(b"x") is None


def test_consul_down_then_back(double: ConsulDouble) -> None:
    async def scenario(store: Any) -> None:
        v1 = await store.create("default", A)
        it = store.watch("default")
        names = store.watch_list()
        assert await next_of(it) == (A, v1)
        assert await next_of(names) == ["default"]
        await asyncio.to_thread(double.stop)
        with pytest.raises(ConsulStoreError, match="failed"):
            await store.get("default")
        with pytest.raises(ConsulStoreError):
            await store.put("default", B)
        # changed while the store could not see it (another Consul server took the write)
        await asyncio.to_thread(
            double.call, lambda s: s.state.kv_put("namerd/dtabs/default", B.show.encode())
        )
        await asyncio.to_thread(
            double.call, lambda s: s.state.kv_put("namerd/dtabs/other", A.show.encode())
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(double.start)
        state = await next_matching(it, lambda s: s[0] == B)
        entry = await asyncio.to_thread(kv, double, "namerd/dtabs/default")
        assert entry is not None and state[1] == str(entry["ModifyIndex"]).encode()
        assert await next_matching(names, lambda s: s != ["default"]) == ["default", "other"]
        v3 = await store.put("default", A, state[1])  # the store works again
        assert await next_matching(it, lambda s: s[1] == v3) == (A, v3)
        await it.aclose()
        await names.aclose()

    run(lambda: store_for(double), scenario)


def test_close_ends_watches(double: ConsulDouble) -> None:
    async def main() -> None:
        store = store_for(double)
        it = store.watch("default")
        assert await next_of(it) == (None, None)
        pending = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.2)
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 10)

    asyncio.run(main())


def test_the_double_answers_kv_indexes_as_consul(double: ConsulDouble) -> None:
    """Consul's KVS endpoint: a key's X-Consul-Index is its ModifyIndex, so a blocking query
    on it is not ended by writes to other keys; a listing's index covers deletions under its
    prefix (tombstones)."""

    async def main() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:

            async def get(path: str, **params: str) -> tuple[int, int]:
                async with http.get(double.url + "/v1/kv/" + path, params=params) as r:
                    await r.read()
                    return r.status, int(r.headers["X-Consul-Index"])

            async with http.put(double.url + "/v1/kv/d/one", data=b"/a=>/b") as r:
                assert await r.json() is True
            entry = await asyncio.to_thread(kv, double, "d/one")
            assert entry is not None
            status, index = await get("d/one")
            assert (status, index) == (200, entry["ModifyIndex"])
            blocked = asyncio.ensure_future(get("d/one", index=str(index), wait="1s"))
            await asyncio.sleep(0.2)
            async with http.put(double.url + "/v1/kv/d/two", data=b"/c=>/d") as r:
                assert await r.json() is True
            await asyncio.sleep(0.2)
            assert not blocked.done()  # another key's write does not end it
            assert await asyncio.wait_for(blocked, 10) == (200, index)
            _, listed = await get("d/", keys="", separator="/")
            async with http.delete(double.url + "/v1/kv/d/two") as r:
                assert await r.json() is True
            _, after_delete = await get("d/", keys="", separator="/")
            assert after_delete > listed  # the tombstone's index
            status, missing = await get("d/two")
            assert status == 404 and missing == after_delete

    asyncio.run(main())
