"""ZooKeeper failures against a real server: SIGKILL and restart, a real session expiry,
ZooKeeper down when the namer starts, and 100 reconnections without leaks.

Each test has its own ZooKeeper (``zookeeper_factory``) so that killing it or counting its
watches and sessions (``mntr``) concerns this test only.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from kazoo.client import KazooClient
from turnout.metrics import MetricsTree
from turnout.naming import Addr, AddrBound, AddrFailed, Path
from turnout_namer_zk.namer import CONNECT_TIMEOUT, ServersetsNamer
from turnout_namer_zk.testing import addr_of, expire_session, member_json, ports, register, wait_for

pytestmark = [pytest.mark.integration]

#: Linkerd's default bindingTimeoutMs: a request never waits longer than this for a name
BINDING_TIMEOUT = 10.0


def new_namer(zk, metrics: MetricsTree | None = None, **kw) -> ServersetsNamer:
    return ServersetsNamer(Path.read("/#/io.l5d.serversets"), zk.hosts, metrics=metrics, **kw)


def run(coro, timeout: float):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def fresh_since(namer: ServersetsNamer, label: str, since: float) -> bool:
    """The watch answered (a good read) after wall-clock time ``since`` and is not failing."""
    state = namer.state()["watches"][label]
    return state["errorSince"] is None and (state["lastContact"] or 0) > since


def mntr_int(zk, key: str) -> int:
    return int(zk.mntr()[key])


@pytest.mark.timeout(90)
def test_zookeeper_killed_keeps_the_last_good_set_then_catches_up(zookeeper, kazoo_factory):
    zk = zookeeper
    client = kazoo_factory(zk)
    znode = "/outage/web"
    a = register(client, znode, member_json(8401))
    register(client, znode, member_json(8402))
    metrics = MetricsTree()
    seen: list[Addr] = []
    report: dict[str, object] = {}

    async def main() -> None:
        namer = new_namer(zk, metrics)
        act = namer.lookup(Path.read(znode))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: ports(addr_of(act)) == {8401, 8402})
            watch = act.value.value.value.addr.observe(seen.append)  # every address update
            zk.kill()  # SIGKILL
            killed = time.time()
            await wait_for(lambda: namer.state()["watches"][znode]["lastError"], timeout=15)
            await wait_for(lambda: metrics.flat()["namer/#/io.l5d.serversets/stale_seconds"] >= 1)
            # still serving the last good set; the outage is visible
            assert ports(addr_of(act)) == {8401, 8402}
            state = namer.state()
            web = state["watches"][znode]
            assert web["state"] == "bound"
            assert web["addresses"] == ["127.0.0.1:8401", "127.0.0.1:8402"]
            assert "ZooKeeper" in web["lastError"], web
            assert web["errorSince"] >= killed - 0.5 and web["staleSeconds"] >= 1
            assert state["zookeeper"]["state"] in ("SUSPENDED", "LOST", "CONNECTING")
            flat = metrics.flat()
            assert flat["namer/#/io.l5d.serversets/errors"] >= 1
            assert flat["namer/#/io.l5d.serversets/zk/connected"] == 0
            report["error"] = web["lastError"]
            report["stale"] = flat["namer/#/io.l5d.serversets/stale_seconds"]

            await asyncio.to_thread(zk.restart)  # same directory, same port
            restarted = time.monotonic()
            # change the serverset at once, from a new client (the namer's kazoo client is
            # most likely still waiting to reconnect)
            other = KazooClient(hosts=zk.hosts, timeout=10)
            await asyncio.to_thread(other.start, 20)
            try:
                report["namer connected when changed"] = namer.zk.connected
                other.delete(a)
                # (not ephemeral: it stays when this client leaves)
                register(other, znode, member_json(8403), ephemeral=False)
                await wait_for(lambda: ports(addr_of(act)) == {8402, 8403}, timeout=20)
                report["caught up after restart (s)"] = round(time.monotonic() - restarted, 3)
            finally:
                await asyncio.to_thread(other.stop)
                other.close()
            await wait_for(lambda: namer.state()["watches"][znode]["errorSince"] is None)
            assert namer.state()["watches"][znode]["staleSeconds"] == 0
            assert metrics.flat()["namer/#/io.l5d.serversets/stale_seconds"] == 0
            assert namer.zk.sessions == 1  # the session outlived the restart
            # one child watch and one data watch per member, on both sides
            assert namer.zk.watcher_count() == 3
            assert mntr_int(zk, "zk_watch_count") == 3
            watch.close()
        finally:
            obs.close()
            await namer.close()

    run(main(), timeout=80)
    print("outage:", report)
    # never an empty, negative or failed set while ZooKeeper was down
    assert seen and all(isinstance(x, AddrBound) and x.addresses for x in seen), seen


@pytest.mark.timeout(90)
def test_session_expiry_reestablishes_watches_on_the_new_session(zookeeper, kazoo_factory):
    zk = zookeeper
    client = kazoo_factory(zk)
    znode = "/expiry/web"
    first = register(client, znode, member_json(8501))
    register(client, znode, member_json(8502))
    seen: list[Addr] = []
    latencies: list[tuple[str, float]] = []

    async def main() -> None:
        sessions_before = mntr_int(zk, "zk_global_sessions")  # the test client's
        namer = new_namer(zk)
        act = namer.lookup(Path.read(znode))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: ports(addr_of(act)) == {8501, 8502})
            watch = act.value.value.value.addr.observe(seen.append)
            old = namer.zk.session_id
            assert old is not None and namer.zk.client is not None
            expired_at = time.time()
            # ZooKeeper itself expires the namer's session (a second client joins it, closes)
            await asyncio.to_thread(expire_session, zk.hosts, namer.zk.client.client_id)
            await wait_for(lambda: namer.zk.session_id not in (None, old), timeout=20)
            await wait_for(lambda: fresh_since(namer, znode, expired_at), timeout=20)
            assert namer.zk.sessions == 2 and namer.zk.session_expirations == 1
            # the watches live on the new session: changes are seen
            register(client, znode, member_json(8503))
            latencies.append(
                ("join", await wait_for(lambda: ports(addr_of(act)) == {8501, 8502, 8503}))
            )
            client.delete(first)
            latencies.append(("leave", await wait_for(lambda: ports(addr_of(act)) == {8502, 8503})))
            state = namer.state()
            assert "lost" in state["watches"][znode]["lastError"]
            assert state["zookeeper"]["sessionExpirations"] == 1
            # server side: the old session is gone, only the new one watches
            assert mntr_int(zk, "zk_global_sessions") == sessions_before + 1
            assert mntr_int(zk, "zk_watch_count") == 3 == namer.zk.watcher_count()
            watch.close()
        finally:
            obs.close()
            await namer.close()

    run(main(), timeout=80)
    print("after expiry:", ", ".join(f"{w} {s * 1000:.1f} ms" for w, s in latencies))
    assert all(s < 1.0 for _, s in latencies), latencies
    assert all(isinstance(x, AddrBound) and x.addresses for x in seen), seen


@pytest.mark.timeout(90)
def test_zookeeper_down_at_start_fails_fast_then_recovers(zookeeper_factory):
    zk = zookeeper_factory(start=False)  # its port is chosen, nothing listens yet
    znode = "/late/web"
    report: dict[str, float] = {}

    async def main() -> None:
        namer = new_namer(zk)
        act = namer.lookup(Path.read(znode))
        start = time.monotonic()
        obs = act.observe(lambda _: None)
        client = None
        try:
            failed_after = await wait_for(lambda: isinstance(addr_of(act), AddrFailed), 15)
            report["failed after (s)"] = round(failed_after, 3)
            assert failed_after < BINDING_TIMEOUT
            assert failed_after < CONNECT_TIMEOUT + 2  # not a wait for bindingTimeoutMs
            cause = addr_of(act).cause
            assert f"no connection to ZooKeeper {zk.hosts}" in cause, cause
            assert namer.state()["watches"][znode]["lastError"] is not None
            await asyncio.sleep(1.5)  # still down a while: attempts go on, nothing piles up
            await asyncio.to_thread(zk.start)
            started = time.monotonic()
            client = KazooClient(hosts=zk.hosts, timeout=10)
            await asyncio.to_thread(client.start, 20)
            register(client, znode, member_json(8601))
            await wait_for(lambda: ports(addr_of(act)) == {8601}, timeout=20)
            report["routable after ZooKeeper started (s)"] = round(time.monotonic() - started, 3)
            report["total (s)"] = round(time.monotonic() - start, 3)
            assert namer.zk.sessions == 1
            assert len(namer._tasks) == 1  # one supervising task, however many attempts
        finally:
            obs.close()
            await namer.close()
            if client is not None:
                await asyncio.to_thread(client.stop)
                client.close()

    run(main(), timeout=80)
    print("down at start:", report)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_no_leaks_across_100_reconnections(zookeeper, kazoo_factory):
    """100 real session expiries (each: SUSPENDED, LOST, new session, everything read
    again); kazoo's watch functions, ZooKeeper's watches and sessions, threads and asyncio
    tasks are counted before and after."""
    zk = zookeeper
    client = kazoo_factory(zk)
    znode = "/leaks/web"
    for port in (8701, 8702, 8703):
        register(client, znode, member_json(port))
    counts: dict[str, object] = {}

    async def main() -> None:
        threads_before = threading.active_count()
        namer = new_namer(zk)
        act = namer.lookup(Path.read(znode))
        obs = act.observe(lambda _: None)
        try:
            await wait_for(lambda: ports(addr_of(act)) == {8701, 8702, 8703})
            threads = threading.active_count()
            tasks = len(asyncio.all_tasks())
            counts["threads: before, running"] = (threads_before, threads)
            started = time.monotonic()
            for _ in range(100):
                old = namer.zk.session_id
                assert namer.zk.client is not None
                expired_at = time.time()
                # (blocking on purpose: no executor threads in the counts)
                expire_session(zk.hosts, namer.zk.client.client_id)
                await wait_for(lambda: namer.zk.session_id not in (None, old), timeout=20)  # noqa: B023
                await wait_for(lambda: fresh_since(namer, znode, expired_at), timeout=20)  # noqa: B023
                assert ports(addr_of(act)) == {8701, 8702, 8703}
            counts["100 expiries (s)"] = round(time.monotonic() - started, 1)
            assert namer.zk.sessions == 101 and namer.zk.session_expirations == 100
            # still watching: a change is seen at once
            register(client, znode, member_json(8704))
            counts["join after 100 (ms)"] = round(
                1000 * await wait_for(lambda: len(ports(addr_of(act))) == 4), 1
            )
            # 1 child watch + 4 member data watches, in kazoo and in ZooKeeper
            assert namer.zk.watcher_count() == 5
            assert mntr_int(zk, "zk_watch_count") == 5
            assert mntr_int(zk, "zk_global_sessions") == 2  # the test client's and the namer's
            await wait_for(lambda: threading.active_count() == threads, timeout=10)
            assert len(asyncio.all_tasks()) == tasks
            assert len(namer._tasks) == 1
        finally:
            obs.close()
            await namer.close()
        await wait_for(lambda: threading.active_count() == threads_before, timeout=15)
        await wait_for(lambda: mntr_int(zk, "zk_global_sessions") == 1, timeout=15)
        assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()

    run(main(), timeout=220)
    print("leak check:", counts)
