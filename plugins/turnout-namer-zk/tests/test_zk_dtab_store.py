"""The ``io.l5d.zk`` dtab store against a real ZooKeeper: the dtab store contract, then what
only ZooKeeper has: the znode layout and versions, ACLs with digest auth, session expiry, and
ZooKeeper going away and coming back."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_digest_acl_credential
from turnout.api import Dtab
from turnout.namerd.store_contract import DtabStoreContract, MakeStore, next_matching, next_of
from turnout_namer_zk.dtab_store import ZkDtabStore, ZkForbidden, ZkStoreUnavailable
from turnout_namer_zk.testing import ZooKeeperServer, expire_session

pytestmark = pytest.mark.timeout(120)

A = Dtab.read("/svc=>/#/io.l5d.fs/a")
B = Dtab.read("/svc=>/#/io.l5d.fs/b")
C = Dtab.read("/svc=>/#/io.l5d.fs/c")

_prefixes = itertools.count()


class TestZkDtabStoreContract(DtabStoreContract):
    @pytest.fixture
    def make_store(self, shared_zookeeper: ZooKeeperServer) -> MakeStore:
        prefix = f"/contract/t{next(_prefixes)}/dtabs"  # an empty store per test
        return lambda: ZkDtabStore(shared_zookeeper.hosts, path_prefix=prefix)


def run(coro_fn: Callable[[], Any], timeout: float = 90.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())


def test_znode_layout_and_linkerd_versions(
    shared_zookeeper: ZooKeeperServer, kazoo_factory: Callable[..., KazooClient]
) -> None:
    """One znode per namespace holding the dtab text; the version is the znode's data
    version as 4 big-endian bytes (Linkerd's ETag AAAAAA== for a new namespace); a write
    from another ZooKeeper client reaches a watcher."""
    zk = kazoo_factory(shared_zookeeper)

    async def scenario() -> None:
        store = ZkDtabStore(shared_zookeeper.hosts, path_prefix="/layout/dtabs")
        try:
            v0 = await store.create("default", A)
            assert base64.b64encode(v0) == b"AAAAAA=="
            data, stat = zk.get("/layout/dtabs/default")
            assert Dtab.read(data.decode()) == A and stat.version == 0
            v1 = await store.put("default", B)
            assert v1 == (1).to_bytes(4, "big")
            it = store.watch("default")
            assert await next_of(it) == (B, v1)
            zk.set("/layout/dtabs/default", C.show.encode())  # another writer
            assert await next_matching(it, lambda s: s[0] == C) == (C, (2).to_bytes(4, "big"))
            await it.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()

    run(scenario)


def test_auth_info_and_acls(
    zookeeper: ZooKeeperServer, kazoo_factory: Callable[..., KazooClient]
) -> None:
    """With digest authInfo and an ACL granting only that user, the store reads and writes,
    and a client without the credentials can neither write nor read the dtab."""
    digest = make_digest_acl_credential("namerd", "s3cret").split(":", 1)[1]
    acls = [("digest", f"namerd:{digest}", "crwda")]

    async def scenario() -> None:
        store = ZkDtabStore(
            zookeeper.hosts,
            path_prefix="/secure",
            auth_info=("digest", "namerd:s3cret"),
            acls=acls,
        )
        other = ZkDtabStore(zookeeper.hosts, path_prefix="/secure")  # no auth
        try:
            v0 = await store.create("default", A)
            assert await store.get("default") == (A, v0)
            with pytest.raises(ZkForbidden):
                await other.put("default", C)
            with pytest.raises(ZkForbidden):
                await other.get("default")
            with pytest.raises(ZkForbidden):
                await other.create("intruder", C)  # the prefix carries the ACL too
            v1 = await store.put("default", B, v0)
            assert await store.get("default") == (B, v1)
        finally:
            await store.close()
            await other.close()

    run(scenario)
    raw = kazoo_factory(zookeeper)  # a plain client: refused too
    with pytest.raises(NoAuthError):
        raw.set("/secure/default", b"/svc=>/x")


def test_watches_survive_session_expiry(zookeeper: ZooKeeperServer) -> None:
    """ZooKeeper expires the store's session: the store starts a new one, its watches are
    set again, and later writes (by another store) reach the watcher."""

    async def scenario() -> None:
        store = ZkDtabStore(zookeeper.hosts, path_prefix="/expiry", session_timeout=4.0)
        writer = ZkDtabStore(zookeeper.hosts, path_prefix="/expiry")
        try:
            await writer.create("default", A)
            it = store.watch("default")
            listing = store.watch_list()
            assert (await next_of(it))[0] == A
            assert await next_of(listing) == ["default"]
            client = store.conn.client
            assert client is not None
            first = client.client_id
            await asyncio.to_thread(expire_session, zookeeper.hosts, first)
            for _ in range(200):
                if store.conn.session_expirations >= 1 and store.conn.connected:
                    break
                await asyncio.sleep(0.1)
            assert store.conn.session_expirations >= 1, store.conn.state()
            assert store.conn.client is not None and store.conn.client.client_id != first
            v = await writer.put("default", C)
            assert await next_matching(it, lambda s: s[1] == v) == (C, v)
            await writer.create("other", B)
            assert await next_matching(listing, lambda s: len(s) == 2) == ["default", "other"]
            await it.aclose()  # type: ignore[attr-defined]
            await listing.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()
            await writer.close()

    run(scenario)


def test_zookeeper_down_fails_operations_and_watches_resume(zookeeper: ZooKeeperServer) -> None:
    """ZooKeeper stopped: operations fail (within their timeout) with ZkStoreUnavailable, a
    watcher yields nothing wrong; restarted: the watcher resumes with the current version."""

    async def scenario() -> None:
        store = ZkDtabStore(
            zookeeper.hosts, path_prefix="/outage", session_timeout=20.0, operation_timeout=2.0
        )
        try:
            v0 = await store.create("default", A)
            it = store.watch("default")
            assert await next_of(it) == (A, v0)
            await asyncio.to_thread(zookeeper.kill)
            for op in (store.list(), store.get("default"), store.put("default", B)):
                with pytest.raises(ZkStoreUnavailable):
                    await op
            await asyncio.to_thread(zookeeper.restart)
            # written by another client while the watcher's connection is still down
            other = KazooClient(hosts=zookeeper.hosts)
            await asyncio.to_thread(other.start, 20)
            try:
                stat = await asyncio.to_thread(other.set, "/outage/default", C.show.encode())
            finally:
                await asyncio.to_thread(other.stop)
                other.close()
            want = (stat.version).to_bytes(4, "big")
            assert await next_matching(it, lambda s: s[1] == want) == (C, want)
            assert await store.get("default") == (C, want)
            await it.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()

    run(scenario)
