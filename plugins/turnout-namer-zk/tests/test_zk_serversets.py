"""``io.l5d.serversets`` against a real ZooKeeper: the namer runs in this process, members
are registered with kazoo the way Finagle's announcer does (ephemeral sequential
``member_`` nodes), and every change is observed through the namer's lookup.

Latencies (change in ZooKeeper → new address set in the namer) are measured with generous
waits and printed; the requirement is under 1 s.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from turnout.metrics import MetricsTree
from turnout.naming import AddrNeg, Path
from turnout_namer_zk.config import ServersetsConfig, ZkAddrConfig
from turnout_namer_zk.namer import ServersetsNamer
from turnout_namer_zk.testing import addr_of, member_json, ports, register, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def new_namer(zk, metrics: MetricsTree | None = None) -> ServersetsNamer:
    config = ServersetsConfig(zk_addrs=[ZkAddrConfig(host=zk.host, port=zk.port)])
    namer = ServersetsNamer(
        Path.read("/#/io.l5d.serversets"), config.connect_string, metrics=metrics
    )
    return namer


def run(coro, timeout: float = 45.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def report(latencies: list[tuple[str, float]]) -> None:
    print("latencies:", ", ".join(f"{what} {seconds * 1000:.1f} ms" for what, seconds in latencies))
    slow = [(what, s) for what, s in latencies if s >= 1.0]
    assert not slow, f"changes must be seen within 1 s: {slow}"


def test_members_joining_and_leaving_are_seen_within_a_second(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    znode = "/join/discovery/prod/web"
    latencies: list[tuple[str, float]] = []

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read(znode))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: addr_of(act) is AddrNeg)  # no such serverset yet
            a = register(client, znode, member_json(8001))
            latencies.append(("join", await wait_for(lambda: ports(addr_of(act)) == {8001})))
            tree = act.value.value
            assert str(tree.value.id) == "/#/io.l5d.serversets/join/discovery/prod/web"
            assert tree.value.residual == Path.empty
            b = register(client, znode, member_json(8002))
            latencies.append(
                ("join 2", await wait_for(lambda: ports(addr_of(act)) == {8001, 8002}))
            )
            client.delete(a)
            latencies.append(("leave", await wait_for(lambda: ports(addr_of(act)) == {8002})))
            client.set(b, member_json(8002, status="STOPPING"))
            latencies.append(("not alive", await wait_for(lambda: addr_of(act) is AddrNeg)))
            client.set(b, member_json(8003))
            latencies.append(("alive", await wait_for(lambda: ports(addr_of(act)) == {8003})))
            # one watch on the serverset, one per member (kazoo's side and the server's)
            assert namer.zk.watcher_count() == 2
        finally:
            obs.close()
            await namer.close()

    run(main())
    report(latencies)


def test_named_endpoints(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    znode = "/endpoints/web"
    register(client, znode, member_json(8001, endpoints={"http": 9001, "admin": 9901}))
    plain = register(client, znode, member_json(8002))  # no http endpoint: skipped for :http
    register(client, znode, member_json(8003, endpoints={"http": 9003}))

    async def main() -> None:
        namer = new_namer(zk)
        http = namer.lookup(Path.read("/endpoints/web:http"))
        admin = namer.lookup(Path.read("/endpoints/web:admin"))
        default = namer.lookup(Path.read("/endpoints/web"))
        thrift = namer.lookup(Path.read("/endpoints/web:thrift"))
        observations = [a.observe(lambda _: None) for a in (http, admin, default, thrift)]
        try:
            await wait_for(lambda: ports(addr_of(http)) == {9001, 9003})
            await wait_for(lambda: ports(addr_of(admin)) == {9901})
            await wait_for(lambda: ports(addr_of(default)) == {8001, 8002, 8003})
            await wait_for(lambda: addr_of(thrift) is AddrNeg)  # nobody offers it
            assert str(http.value.value.value.id) == "/#/io.l5d.serversets/endpoints/web:http"
            # the member starts offering http: it joins that set
            client.set(plain, member_json(8002, endpoints={"http": 9002}))
            elapsed = await wait_for(lambda: ports(addr_of(http)) == {9001, 9002, 9003})
            report([("endpoint added", elapsed)])
            assert namer.zk.sessions == 1  # four names, one kazoo client, one session
            assert set(namer.state()["watches"]) == {
                "/endpoints/web:http",
                "/endpoints/web:admin",
                "/endpoints/web",
                "/endpoints/web:thrift",
            }
        finally:
            for o in observations:
                o.close()
            await namer.close()

    run(main())


def test_a_missing_serverset_is_neg_until_it_is_created(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    znode = "/later/web"

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read(znode))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: addr_of(act) is AddrNeg)
            assert namer.state()["watches"]["/later/web"]["state"] == "neg"
            client.ensure_path(znode)  # exists, no members yet: still Neg (Finagle)
            await asyncio.sleep(0.1)
            assert addr_of(act) is AddrNeg
            member = register(client, znode, member_json(8100))
            report([("created", await wait_for(lambda: ports(addr_of(act)) == {8100}))])
            client.delete(member)
            client.delete(znode)
            await wait_for(lambda: addr_of(act) is AddrNeg)
            client.create(znode)  # the existence watch is in place again
            register(client, znode, member_json(8101))
            report([("re-created", await wait_for(lambda: ports(addr_of(act)) == {8101}))])
        finally:
            obs.close()
            await namer.close()

    run(main())


def test_bad_member_data_is_skipped_with_a_warning(shared_zookeeper, kazoo_factory, caplog):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    znode = "/bad/web"
    register(client, znode, member_json(8201))
    bad = register(client, znode, b"{this is not json")
    register(client, znode, b'["a", "list"]')
    client.create(f"{znode}/vector_", b'{"vector": []}', sequence=True)  # not a member

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read(znode))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: ports(addr_of(act)) == {8201})
            client.set(bad, member_json(8202))  # fixed: it joins
            await wait_for(lambda: ports(addr_of(act)) == {8201, 8202})
        finally:
            obs.close()
            await namer.close()

    with caplog.at_level(logging.WARNING, logger="turnout.namer.zk"):
        run(main())
    warnings = [r.getMessage() for r in caplog.records if r.name == "turnout.namer.zk"]
    assert len([w for w in warnings if "bad ServerSet member data" in w]) == 2, warnings
    assert any(f"{bad} skipped: bad ServerSet member data (not JSON" in w for w in warnings)


def test_watches_stop_when_no_route_needs_the_name(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    register(client, "/idle/web", member_json(8301))
    metrics = MetricsTree()

    async def main() -> None:
        namer = new_namer(zk, metrics)
        act = namer.lookup(Path.read("/idle/web"))
        await asyncio.sleep(0.2)
        assert not namer.zk.started  # looked up, not observed: no connection at all
        obs = act.observe(lambda _: None)
        await wait_for(lambda: ports(addr_of(act)) == {8301})
        flat = metrics.flat()
        assert flat["namer/#/io.l5d.serversets/watches"] == 1
        assert flat["namer/#/io.l5d.serversets/zk/connected"] == 1
        assert flat["namer/#/io.l5d.serversets/zk/sessions"] == 1
        obs.close()
        await wait_for(lambda: namer.active_watches() == 0)
        tasks = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        await wait_for(lambda: not (namer._tasks & tasks))
        await namer.close()
        assert namer.zk.client is None
        assert metrics.flat()["namer/#/io.l5d.serversets/zk/connected"] == 0

    run(main())
