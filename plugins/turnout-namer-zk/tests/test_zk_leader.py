"""``io.l5d.zkLeader`` against a real ZooKeeper: candidates join a group as ephemeral
sequential nodes holding ``host:port`` (Twitter commons' ``Group``/``CandidateImpl``); the
leader is the one with the lowest sequence number."""

from __future__ import annotations

import asyncio

import pytest
from turnout.naming import AddrBound, AddrFailed, AddrNeg, Path
from turnout_namer_zk.namer import ZkLeaderNamer
from turnout_namer_zk.testing import addr_of, member_json, ports, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def new_namer(zk) -> ZkLeaderNamer:
    return ZkLeaderNamer(Path.read("/#/io.l5d.zkLeader"), zk.hosts)


def run(coro, timeout: float = 45.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def candidate(client, group: str, data: bytes) -> str:
    client.ensure_path(group)
    path: str = client.create(f"{group}/member_", data, ephemeral=True, sequence=True)
    return path


def test_the_lowest_sequence_number_leads(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    group = "/leader/scheduler"
    latencies = []

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read(group))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: addr_of(act) is AddrNeg)  # no group yet
            first = candidate(client, group, b"127.0.0.1:7001")
            latencies.append(await wait_for(lambda: ports(addr_of(act)) == {7001}))
            second = candidate(client, group, b"127.0.0.1:7002")
            candidate(client, group, b"127.0.0.1:7003")
            await asyncio.sleep(0.1)
            assert ports(addr_of(act)) == {7001}  # followers do not change the leader
            assert str(act.value.value.value.id) == "/#/io.l5d.zkLeader/leader/scheduler"
            client.delete(first)  # the leader dies: the next in line leads
            latencies.append(await wait_for(lambda: ports(addr_of(act)) == {7002}))
            client.set(second, b"127.0.0.1:7012")  # the leader publishes a new address
            latencies.append(await wait_for(lambda: ports(addr_of(act)) == {7012}))
        finally:
            obs.close()
            await namer.close()

    run(main())
    print("leader change latencies (ms):", [round(s * 1000, 1) for s in latencies])
    assert max(latencies) < 1.0


def test_serverset_json_leader_data_and_an_empty_group(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    group = "/leader/json"
    client.ensure_path(group)
    client.create(f"{group}/config", b"not a candidate")

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read(group))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: addr_of(act) is AddrNeg)  # nobody runs for leader
            only = candidate(client, group, member_json(7101, host="10.1.2.3"))
            await wait_for(lambda: isinstance(addr_of(act), AddrBound))
            [address] = addr_of(act).addresses
            assert (address.host, address.port) == ("10.1.2.3", 7101)
            client.delete(only)
            await wait_for(lambda: addr_of(act) is AddrNeg)
        finally:
            obs.close()
            await namer.close()

    run(main())


def test_unusable_leader_data_keeps_the_last_leader(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    group = "/leader/bad"

    # a group whose very first leader is unusable
    candidate(client, "/leader/bad-from-start", b"")

    async def main() -> None:
        namer = new_namer(zk)
        fresh = namer.lookup(Path.read("/leader/bad-from-start"))
        act = namer.lookup(Path.read(group))
        observations = [a.observe(lambda _: None) for a in (act, fresh)]
        try:
            leader = candidate(client, group, b"127.0.0.1:7201")
            await wait_for(lambda: ports(addr_of(act)) == {7201})
            client.set(leader, b"garbage")
            await wait_for(lambda: namer.state()["watches"][group]["lastError"] is not None)
            state = namer.state()["watches"][group]
            assert "published no address" in state["lastError"]
            assert ports(addr_of(act)) == {7201}  # still routed to the last good leader
            client.set(leader, b"127.0.0.1:7202")
            await wait_for(lambda: ports(addr_of(act)) == {7202})
            # with no good answer before, the name fails (a 502 at once, with the reason)
            await wait_for(lambda: isinstance(addr_of(fresh), AddrFailed))
            assert "published no address: empty" in addr_of(fresh).cause
        finally:
            for o in observations:
                o.close()
            await namer.close()

    run(main())
