"""The namer against the Kubernetes API double: list then watch, propagation, Neg, port
numbers through Services, label selection, readiness, and every failure the API can have
(refused, killed, 5xx, dropped streams, 410 as an event and as a status, compaction, down at
start-up), with no leaked tasks or connections.

Each test runs the namer on an asyncio loop in the test's thread; the double serves from its
own thread. Waits are polls with generous bounds; propagation times are measured and printed
(``pytest -s`` shows them)."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from turnout.metrics import MetricsTree
from turnout.naming import AddrBound, AddrFailed, Neg, Ok, Path, Pending
from turnout.testing import free_port
from turnout_namer_k8s.namer import K8sNamer, K8sNsNamer
from turnout_namer_k8s.testing import KubeApiDouble, KubeApiProcess, endpoint_subset, subsets_for

PREFIX = Path.read("/#/io.l5d.k8s")
#: generous bound for anything that should take milliseconds (a loaded 2-CPU machine)
SLOW = 10.0


def fast_backoff():
    return iter(lambda: 0.02, None)


#: the namers a test made (closed when it ends, passed or failed: no session outlives it)
_NAMERS: contextvars.ContextVar[list[K8sNamer]] = contextvars.ContextVar("namers")


def make_namer(kube: KubeApiDouble | KubeApiProcess, cls=K8sNamer, **kw: Any) -> K8sNamer:
    namer = cls(
        kw.pop("prefix", PREFIX),
        host="127.0.0.1",
        port=kube.port,
        metrics=kw.pop("metrics", MetricsTree()),
        backoff=fast_backoff,
        **kw,
    )
    _NAMERS.get().append(namer)
    return namer


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())``, closing every namer it made however it ends."""

    async def guarded() -> None:
        namers: list[K8sNamer] = []
        _NAMERS.set(namers)
        try:
            await main()
        finally:
            for namer in namers:
                await namer.close()

    asyncio.run(guarded())


def current(act) -> Any:
    """What a lookup gives now: "pending", "neg", "failed: ..." or the sorted addresses."""
    state = act.value
    if state is Pending:
        return "pending"
    assert isinstance(state, Ok), state
    if state.value == Neg:
        return "neg"
    addr = state.value.value.addr.value
    if isinstance(addr, AddrBound):
        return sorted(str(a) for a in addr.addresses)
    if isinstance(addr, AddrFailed):
        return f"failed: {addr.cause}"
    return repr(addr)


async def until(predicate: Callable[[], bool], timeout: float = SLOW, what: str = "") -> float:
    """Poll ``predicate`` (every 5 ms); the seconds it took; AssertionError after timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout}s: {what or predicate}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def rewatched(kube: KubeApiDouble, opened: int) -> None:
    """Wait until a watch stream newer than the first ``opened`` ones is the only one open."""
    await until(
        lambda: kube.watch_streams_opened > opened and kube.active_watches == 1,
        what=f"a new watch stream (after {opened})",
    )


def eps(*ports: int) -> list[dict]:
    return subsets_for([("127.0.0.1", p) for p in ports])


def addrs(*ports: int) -> list[str]:
    return sorted(f"127.0.0.1:{p}" for p in ports)


def watch_state(namer: K8sNamer, label: str = "default/http/web") -> dict[str, Any]:
    return namer.state()["watches"][label]


def test_endpoints_added_and_removed_propagate_within_a_second(kube):
    kube.set_endpoints("default", "web", eps(8001))

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8001))
        timings = []
        for ports in [(8001, 8002), (8002,), (8002, 8003, 8004), (8004,), (8001, 8004)]:
            kube.set_endpoints("default", "web", eps(*ports))
            timings.append(await until(lambda p=ports: current(act) == addrs(*p)))
        print(
            f"\nk8s endpoint changes seen by the namer after (s): "
            f"{', '.join(f'{t:.4f}' for t in timings)}; max {max(timings):.4f}"
        )
        assert max(timings) < SLOW
        st = watch_state(namer)
        assert st["updates"] == 6 and st["errors"] == 0
        assert st["kubernetes"]["endpoints"]["lists"] == 1  # one list, then only the watch
        assert len(kube.requests("list")) == 1 and len(kube.requests("watch")) == 1
        obs.close()
        await namer.close()

    run(main)


def test_missing_endpoints_are_neg_until_they_appear(kube):
    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web/residual"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == "neg")
        kube.set_endpoints("default", "web", eps(8080))
        await until(lambda: current(act) == addrs(8080))
        bound = act.value.value.value
        assert str(bound.id) == "/#/io.l5d.k8s/default/http/web"
        assert str(bound.residual) == "/residual"
        assert [str(p) for p in namer.bound_names()] == ["/#/io.l5d.k8s/default/http/web"]
        kube.delete_endpoints("default", "web")
        await until(lambda: current(act) == "neg")
        # a port the endpoints do not have is Neg too
        other = namer.lookup(Path.read("/default/grpc/web"))
        obs2 = other.observe(lambda _: None)
        kube.set_endpoints("default", "web", eps(8080))
        await until(lambda: current(act) == addrs(8080))
        await until(lambda: current(other) == "neg")
        obs.close()
        obs2.close()
        await namer.close()

    run(main)


def test_port_numbers_go_through_the_service(kube):
    kube.set_endpoints(
        "default",
        "web",
        [endpoint_subset(["127.0.0.1"], {"http": 8080, "admin": 9990})],
    )
    kube.set_service("default", "web", [{"name": "http", "port": 80, "targetPort": 8080}])

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/80/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8080))
        # the Service now targets the container port named "admin"
        kube.set_service("default", "web", [{"name": "http", "port": 80, "targetPort": "admin"}])
        await until(lambda: current(act) == addrs(9990))
        # a Service port that does not exist, then no Service at all: Neg
        kube.set_service("default", "web", [{"name": "http", "port": 81, "targetPort": 8080}])
        await until(lambda: current(act) == "neg")
        kube.set_service("default", "web", [{"port": 80, "targetPort": 8080}])
        await until(lambda: current(act) == addrs(8080))
        kube.delete_service("default", "web")
        await until(lambda: current(act) == "neg")
        st = watch_state(namer, "default/80/web")["kubernetes"]
        assert set(st) == {"endpoints", "services"} and st["services"]["exists"] is False
        obs.close()
        await namer.close()

    run(main)


def test_label_selector_selects_by_the_objects_label(kube):
    kube.set_endpoints("default", "web", eps(8080), labels={"version": "v1"})

    async def main():
        namer = make_namer(kube, label_selector="version")
        v1 = namer.lookup(Path.read("/default/http/web/v1"))
        v2 = namer.lookup(Path.read("/default/http/web/V2"))
        observations = [v1.observe(lambda _: None), v2.observe(lambda _: None)]
        await until(lambda: current(v1) == addrs(8080) and current(v2) == "neg")
        assert str(v1.value.value.value.id) == "/#/io.l5d.k8s/default/http/web/v1"
        assert {r.query.get("labelSelector") for r in kube.requests("list")} == {
            "version=v1",
            "version=v2",
        }
        # relabelled: it leaves the v1 watch (DELETED) and enters the v2 one (ADDED)
        kube.set_endpoints("default", "web", eps(8081), labels={"version": "v2"})
        await until(lambda: current(v1) == "neg" and current(v2) == addrs(8081))
        for o in observations:
            o.close()
        await namer.close()

    run(main)


def test_not_ready_addresses_get_no_traffic(kube):
    kube.set_endpoints(
        "default", "web", subsets_for([("127.0.0.1", 8080)], not_ready=[("127.0.0.1", 8081)])
    )

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8080))
        kube.set_endpoints("default", "web", eps(8080, 8081))  # the pod became ready
        await until(lambda: current(act) == addrs(8080, 8081))
        kube.set_endpoints(
            "default", "web", subsets_for([], not_ready=[("127.0.0.1", 8080), ("127.0.0.1", 8081)])
        )
        await until(lambda: current(act) == [])  # every pod unready: bound, but empty
        obs.close()
        await namer.close()

    run(main)


def test_io_l5d_k8s_ns_watches_its_namespace(kube):
    kube.set_endpoints("prod", "web", eps(8080))
    kube.set_endpoints("default", "web", eps(9090))

    async def main():
        namer = make_namer(
            kube, cls=K8sNsNamer, namespace="prod", prefix=Path.read("/#/io.l5d.k8s.ns")
        )
        act = namer.lookup(Path.read("/http/web/x"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8080))
        assert str(act.value.value.value.id) == "/#/io.l5d.k8s.ns/http/web"
        assert namer.state()["namespace"] == "prod"
        assert kube.requests("list")[0].path == "/api/v1/namespaces/prod/endpoints"
        obs.close()
        await namer.close()

    run(main)


# -- failures --------------------------------------------------------------------------------


def test_api_server_down_keeps_the_last_good_set_and_picks_up_changes(kube):
    kube.set_endpoints("default", "web", eps(8001, 8002))

    async def main():
        metrics = MetricsTree()
        namer = make_namer(kube, metrics=metrics)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8001, 8002))
        kube.stop()  # every connection cut, then refused
        await until(lambda: watch_state(namer)["errors"] >= 3)
        await asyncio.sleep(0.2)
        assert current(act) == addrs(8001, 8002)  # still serving
        st = watch_state(namer)
        assert st["state"] == "bound" and st["errorSince"] is not None
        assert "Cannot connect" in st["lastError"] or "Disconnected" in st["lastError"]
        assert st["staleSeconds"] > 0.1
        flat = metrics.flat()
        assert flat["namer/#/io.l5d.k8s/errors"] >= 3
        assert flat["namer/#/io.l5d.k8s/stale_seconds"] > 0.1
        kube.set_endpoints("default", "web", eps(8003))  # changed during the outage
        kube.start()
        took = await until(lambda: current(act) == addrs(8003))
        print(f"\nk8s: change made during the outage seen {took:.3f}s after the restart")
        await until(lambda: watch_state(namer)["errorSince"] is None)
        assert watch_state(namer)["staleSeconds"] == 0
        obs.close()
        await namer.close()

    run(main)


def test_5xx_answers_keep_the_last_good_set(kube):
    kube.set_endpoints("default", "web", eps(8001))

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8001))
        kube.fail(500)
        kube.drop_watches()  # the re-watch gets 500s
        await until(lambda: watch_state(namer)["errors"] >= 3)
        st = watch_state(namer)
        assert "500 InternalError: injected failure" in st["lastError"]
        assert current(act) == addrs(8001)
        kube.set_endpoints("default", "web", eps(8002))
        kube.fail(503)
        await until(lambda: "503" in (watch_state(namer)["lastError"] or ""))
        assert current(act) == addrs(8001)
        kube.fail(None)
        await until(lambda: current(act) == addrs(8002))
        await until(lambda: watch_state(namer)["errorSince"] is None)
        obs.close()
        await namer.close()

    run(main)


def test_a_dropped_stream_resumes_from_the_last_resource_version(kube):
    kube.set_endpoints("default", "web", eps(8001))

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8001))
        rv = kube.set_endpoints("default", "web", eps(8002))
        await until(lambda: current(act) == addrs(8002))
        kube.clear_log()
        opened = kube.watch_streams_opened
        kube.drop_watches()
        await rewatched(kube, opened)
        assert len(kube.requests("watch")) == 1
        assert kube.requests("watch")[0].query["resourceVersion"] == str(rv)
        assert kube.requests("list") == []  # no re-list
        assert watch_state(namer)["errors"] == 0  # a cut after events is routine
        kube.set_endpoints("default", "web", eps(8003))
        await until(lambda: current(act) == addrs(8003))
        # a stream cut before any event (right after it opened) resumes too, after a backoff
        kube.clear_log()
        opened = kube.watch_streams_opened
        kube.drop_watches()
        await rewatched(kube, opened)
        kube.drop_watches()
        await rewatched(kube, opened + 1)
        assert {r.query["resourceVersion"] for r in kube.requests("watch")} == {
            str(kube.resource_version)
        }
        assert kube.requests("list") == []
        # a clean end (the server's timeoutSeconds) also resumes
        kube.set_endpoints("default", "web", eps(8004))
        await until(lambda: current(act) == addrs(8004))
        opened = kube.watch_streams_opened
        kube.end_watches()
        await rewatched(kube, opened)
        kube.set_endpoints("default", "web", eps(8005))
        await until(lambda: current(act) == addrs(8005))
        obs.close()
        await namer.close()

    run(main)


def test_410_as_an_error_event_relists(kube):
    kube.set_endpoints("default", "web", eps(8001))

    async def main():
        metrics = MetricsTree()
        namer = make_namer(kube, metrics=metrics)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8001) and kube.active_watches == 1)
        kube.clear_log()
        opened = kube.watch_streams_opened
        kube.expire_watches()  # {"type":"ERROR","object":{..."code":410}}
        await rewatched(kube, opened)
        assert len(kube.requests("list")) == 1
        assert metrics.flat()["namer/#/io.l5d.k8s/expired"] == 1
        assert metrics.flat()["namer/#/io.l5d.k8s/lists"] == 2
        assert watch_state(namer)["errors"] == 0 and current(act) == addrs(8001)
        kube.set_endpoints("default", "web", eps(8002))
        await until(lambda: current(act) == addrs(8002))
        obs.close()
        await namer.close()

    run(main)


@pytest.mark.parametrize("as_status", [False, True], ids=["error-event", "http-410"])
def test_history_compacted_during_an_outage_relists(kube, as_status):
    kube.set_endpoints("default", "web", eps(8001))
    kube.gone_as_status = as_status

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(8001))
        kube.stop()
        await until(lambda: watch_state(namer)["errors"] >= 1)
        kube.set_endpoints("default", "web", eps(8002))
        kube.compact()  # the version the namer has is gone
        kube.clear_log()
        kube.start()
        await until(lambda: current(act) == addrs(8002) and kube.active_watches == 1)
        kinds = [r.kind for r in kube.requests() if r.kind in ("list", "watch")]
        assert kinds[:3] == ["watch", "list", "watch"]  # resume → 410 → re-list → watch
        assert kube.requests("watch")[0].status == (410 if as_status else 200)
        obs.close()
        await namer.close()

    run(main)


def test_down_at_start_up_fails_fast_then_recovers_by_itself(kube):
    kube.set_endpoints("default", "web", eps(8001))
    kube.stop()

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        took = await until(lambda: str(current(act)).startswith("failed"))
        print(f"\nk8s: API down at start-up, the name failed after {took:.3f}s")
        assert "io.l5d.k8s default/http/web: ClientConnectorError" in current(act)
        assert watch_state(namer)["state"] == "failed"
        kube.start()
        await until(lambda: current(act) == addrs(8001))
        await until(lambda: watch_state(namer)["errorSince"] is None)
        obs.close()
        await namer.close()

    run(main)


def test_no_leaked_tasks_or_connections_across_100_reconnects(kube):
    kube.set_endpoints("default", "web", eps(1000))

    async def main():
        namer = make_namer(kube)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == addrs(1000) and kube.active_watches == 1)
        tasks = len(asyncio.all_tasks())
        for i in range(100):
            opened = kube.watch_streams_opened
            if i % 3 == 0:
                kube.fail(500, count=1)  # the re-watch fails once: error, backoff, resume
            if i % 10 == 9:
                kube.expire_watches()  # 410: re-list
            else:
                kube.drop_watches()
            await rewatched(kube, opened)
            kube.set_endpoints("default", "web", eps(1001 + i))
            await until(lambda i=i: current(act) == addrs(1001 + i))
        await until(lambda: watch_state(namer)["errorSince"] is None)
        assert len(kube.requests("watch")) > 100
        await until(lambda: len(asyncio.all_tasks()) == tasks, what=f"{tasks} tasks")
        assert kube.active_watches == 1
        await until(lambda: kube.open_connections <= 2, what="server-side connections")
        connector = namer.api.session().connector
        assert connector is not None
        assert sum(len(v) for v in connector._conns.values()) <= 2  # pooled idle connections
        assert len(connector._acquired) == 1  # the open watch
        obs.close()
        await until(lambda: kube.active_watches == 0)
        await namer.close()
        assert namer.api._session is None
        await until(lambda: kube.open_connections == 0, what="connections closed")

    run(main)


def test_unobserved_names_stop_their_watch_and_close_ends_everything(kube):
    kube.set_endpoints("default", "web", eps(8001))
    kube.set_service("default", "web", [{"port": 80, "targetPort": 8080}])

    async def main():
        namer = make_namer(kube)
        a = namer.lookup(Path.read("/default/http/web"))
        b = namer.lookup(Path.read("/default/80/web"))
        obs_a, obs_b = a.observe(lambda _: None), b.observe(lambda _: None)
        await until(lambda: kube.active_watches == 3)  # endpoints twice, the service once
        assert namer.active_watches() == 2
        obs_b.close()
        await until(lambda: kube.active_watches == 1)
        assert namer.active_watches() == 1
        await namer.close()
        await until(lambda: kube.active_watches == 0)
        obs_a.close()

    run(main)


@pytest.mark.integration
def test_api_server_process_killed_and_restarted(tmp_path):
    """SIGKILL of a real API server process; while it is dead another replica in front of the
    same store (the state file: etcd) changes the endpoints; the killed one comes back on its
    port with the objects but without the history, so the namer's resume gets 410 and it
    re-lists."""
    etcd = tmp_path / "etcd.json"
    api = KubeApiProcess(free_port(), state_file=etcd)
    replica = KubeApiProcess(free_port(), state_file=etcd)
    try:
        api.start()
        api.set_endpoints("default", "web", eps(8001))

        async def main():
            namer = make_namer(api)
            act = namer.lookup(Path.read("/default/http/web"))
            obs = act.observe(lambda _: None)
            try:
                await until(lambda: current(act) == addrs(8001))
                api.kill()  # SIGKILL
                await until(lambda: watch_state(namer)["errors"] >= 2)
                assert current(act) == addrs(8001)  # still serving the last good set
                assert watch_state(namer)["staleSeconds"] > 0
                await asyncio.to_thread(replica.start)
                await asyncio.to_thread(replica.set_endpoints, "default", "web", eps(8002))
                replica.kill()
                await asyncio.to_thread(api.start)
                took = await until(lambda: current(act) == addrs(8002))
                print(f"\nk8s: API server killed and restarted; new set {took:.3f}s after")
                await until(lambda: watch_state(namer)["errorSince"] is None)
                st = watch_state(namer)["kubernetes"]["endpoints"]
                assert st["expired"] >= 1 and st["lists"] >= 2  # resume → 410 → re-list
            finally:
                obs.close()
                await namer.close()

        run(main)
    finally:
        api.kill()
        replica.kill()


def test_a_wedged_api_server_times_out_and_counts_as_down(kube):
    kube.set_endpoints("default", "web", eps(8001))

    async def main():
        namer = make_namer(kube, request_timeout=0.3)
        act = namer.lookup(Path.read("/default/http/web"))
        obs = act.observe(lambda _: None)
        try:
            await until(lambda: current(act) == addrs(8001))
            kube.hang()
            kube.drop_watches()  # the re-watch is accepted, never answered
            await until(lambda: "Timeout" in (watch_state(namer)["lastError"] or ""))
            assert "no answer in 0.3s" in watch_state(namer)["lastError"]
            assert current(act) == addrs(8001)
            await until(lambda: watch_state(namer)["staleSeconds"] > 0.2)
            kube.set_endpoints("default", "web", eps(8002))
            await asyncio.to_thread(kube.hang, False)
            await until(lambda: current(act) == addrs(8002))
            await until(lambda: watch_state(namer)["errorSince"] is None)
        finally:
            obs.close()
            await namer.close()

    run(main)
