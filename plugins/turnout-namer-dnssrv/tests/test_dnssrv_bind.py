"""The namer against a real BIND 9: SRV answers, changes, Neg, priorities, outages, start-up
without DNS, no leaks across failed polls; and the ``/$/inet`` lookup with TTLs."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import pytest
from turnout.metrics import MetricsTree
from turnout.naming import (
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    ConfiguredNamersInterpreter,
    Dtab,
    GlobalNamer,
    InetResolver,
    Leaf,
    Neg,
    Ok,
    Path,
    Pending,
)
from turnout.naming.inet import default_resolver
from turnout.testing.config import build_context
from turnout_namer_dnssrv.client import DnsClient, DnsError
from turnout_namer_dnssrv.config import DnsSrvNamerConfig
from turnout_namer_dnssrv.inet import DnsInetLookup, install
from turnout_namer_dnssrv.namer import DnsSrvNamer, addresses_of

pytestmark = [pytest.mark.integration]

PREFIX = Path.read("/#/io.l5d.dnssrv")
WEB = "_http._tcp.web.svc.test"


def make_namer(bind, *, refresh=1.0, timeout=1.0, **kw) -> DnsSrvNamer:
    return DnsSrvNamer(PREFIX, DnsClient([bind.address], timeout), refresh=refresh, **kw)


def addr_of(activity):
    """The Addr an observed lookup currently gives (AddrNeg for a Neg tree)."""
    state = activity.value
    if state == Ok(Neg):
        return AddrNeg
    if state is Pending:
        return AddrPending
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    return state.value.value.addr.value


def endpoints(activity) -> list[str]:
    return list(addresses_of(addr_of(activity)))


async def until(predicate: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` on the loop until it is true (False after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def web(bind_server):
    """BIND with web's SRV records: priority 0 → a (weight 3), b (weight 1; two addresses);
    priority 1 → c."""
    bind = bind_server()
    bind.replace_a("a", "127.0.0.11")
    bind.replace_a("b", "127.0.0.12", "::1")
    bind.replace_a("c", "127.0.0.13")
    bind.replace_srv("_http._tcp.web", [(0, 3, 8080, "a"), (0, 1, 8081, "b"), (1, 5, 9090, "c")])
    return bind


WEB_ENDPOINTS = ["127.0.0.11:8080*3", "127.0.0.12:8081*0.5", "[::1]:8081*0.5"]


def test_srv_answer_binds_weighted_lowest_priority_targets(web):
    async def main():
        namer = make_namer(web)
        act = namer.lookup(Path.read(f"/{WEB}/api/v1"))
        obs = act.observe(lambda _: None)
        assert await until(lambda: isinstance(addr_of(act), AddrBound))
        bound = act.value.value.value
        assert str(bound.id) == f"/#/io.l5d.dnssrv/{WEB}"
        assert str(bound.residual) == "/api/v1"
        assert endpoints(act) == WEB_ENDPOINTS  # priority 1 (c) is not used
        assert namer.client.queries == 1  # the targets came in the additional section
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_targets_missing_from_the_additional_section_are_queried(bind_server):
    bind = bind_server(minimal_responses=True)
    bind.replace_a("a", "127.0.0.11")
    bind.replace_a("b", "127.0.0.12", "::1")
    bind.replace_srv("_http._tcp.web", [(0, 3, 8080, "a"), (0, 1, 8081, "b")])
    assert not bind.query(WEB, "SRV").additional  # what the namer gets: no target addresses

    async def main():
        namer = make_namer(bind)
        act = namer.lookup(Path.read(f"/{WEB}"))
        obs = act.observe(lambda _: None)
        assert await until(lambda: isinstance(addr_of(act), AddrBound))
        assert endpoints(act) == WEB_ENDPOINTS
        assert namer.client.queries == 5  # SRV, then A and AAAA of both targets
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_nxdomain_no_srv_record_and_dot_targets_are_neg(web):
    web.replace_srv("_http._tcp.down", [(0, 0, 0, ".")])

    async def main():
        namer = make_namer(web)
        names = ["nope.svc.test", "a.svc.test", "_http._tcp.down.svc.test"]
        acts = [namer.lookup(Path.read(f"/{n}")) for n in names]
        observations = [a.observe(lambda _: None) for a in acts]
        assert await until(lambda: all(a.value == Ok(Neg) for a in acts))
        state = namer.state()["watches"]
        assert {state[n]["state"] for n in names} == {"neg"}
        for o in observations:
            o.close()
        await namer.close()

    asyncio.run(main())


def test_neg_falls_through_to_the_next_dtab_alternative(web):
    async def main():
        namer = make_namer(web)
        interpreter = ConfiguredNamersInterpreter(
            [(Path.read("/io.l5d.dnssrv"), namer)], GlobalNamer()
        )
        dtab = Dtab.read(
            "/srv => /#/io.l5d.dnssrv; /svc/x => /srv/nope.svc.test | /$/inet/127.0.0.1/9999;"
            f"/svc/web => /srv/{WEB} | /$/inet/127.0.0.1/9999;"
        )
        x, w = (
            interpreter.bind(dtab, Path.read("/svc/x")),
            interpreter.bind(dtab, Path.read("/svc/web")),
        )
        obs = [x.observe(lambda _: None), w.observe(lambda _: None)]

        def ids():
            return [
                str(a.value.value.value.id) if isinstance(a.value, Ok) else None for a in (x, w)
            ]

        assert await until(lambda: ids() == ["/$/inet/127.0.0.1/9999", f"/#/io.l5d.dnssrv/{WEB}"])
        for o in obs:
            o.close()
        await namer.close()

    asyncio.run(main())


def test_next_priority_group_when_no_target_of_the_first_has_an_address(web):
    web.replace_srv("_http._tcp.web", [(0, 1, 8080, "gone"), (5, 5, 9090, "c")])

    async def main():
        metrics = MetricsTree()
        namer = make_namer(web, metrics=metrics)
        act = namer.lookup(Path.read(f"/{WEB}"))
        obs = act.observe(lambda _: None)
        assert await until(lambda: isinstance(addr_of(act), AddrBound))
        assert endpoints(act) == ["127.0.0.13:9090*5"]
        assert metrics.flat()["namer/#/io.l5d.dnssrv/unknown_srv_hosts_results_total"] >= 1
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_a_large_answer_is_read_over_tcp(bind_server):
    bind = bind_server()
    # 60 SRV records (about 2 KB): more than an EDNS UDP payload of 1232 bytes, so the UDP
    # answer is truncated and read again over TCP, and BIND leaves the targets' addresses
    # out of it (120 A/AAAA queries follow)
    n = 60
    for i in range(n):
        bind.replace_a(f"t{i}", f"127.0.1.{i}")
    bind.replace_srv("_http._tcp.big", [(0, 1, 8000 + i, f"t{i}") for i in range(n)])

    async def main():
        namer = make_namer(bind)
        act = namer.lookup(Path.read("/_http._tcp.big.svc.test"))
        obs = act.observe(lambda _: None)
        assert await until(lambda: isinstance(addr_of(act), AddrBound))
        assert len(addr_of(act).addresses) == n
        assert {a.host for a in addr_of(act).addresses} == {f"127.0.1.{i}" for i in range(n)}
        assert namer.client.queries == 1 + 2 * n
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_record_changes_are_seen_within_the_refresh_interval(web):
    async def main():
        namer = make_namer(web, refresh=1.0)
        act = namer.lookup(Path.read(f"/{WEB}"))
        obs = act.observe(lambda _: None)
        assert await until(lambda: endpoints(act) == WEB_ENDPOINTS)

        async def change(update, expected) -> float:
            update()
            start = time.monotonic()
            assert await until(lambda: endpoints(act) == expected), endpoints(act)
            return time.monotonic() - start

        # an SRV change: another target and port
        took = await change(
            lambda: web.replace_srv("_http._tcp.web", [(0, 1, 7070, "c")]), ["127.0.0.13:7070*1"]
        )
        # one refresh interval (1 s), plus slack for a loaded machine; still below the 5 s
        # default, so it is the configured interval that applies
        assert took < 4.5
        # the target's address changes (its A record, not the SRV record)
        took = await change(lambda: web.replace_a("c", "127.0.0.14"), ["127.0.0.14:7070*1"])
        assert took < 4.5
        # no SRV record left: Neg
        took = await change(lambda: web.delete_srv("_http._tcp.web"), [])
        assert act.value == Ok(Neg) and took < 4.5
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_refused_is_an_error_not_neg(web):
    async def main():
        namer = make_namer(web)
        act = namer.lookup(Path.read("/_http._tcp.web.elsewhere.test"))  # not BIND's zone
        obs = act.observe(lambda _: None)
        assert await until(lambda: isinstance(addr_of(act), AddrFailed))
        assert "REFUSED" in str(addr_of(act).cause)
        assert "REFUSED" in namer.state()["watches"]["_http._tcp.web.elsewhere.test"]["lastError"]
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_outage_keeps_the_last_good_set_then_picks_up_changes(web):
    async def main():
        metrics = MetricsTree()
        namer = make_namer(web, refresh=0.5, timeout=0.3, metrics=metrics)
        act = namer.lookup(Path.read(f"/{WEB}"))
        obs = act.observe(lambda _: None)
        assert await until(lambda: endpoints(act) == WEB_ENDPOINTS)
        good = addr_of(act)
        web.kill()
        state = lambda: namer.state()["watches"][WEB]  # noqa: E731
        assert await until(
            lambda: state()["errorSince"] is not None and state()["staleSeconds"] > 1
        )
        assert addr_of(act) is good  # still serving the last good set
        s = state()
        assert s["state"] == "bound" and s["errors"] >= 1
        assert "Timeout" in s["lastError"] and "127.0.0.1" in s["lastError"]
        flat = metrics.flat()
        assert flat["namer/#/io.l5d.dnssrv/stale_seconds"] > 1
        assert flat["namer/#/io.l5d.dnssrv/errors"] >= 1
        assert flat["namer/#/io.l5d.dnssrv/lookup_failures_total"] >= 1
        # back up: the records kept across the kill, and a change made now is picked up
        web.restart()
        web.replace_srv("_http._tcp.web", [(0, 2, 6060, "a")])
        assert await until(lambda: endpoints(act) == ["127.0.0.11:6060*2"])
        assert await until(lambda: state()["errorSince"] is None)
        assert (
            state()["staleSeconds"] == 0
            and metrics.flat()["namer/#/io.l5d.dnssrv/stale_seconds"] == 0
        )
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_dynamic_updates_survive_a_killed_named(web):
    web.replace_a("late", "127.0.0.99")
    web.kill()
    assert not web.answers()
    web.restart()
    answer = web.query("late", "A").answer
    assert [str(r) for r in answer[0]] == ["127.0.0.99"]


def test_dns_down_at_start_fails_fast_then_recovers(bind_server):
    bind = bind_server(start=False)  # its port is chosen, nothing answers there yet

    async def main():
        namer = make_namer(bind, refresh=0.5, timeout=0.3)
        act = namer.lookup(Path.read(f"/{WEB}"))
        start = time.monotonic()
        obs = act.observe(lambda _: None)
        assert await until(lambda: act.value != Ok(Neg) and isinstance(addr_of(act), AddrFailed))
        assert time.monotonic() - start < 5  # one query timeout, not a binding timeout
        assert "Timeout" in str(addr_of(act).cause)
        bind.start()
        bind.replace_a("a", "127.0.0.11")
        bind.replace_srv("_http._tcp.web", [(0, 1, 8080, "a")])
        assert await until(lambda: endpoints(act) == ["127.0.0.11:8080*1"])
        obs.close()
        await namer.close()

    asyncio.run(main())


@pytest.mark.parametrize("failure", ["named killed", "refused"])
def test_no_leaked_tasks_or_sockets_across_100_failed_polls(web, failure):
    async def main():
        tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
        # 50 ms per query, 1 ms between a failure and the next poll
        namer = make_namer(
            web, refresh=0.05, timeout=0.05, backoff=lambda: iter(lambda: 0.001, None)
        )
        name = WEB if failure == "named killed" else "_http._tcp.web.elsewhere.test"
        act = namer.lookup(Path.read(f"/{name}"))
        obs = act.observe(lambda _: None)
        watch = namer.watches[namer.key_of(Path.read(f"/{name}"))[0]]
        if failure == "named killed":
            assert await until(lambda: watch.last_contact is not None)  # one good answer
            web.kill()
        fds = open_fds()
        errors = watch.errors
        assert await until(lambda: watch.errors >= errors + 100, timeout=60)
        # this test, the watch's supervisor, and at most the wait of the query in flight
        assert len(asyncio.all_tasks()) <= tasks_before + 2
        assert open_fds() <= fds + 1  # at most the socket of the query in flight
        if failure == "named killed":
            assert isinstance(addr_of(act), AddrBound)  # all along
            web.restart()
            assert await until(lambda: watch.error_since is None)
        obs.close()
        await namer.close()
        assert len(asyncio.all_tasks()) == tasks_before
        assert open_fds() <= fds_before

    asyncio.run(main())


# -- /$/inet host names over DNS ----------------------------------------------------------------


def test_inet_lookup_answers(web):
    web.replace_a("host", "127.0.0.21", "::1", ttl=7)
    web.replace_srv("_http._tcp.noaddr", [(0, 1, 80, "host")])

    async def main():
        async def system(host):
            raise AssertionError("DNS names must not reach the fallback")

        lookup = DnsInetLookup(DnsClient([web.address], 1.0), system)
        assert await lookup("host.svc.test") == (["127.0.0.21", "::1"], 7.0)
        with pytest.raises(socket.gaierror) as nx:
            await lookup("nope.svc.test")
        assert nx.value.errno == socket.EAI_NONAME
        with pytest.raises(socket.gaierror):  # the name exists, without an address
            await lookup("_http._tcp.noaddr.svc.test")
        refused = DnsInetLookup(DnsClient([web.address], 1.0), system)
        with pytest.raises(DnsError, match="REFUSED"):  # an OSError, not "unknown host"
            await refused("host.elsewhere.test")
        web.kill()
        down = DnsInetLookup(DnsClient([web.address], 0.2), system)
        with pytest.raises(OSError, match="Timeout") as error:
            await down("host.svc.test")
        assert not isinstance(error.value, socket.gaierror)

    asyncio.run(main())


def test_inet_host_is_resolved_again_when_its_ttl_runs_out(web):
    web.replace_a("host", "127.0.0.21", ttl=1)

    async def main():
        resolver = InetResolver(refresh=60.0)  # without the TTL: once a minute
        install(resolver, DnsClient([web.address], 1.0))
        var = resolver.addr("host.svc.test", 8080)
        obs = var.observe(lambda _: None)

        def hosts():
            return [a.host for a in var.value.sorted()] if isinstance(var.value, AddrBound) else []

        assert await until(lambda: hosts() == ["127.0.0.21"])
        web.replace_a("host", "127.0.0.22", ttl=1)
        start = time.monotonic()
        assert await until(lambda: hosts() == ["127.0.0.22"])
        assert time.monotonic() - start < 1 + 9  # the 1 s TTL plus slack, not the 60 s refresh
        # deleted: NXDOMAIN after a good answer keeps the last good addresses (the inet
        # resolver's rule against flapping), and the lookups go on at the TTL-less pace
        web.delete_name("host")
        await asyncio.sleep(1.5)
        assert hosts() == ["127.0.0.22"]
        obs.close()

    asyncio.run(main())


def test_resolve_inet_installs_on_the_default_resolver_until_close(web):
    web.replace_a("host", "127.0.0.21", ttl=1)
    resolver = default_resolver()
    before = resolver.lookup

    async def main():
        config = DnsSrvNamerConfig(experimental=True, dns_hosts=[web.address], resolve_inet=True)
        namer = config.new_namer(build_context())
        try:
            assert isinstance(resolver.lookup, DnsInetLookup) and namer.state()["resolveInet"]
            hosts, ttl = await resolver.lookup("host.svc.test")
            assert hosts == ["127.0.0.21"] and ttl == 1.0
        finally:
            await namer.close()
        assert resolver.lookup is before

    try:
        asyncio.run(main())
    finally:
        resolver.use(before)
