"""The discovery-namer base: lazy watches, last good set, fail-fast, reconnects, state."""

from __future__ import annotations

import asyncio

import pytest
from turnout.discovery import DiscoveryNamer
from turnout.metrics import MetricsTree
from turnout.naming import (
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    Leaf,
    Neg,
    Ok,
    Path,
    Pending,
)


class System:
    """A fake discovery system: per key a queue of answers; ``down`` makes watches fail."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[object]] = {}
        self.connects = 0
        self.running = 0
        self.closed = False

    def queue(self, key: str) -> asyncio.Queue[object]:
        return self.queues.setdefault(key, asyncio.Queue())

    def answer(self, key: str, *ports: int) -> None:
        self.queue(key).put_nowait(AddrBound(Address("127.0.0.1", p) for p in ports))

    def fail(self, key: str, error: str = "connection refused") -> None:
        self.queue(key).put_nowait(ConnectionError(error))


class FakeNamer(DiscoveryNamer[str]):
    kind = "test.fake"

    def __init__(self, system: System, **kw) -> None:
        super().__init__(Path.read("/#/fake"), backoff=lambda: iter(lambda: 0.01, None), **kw)
        self.system = system

    def key_of(self, path: Path):
        if len(path) == 0 or path[0] == b"nope":
            return None
        return path[0].decode(), 1

    async def watch(self, key, publish):
        self.system.connects += 1
        self.system.running += 1
        try:
            while True:
                item = await self.system.queue(key).get()
                if isinstance(item, Exception):
                    raise item
                publish(item)  # type: ignore[arg-type]
        finally:
            self.system.running -= 1

    async def shutdown(self) -> None:
        self.system.closed = True


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)


def ports(state) -> list[int]:
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    addr = state.value.value.addr.value
    assert isinstance(addr, AddrBound), addr
    return sorted(a.port for a in addr.addresses)


def test_watches_start_when_observed_and_stop_when_not():
    async def main():
        system = System()
        namer = FakeNamer(system)
        act = namer.lookup(Path.read("/web/rest"))
        await settle()
        assert system.connects == 0  # nothing routes to it yet: nothing is watched
        seen = []
        obs = act.observe(seen.append)
        await settle()
        assert system.running == 1 and seen == [Pending]
        system.answer("web", 8080, 8081)
        await settle()
        assert ports(act.value) == [8080, 8081]
        bound = act.value.value.value
        assert str(bound.id) == "/#/fake/web" and str(bound.residual) == "/rest"
        obs.close()
        await settle()
        assert system.running == 0  # the watch's task was cancelled
        await namer.close()

    asyncio.run(main())


def test_unknown_names_are_neg():
    async def main():
        system = System()
        namer = FakeNamer(system)
        assert namer.lookup(Path.read("/nope")).value == Ok(Neg)
        act = namer.lookup(Path.read("/gone"))
        obs = act.observe(lambda _: None)
        system.queue("gone").put_nowait(AddrNeg)
        await settle()
        assert act.value == Ok(Neg)  # the system says the service does not exist
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_down_before_any_answer_fails_fast_then_recovers():
    async def main():
        system = System()
        namer = FakeNamer(system)
        act = namer.lookup(Path.read("/web"))
        obs = act.observe(lambda _: None)
        system.fail("web", "connection refused")
        await settle()
        addr = act.value.value.value.addr.value
        assert isinstance(addr, AddrFailed) and "connection refused" in str(addr.cause)
        system.answer("web", 9000)  # the system comes up: the next reconnect sees it
        await settle()
        assert ports(act.value) == [9000]
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_outage_keeps_the_last_good_set_and_reports_it():
    async def main():
        system = System()
        metrics = MetricsTree()
        namer = FakeNamer(system, metrics=metrics)
        act = namer.lookup(Path.read("/web"))
        obs = act.observe(lambda _: None)
        system.answer("web", 1, 2)
        await settle()
        for _ in range(3):
            system.fail("web", "503 from the registry")
        await asyncio.sleep(0.3)
        assert ports(act.value) == [1, 2]  # still serving
        state = namer.state()["watches"]["web"]
        assert state["state"] == "bound" and state["addresses"] == ["127.0.0.1:1", "127.0.0.1:2"]
        assert state["lastError"] == "ConnectionError: 503 from the registry"
        assert state["errors"] == 3 and state["errorSince"] is not None
        assert state["staleSeconds"] > 0.1
        flat = metrics.flat()
        assert flat["namer/#/fake/errors"] == 3
        assert flat["namer/#/fake/stale_seconds"] > 0.1
        assert flat["namer/#/fake/watches"] == 1
        # back, with what changed meanwhile
        system.answer("web", 2, 3)
        await settle()
        assert ports(act.value) == [2, 3]
        state = namer.state()["watches"]["web"]
        assert state["errorSince"] is None and state["staleSeconds"] == 0
        assert metrics.flat()["namer/#/fake/stale_seconds"] == 0
        obs.close()
        await namer.close()

    asyncio.run(main())


def test_no_task_leaks_across_many_reconnects():
    async def main():
        system = System()
        namer = FakeNamer(system)
        act = namer.lookup(Path.read("/web"))
        obs = act.observe(lambda _: None)
        baseline = len(asyncio.all_tasks())
        for i in range(100):
            system.fail("web")
            system.answer("web", 1000 + i)
            await asyncio.sleep(0.015)
        await settle()
        assert system.connects >= 100
        assert system.running == 1
        assert len(asyncio.all_tasks()) == baseline
        obs.close()
        await namer.close()
        assert system.running == 0 and system.closed

    asyncio.run(main())


def test_close_stops_every_watch():
    async def main():
        system = System()
        namer = FakeNamer(system)
        observations = [namer.lookup(Path.read(f"/s{i}")).observe(lambda _: None) for i in range(5)]
        await settle()
        assert system.running == 5 and namer.active_watches() == 5
        await namer.close()
        assert system.running == 0 and namer.active_watches() == 0 and system.closed
        for o in observations:
            o.close()

    asyncio.run(main())


class SwallowingNamer(FakeNamer):
    """A watch whose client library turns a cancellation into its own error (as dnspython's
    resolver may while a query is in flight)."""

    async def watch(self, key, publish):
        self.system.running += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("all nameservers failed") from None
        finally:
            self.system.running -= 1


def test_close_ends_a_watch_whose_client_swallows_the_cancellation():
    async def main():
        system = System()
        namer = SwallowingNamer(system)
        observation = namer.lookup(Path.read("/web")).observe(lambda _: None)
        await settle()
        assert system.running == 1
        await asyncio.wait_for(namer.close(), 10)  # before: retried forever, close() hung
        assert system.running == 0 and system.closed
        assert all(t.done() for t in namer._tasks) or not namer._tasks
        observation.close()

    asyncio.run(main())


@pytest.mark.parametrize("path", ["/web", "/web/a/b"])
def test_the_same_activity_for_the_same_path(path):
    namer = FakeNamer(System())
    assert namer.lookup(Path.read(path)) is namer.lookup(Path.read(path))
