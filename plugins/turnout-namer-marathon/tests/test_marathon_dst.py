"""``dst`` as a name: Marathon found through ``/$/io.buoyant.namer.zk.leader/...`` (a real
ZooKeeper leader group, with two Marathon API doubles as the candidates), through a
configured namer (``/#/...``) and through ``/$/inet``; leader changes are followed, the last
leader is kept while ZooKeeper is down or the group is empty, and the reason shows in the
namer's state."""

from __future__ import annotations

import asyncio

import pytest
from marathon_test_helpers import eventually, ports_of, run
from turnout.api import ConfigError
from turnout.config import NamerConfig
from turnout.naming import (
    Activity,
    Address,
    Alt,
    Fail,
    GlobalNamer,
    Leaf,
    NameBound,
    Neg,
    Path,
    Union,
    Var,
    Weighted,
)
from turnout.naming import AddrBound as Bound
from turnout.testing.config import build_context, plugin_registry, read_entry
from turnout_namer_marathon import plugin
from turnout_namer_marathon.config import MarathonConfig
from turnout_namer_marathon.dst import evaluate
from turnout_namer_zk.leader_global import GLOBAL_NAME, ZkLeaderGlobalNamer
from turnout_namer_zk.namer import ZkLeaderNamer

GROUP = "/marathon/leader"


def candidate(client, double) -> str:
    """Run ``double`` for Marathon leader the way Marathon's Twitter-commons ``CandidateImpl``
    does (what Linkerd's zk-leader namer reads): an EPHEMERAL_SEQUENTIAL ``member_<seq>``
    child of the group holding ``<host>:<http port>``."""
    client.ensure_path(GROUP)
    path: str = client.create(
        f"{GROUP}/member_", f"{double.host}:{double.port}".encode(), ephemeral=True, sequence=True
    )
    return path


def leader_namer(zk, global_namer: ZkLeaderGlobalNamer, **options):
    """An io.l5d.marathon namer whose dst is the ZooKeeper leader group (ttl 100 ms)."""
    ctx = build_context(global_namer=GlobalNamer({GLOBAL_NAME: global_namer}))
    options.setdefault("ttl_ms", 100)
    options.setdefault("jitter_ms", 10)
    config = MarathonConfig(dst=f"/$/{GLOBAL_NAME}/{zk.hosts}{GROUP}", **options)
    return config.new_namer_with(ctx, {})


def polls(double) -> int:
    return double.count("/v2/apps")


# -- configuration and binding, without ZooKeeper -----------------------------------------------


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


@pytest.mark.parametrize(
    "dst",
    [
        "/$/io.buoyant.namer.zk.leader/localhost:2181/marathon/leader",
        "/$/io.buoyant.namer.zk.leader/zk1:2181::zk2:2181/marathon/leader",
        "/#/io.l5d.zkLeader/marathon/leader",
        "/$/inet/marathon.mesos/8080",
        "/$/fixedinet/127.0.0.1/8080",
    ],
)
def test_dst_names_are_accepted(registry, dst):
    config, problems = read_entry(registry, NamerConfig, f"kind: io.l5d.marathon\ndst: {dst}\n")
    assert problems == [] and config.dst == dst


def test_a_bad_dst_is_reported_where_it_is_written(registry):
    config, problems = read_entry(
        registry, NamerConfig, "kind: io.l5d.marathon\nhost: m\ndst: leader/marathon\n", "n.yaml"
    )
    assert config is None
    [problem] = problems
    assert (problem.line, problem.path) == (3, "dst")
    assert str(problem).startswith("n.yaml:3:")
    assert "/$/io.buoyant.namer.zk.leader/<zk host:port>/<leader group znode>" in str(problem)


def test_an_unknown_global_namer_is_a_start_up_error():
    config = MarathonConfig(dst="/$/io.buoyant.namer.zk.leaderr/localhost:2181/m")
    with pytest.raises(ConfigError) as raised:
        config.new_namer_with(build_context(), {})
    message = str(raised.value.problems[0])
    assert "no global namer 'io.buoyant.namer.zk.leaderr' is installed" in message
    assert "pip install turnout-namer-zk" in message


def test_the_fixed_inet_form_is_not_bound():
    namer = MarathonConfig(dst="/$/inet/127.0.0.1/8080").new_namer_with(build_context(), {})
    assert namer.api.resolve is None and namer.dst is None
    assert namer.api.base_url == "http://127.0.0.1:8080"


def test_how_a_bound_tree_gives_addresses():
    def bound(*ports: int) -> Leaf:
        addr = Var(Bound([Address("10.0.0.1", p) for p in ports]))
        return Leaf(NameBound(Path.of("x", *map(str, ports)), addr))

    trees = {
        "/a": Alt(Neg, bound(1), bound(2)),
        "/u": Union(Weighted(1, bound(1)), Weighted(1, bound(2, 3)), Weighted(1, Neg)),
        "/rewrite": Leaf(Path.read("/a")),
        "/loop": Leaf(Path.read("/loop")),
        "/fail": Fail,
        "/neg": Neg,
    }

    def lookup(path):
        return Activity.of(trees[path.show]).sample()

    assert [a.port for a in evaluate(lookup, Path.read("/a")).addresses] == [1]
    assert [a.port for a in evaluate(lookup, Path.read("/u")).addresses] == [1, 2, 3]
    assert [a.port for a in evaluate(lookup, Path.read("/rewrite")).addresses] == [1]
    assert "rewrites" in evaluate(lookup, Path.read("/loop")).error
    assert evaluate(lookup, Path.read("/fail")).status == "failed"
    assert evaluate(lookup, Path.read("/neg")).status == "neg"


def test_a_fixedinet_dst_is_bound_and_polled(marathon_double):
    double = marathon_double()
    double.add_app("/web")
    double.set_tasks("/web", [("127.0.0.1", 9101)])

    async def main() -> None:
        ctx = build_context()
        config = MarathonConfig(dst=f"/$/fixedinet/127.0.0.1/{double.port}", ttl_ms=100)
        namer = config.new_namer_with(ctx, {})
        act = namer.lookup(Path.read("/web"))
        obs = act.observe(lambda _: None)
        try:
            await eventually(lambda: ports_of(act) == [9101])
            assert namer.state()["marathon"]["dst"]["current"] == f"127.0.0.1:{double.port}"
        finally:
            obs.close()
            await namer.close()

    run(main())


# -- the Marathon leader in ZooKeeper --------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_namer_follows_the_marathon_leader(zookeeper, kazoo_factory, marathon_double):
    zk = zookeeper
    client = kazoo_factory(zk, timeout=60)
    one, two = marathon_double(), marathon_double()
    for double, port in ((one, 9201), (two, 9202)):
        double.add_app("/web")
        double.set_tasks("/web", [("127.0.0.1", port)])  # each tells which one answered
    first = candidate(client, one)
    second = candidate(client, two)
    global_namer = ZkLeaderGlobalNamer()

    async def main() -> None:
        namer = leader_namer(zk, global_namer)
        act = namer.lookup(Path.read("/web"))
        obs = act.observe(lambda _: None)
        try:
            await eventually(lambda: ports_of(act) == [9201])
            state = namer.state()["marathon"]
            assert state["dst"]["current"] == f"127.0.0.1:{one.port}"
            assert state["url"] == f"http://127.0.0.1:{one.port}/v2"
            assert polls(two) == 0

            # the leader goes away: the next candidate leads, the next poll goes to it
            client.delete(first)
            await eventually(lambda: ports_of(act) == [9202])
            assert namer.state()["marathon"]["dst"]["current"] == f"127.0.0.1:{two.port}"
            settled = polls(one)
            await eventually(lambda: polls(two) >= 5)
            assert polls(one) == settled  # nothing more to the old leader

            # ZooKeeper goes down: the namer keeps polling the last leader
            await asyncio.to_thread(zk.kill)
            [zk_namer] = global_namer.namers.values()
            await eventually(lambda: not zk_namer.zk.connected, 30)
            before = polls(two)
            await eventually(lambda: polls(two) >= before + 5, 30)
            assert ports_of(act) == [9202]
            assert namer.state()["marathon"]["dst"]["current"] == f"127.0.0.1:{two.port}"

            # it comes back; the group empties: still the last leader, and the state says why
            await asyncio.to_thread(zk.restart)
            await eventually(lambda: client.connected, 30)
            await eventually(lambda: zk_namer.zk.connected, 30)
            client.delete(second)
            await eventually(lambda: namer.state()["marathon"]["dst"]["state"] == "neg", 30)
            dst = namer.state()["marathon"]["dst"]
            assert dst["error"] == "it binds to nothing (negative)"
            assert dst["current"] == f"127.0.0.1:{two.port}"
            before = polls(two)
            await eventually(lambda: polls(two) >= before + 3, 30)

            # a new leader is elected: it is used from the next poll on
            candidate(client, one)
            await eventually(lambda: ports_of(act) == [9201], 30)
            assert namer.state()["marathon"]["dst"]["changes"] == 3
        finally:
            obs.close()
            await namer.close()
            await global_namer.close_loop(asyncio.get_running_loop())

    run(main())


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_no_leader_ever_fails_with_the_reason(zookeeper, kazoo_factory, marathon_double):
    zk = zookeeper
    global_namer = ZkLeaderGlobalNamer()

    async def main() -> None:
        namer = leader_namer(zk, global_namer)
        act = namer.lookup(Path.read("/web"))
        obs = act.observe(lambda _: None)
        try:
            await eventually(lambda: namer.apps.last_error is not None)
            assert f"dst /$/{GLOBAL_NAME}/{zk.hosts}{GROUP} has no address" in namer.apps.last_error
            assert "it binds to nothing (negative)" in namer.apps.last_error
            assert namer.state()["marathon"]["url"] is None
            # a leader appears: the namer starts by itself
            double = marathon_double()
            double.add_app("/web")
            double.set_tasks("/web", [("127.0.0.1", 9301)])
            candidate(kazoo_factory(zk), double)
            await eventually(lambda: ports_of(act) == [9301], 30)
        finally:
            obs.close()
            await namer.close()
            await global_namer.close_loop(asyncio.get_running_loop())

    run(main())


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_configured_namer_can_be_the_dst(zookeeper, kazoo_factory, marathon_double):
    zk = zookeeper
    double = marathon_double()
    double.add_app("/web")
    double.set_tasks("/web", [("127.0.0.1", 9401)])
    candidate(kazoo_factory(zk), double)

    async def main() -> None:
        leader = ZkLeaderNamer(Path.read("/#/io.l5d.zkLeader"), zk.hosts)
        ctx = build_context(namers=[(Path.read("/io.l5d.zkLeader"), leader)])
        config = MarathonConfig(dst=f"/#/io.l5d.zkLeader{GROUP}", ttl_ms=100)
        namer = config.new_namer_with(ctx, {})
        act = namer.lookup(Path.read("/web"))
        obs = act.observe(lambda _: None)
        try:
            await eventually(lambda: ports_of(act) == [9401], 30)
            assert namer.state()["marathon"]["dst"]["dst"] == f"/#/io.l5d.zkLeader{GROUP}"
        finally:
            obs.close()
            await namer.close()
            await leader.close()

    run(main())


def test_state_of_a_pending_dst_is_shown():
    namer = MarathonConfig(dst="/#/io.l5d.nothing/x").new_namer_with(build_context(), {})
    dst = namer.state()["marathon"]["dst"]
    assert dst["state"] == "pending" and dst["current"] is None
    assert dst["error"] == "it is not bound yet"
