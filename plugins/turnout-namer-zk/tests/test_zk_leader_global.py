"""The global namer ``/$/io.buoyant.namer.zk.leader/<host:port::host:port>/<zkPath>``
(Linkerd's ``io.buoyant.namer.zk.leader``): its registration, the servers label, and the
leader of a real ZooKeeper group, found and followed through turnout's ``/$`` namespace."""

from __future__ import annotations

import asyncio

import pytest
from turnout.naming import AddrBound, AddrFailed, Failed, GlobalNamer, Neg, Ok, Path
from turnout.testing.config import plugin_registry
from turnout_namer_zk import plugin
from turnout_namer_zk.leader_global import (
    GLOBAL_LEADER_NAMER,
    GLOBAL_NAME,
    ZkLeaderGlobalNamer,
    parse_zk_hosts,
)
from turnout_namer_zk.testing import addr_of, ports, wait_for


def run(coro, timeout: float = 60.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def candidate(client, group: str, data: bytes) -> str:
    """Join a leader group as Marathon's Twitter-commons ``CandidateImpl`` does: an
    EPHEMERAL_SEQUENTIAL ``member_<seq>`` child holding ``host:port``."""
    client.ensure_path(group)
    path: str = client.create(f"{group}/member_", data, ephemeral=True, sequence=True)
    return path


# -- without ZooKeeper ---------------------------------------------------------------------------


def test_the_plugin_registers_the_global_namer():
    registry = plugin_registry(plugin)
    registration = registry.global_namers[GLOBAL_NAME]
    assert registration.namer is GLOBAL_LEADER_NAMER
    assert GLOBAL_NAME == "io.buoyant.namer.zk.leader"


@pytest.mark.parametrize(
    ("label", "hosts"),
    [
        ("localhost:2181", "localhost:2181"),
        ("1.2.3.4:8000::5.6.7.8:8001", "1.2.3.4:8000,5.6.7.8:8001"),  # Linkerd's test
        ("zk1:2181,zk2:2182::zk3:2183", "zk1:2181,zk2:2182,zk3:2183"),
    ],
)
def test_servers_labels(label, hosts):
    assert parse_zk_hosts(label) == hosts


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("localhost", "is not host:port"),
        ("zk1:2181::zk2", "'zk2' is not host:port"),
        ("zk1:99999", "the port must be 1 to 65535"),
        ("zk1:abc", "the port must be 1 to 65535"),
        ("::", "no ZooKeeper server given"),
    ],
)
def test_bad_servers_labels(label, message):
    with pytest.raises(ValueError, match=message):
        parse_zk_hosts(label)


def test_names_that_are_not_leader_groups():
    namer = ZkLeaderGlobalNamer()
    assert namer.lookup(Path.read("/localhost:2181")).value == Ok(Neg)  # no znode path
    failed = namer.lookup(Path.read("/localhost/marathon/leader")).value
    assert isinstance(failed, Failed)
    assert str(failed.error) == (
        "/$/io.buoyant.namer.zk.leader/localhost/marathon/leader: ZooKeeper server "
        "'localhost' is not host:port (separate servers with '::')"
    )
    assert namer.namers == {}  # nothing was connected


# -- with ZooKeeper ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_leader_is_found_through_the_global_namespace(shared_zookeeper, kazoo_factory):
    zk = shared_zookeeper
    client = kazoo_factory(zk)
    group = "/marathon/leader"
    namer = ZkLeaderGlobalNamer()
    global_namer = GlobalNamer({GLOBAL_NAME: namer})
    name = Path.read(f"/$/{GLOBAL_NAME}/{zk.host}:{zk.port}::127.0.0.1:1{group}")

    async def main() -> None:
        first = candidate(client, group, f"127.0.0.1:{7301}".encode())
        candidate(client, group, b"127.0.0.1:7302")
        act = namer.lookup(name.drop(2))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: ports(addr_of(act)) == {7301})
            assert global_namer.lookup(name).value.value.id == name  # the id is the name
            client.delete(first)  # the leader goes: the next candidate leads
            await wait_for(lambda: ports(addr_of(act)) == {7302})
            assert isinstance(addr_of(act), AddrBound)
            [zk_namer] = namer.namers.values()
            assert zk_namer.zk.hosts == f"{zk.host}:{zk.port},127.0.0.1:1"
            assert namer.state()["kind"] == GLOBAL_NAME
        finally:
            obs.close()
            await namer.close_loop(asyncio.get_running_loop())
        assert namer.namers == {}

    run(main())
    # a later event loop gets a namer of its own (a client belongs to its loop)
    second = candidate(client, "/marathon/other", b"127.0.0.1:7303")

    async def again() -> None:
        act = namer.lookup(Path.read(f"/{zk.host}:{zk.port}/marathon/other"))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: ports(addr_of(act)) == {7303})
        finally:
            obs.close()
            await namer.close_loop(asyncio.get_running_loop())

    run(again())
    client.delete(second)


@pytest.mark.timeout(60)
def test_an_unreachable_zookeeper_fails_the_name_with_the_reason():
    namer = ZkLeaderGlobalNamer()

    async def main() -> None:
        act = namer.lookup(Path.read("/127.0.0.1:1/marathon/leader"))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: isinstance(addr_of(act), AddrFailed), 30)
            cause = addr_of(act).cause
            assert cause.startswith(f"/$/{GLOBAL_NAME}/127.0.0.1:1 /marathon/leader: "), cause
            assert "no connection to ZooKeeper 127.0.0.1:1" in cause
        finally:
            obs.close()
            await namer.close_loop(asyncio.get_running_loop())

    run(main())
