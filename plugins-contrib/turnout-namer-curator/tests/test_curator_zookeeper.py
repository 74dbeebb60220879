"""io.l5d.curator against a real ZooKeeper, in process: instances registered exactly as
Curator's ``ServiceDiscovery`` registers them (container parents, ephemeral instance znodes
holding ``ServiceInstance`` JSON), watched through additions, removals, updates, malformed
data, ZooKeeper being killed and restarted, and the namer's session expiring."""

from __future__ import annotations

import asyncio
import logging

import pytest
from turnout.metrics import MetricsTree
from turnout.naming import AddrBound, AddrNeg, Path
from turnout_namer_curator.namer import CuratorNamer
from turnout_namer_curator.testing import (
    register_instance,
    service_instance_json,
    update_instance,
)
from turnout_namer_zk.testing import addr_of, expire_session, ports, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BASE = "/curator"


def new_namer(zk, metrics: MetricsTree | None = None) -> CuratorNamer:
    return CuratorNamer(Path.read("/#/io.l5d.curator"), zk.hosts, BASE, metrics=metrics)


def run(coro, timeout: float = 90.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def test_instances_are_followed_as_curator_registers_them(shared_zookeeper, kazoo_factory, caplog):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    metrics = MetricsTree()

    async def main() -> None:
        namer = new_namer(zk, metrics)
        act = namer.lookup(Path.read("/web/v1"))
        missing = namer.lookup(Path.read("/nope"))
        observations = [a.observe(lambda _: None) for a in (act, missing)]
        try:
            await wait_for(lambda: addr_of(act) is AddrNeg)  # no such service yet
            await wait_for(lambda: addr_of(missing) is AddrNeg)
            first = register_instance(client, BASE, "web", "127.0.0.1", 7001)
            register_instance(client, BASE, "web", "127.0.0.1", 7002)
            await wait_for(lambda: ports(addr_of(act)) == {7001, 7002})
            bound = act.value.value.value
            assert str(bound.id) == "/#/io.l5d.curator/web" and str(bound.residual) == "/v1"
            assert addr_of(act).meta == {"ssl": False}

            # a third registers with an sslPort: its sslPort is used, the set is marked ssl
            tls = register_instance(client, BASE, "web", "127.0.0.1", 7003, ssl_port=7443)
            await wait_for(lambda: ports(addr_of(act)) == {7001, 7002, 7443})
            assert addr_of(act).meta == {"ssl": True}

            # unregisterService: it goes away
            client.delete(first)
            await wait_for(lambda: ports(addr_of(act)) == {7002, 7443})

            # updateService: the new data counts
            update_instance(client, tls, service_instance_json("web", "127.0.0.1", 7004))
            await wait_for(lambda: ports(addr_of(act)) == {7002, 7004})
            assert addr_of(act).meta == {"ssl": False}

            # malformed data is skipped, logged once and counted; the others keep serving
            with caplog.at_level(logging.WARNING, logger="turnout.namer.zk"):
                bad = register_instance(client, BASE, "web", "", 0, data=b"{not json")
                register_instance(client, BASE, "web", "127.0.0.1", 7005)
                await wait_for(lambda: ports(addr_of(act)) == {7002, 7004, 7005})
                await wait_for(lambda: namer.malformed == 1)
            assert metrics.counter("namer", "#", "io.l5d.curator", "malformed_instances").value == 1
            messages = [r.getMessage() for r in caplog.records]
            assert any(bad in m and "not JSON" in m for m in messages), messages
            assert namer.state()["curator"] == {"basePath": BASE, "malformedInstances": 1}
            # fixed: it counts again
            update_instance(client, bad, service_instance_json("web", "127.0.0.1", 7006))
            await wait_for(lambda: ports(addr_of(act)) == {7002, 7004, 7005, 7006})
            assert namer.malformed == 1
        finally:
            for o in observations:
                o.close()
            await namer.close()

    run(main())


def test_zookeeper_down_keeps_the_last_good_set_and_restarts_pick_up_changes(
    zookeeper, kazoo_factory
):
    zk = zookeeper
    client = kazoo_factory(zk, timeout=60)  # its ephemeral instances outlive the restart

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read("/api"))
        obs = act.observe(lambda _: None)
        try:
            register_instance(client, BASE, "api", "127.0.0.1", 7101)
            await wait_for(lambda: ports(addr_of(act)) == {7101})

            await asyncio.to_thread(zk.kill)
            await wait_for(lambda: namer.state()["watches"]["api"]["lastError"] is not None, 30)
            await asyncio.sleep(1.0)
            assert ports(addr_of(act)) == {7101}  # the last good set keeps serving
            watch = namer.state()["watches"]["api"]
            assert watch["state"] == "bound" and watch["errorSince"] is not None

            await asyncio.to_thread(zk.restart)
            # (an attempt made while ZooKeeper was starting waits up to the 60 s session
            # timeout for its handshake before kazoo tries again)
            await wait_for(lambda: client.connected, 90)
            register_instance(client, BASE, "api", "127.0.0.1", 7102)
            await wait_for(lambda: ports(addr_of(act)) == {7101, 7102}, 30)
            await wait_for(lambda: namer.state()["watches"]["api"]["errorSince"] is None, 30)
        finally:
            obs.close()
            await namer.close()

    run(main())


def test_session_expiry_renews_the_watches(zookeeper, kazoo_factory):
    zk = zookeeper
    client = kazoo_factory(zk)

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read("/jobs"))
        obs = act.observe(lambda _: None)
        try:
            register_instance(client, BASE, "jobs", "127.0.0.1", 7201)
            await wait_for(lambda: ports(addr_of(act)) == {7201})
            assert namer.zk.client is not None
            client_id = namer.zk.client.client_id
            await asyncio.to_thread(expire_session, zk.hosts, client_id)
            await wait_for(lambda: namer.zk.session_expirations >= 1, 30)
            await wait_for(lambda: namer.zk.connected, 30)
            assert namer.zk.client.client_id[0] != client_id[0]  # a new session
            # the new session's watches see what happens next
            register_instance(client, BASE, "jobs", "127.0.0.1", 7202)
            await wait_for(lambda: ports(addr_of(act)) == {7201, 7202}, 30)
            assert isinstance(addr_of(act), AddrBound)
        finally:
            obs.close()
            await namer.close()

    run(main())
