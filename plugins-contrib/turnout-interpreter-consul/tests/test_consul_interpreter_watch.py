"""The interpreter in one event loop with the Consul API double (``ConsulServer``): bindings
follow the KV key, the request dtab wins over the stored one, a first bad answer fails the
binding, the state page's shape, and close() ends the watch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from turnout.api import Dtab, Failed, InterpreterConfig, Leaf, Ok, Path
from turnout.testing.config import build_context, plugin_registry, read_entry
from turnout_interpreter_consul import plugin
from turnout_namer_consul.testing import ConsulServer

KEY = "namerd/dtabs/ns"


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def interpreter_for(registry, server: ConsulServer, extra: str = ""):
    text = (
        "kind: io.l5d.consul.interpreter\n"
        f"host: 127.0.0.1\nport: {server.port}\nnamespace: ns\n"
        "backoff: {kind: constant, ms: 50}\n" + extra
    )
    config, problems = read_entry(registry, InterpreterConfig, text)
    assert problems == []
    return config.new_interpreter(build_context())


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def bound_id(state) -> str | None:
    if isinstance(state, Ok) and isinstance(state.value, Leaf):
        return str(state.value.value.id)
    return None


def test_bindings_follow_the_key(registry):
    async def main() -> None:
        server = await ConsulServer(jitter=False).start()
        interpreter = interpreter_for(registry, server)
        try:
            state = interpreter.state()["ns"]
            assert state["state"]["value"] == "Still pending"
            assert state["state"]["running"] is False
            server.state.kv_put(KEY, b"/svc/web => /$/inet/127.0.0.1/1001")
            activity = interpreter.bind(Dtab.empty, Path.read("/svc/web"))
            seen: list[object] = []
            observation = activity.observe(seen.append)  # starts the watch
            await until(lambda: bound_id(activity.sample()) == "/$/inet/127.0.0.1/1001")
            assert interpreter.stored_dtab() == Ok(Dtab.read("/svc/web=>/$/inet/127.0.0.1/1001"))
            # the request's dtab comes after the stored one: it wins
            override = interpreter.bind(
                Dtab.read("/svc/web => /$/inet/127.0.0.1/2002"), Path.read("/svc/web")
            )
            assert bound_id(override.sample()) == "/$/inet/127.0.0.1/2002"

            server.state.kv_put(KEY, b"/svc/web => /$/inet/127.0.0.1/1003")
            await until(lambda: bound_id(activity.sample()) == "/$/inet/127.0.0.1/1003")
            server.state.kv_put(KEY, b"/svc/web => ((")
            await until(lambda: interpreter.watch.parse_errors == 1)
            assert bound_id(activity.sample()) == "/$/inet/127.0.0.1/1003"
            state = interpreter.state()["ns"]
            assert state["state"]["running"] is True
            assert "does not parse" in state["state"]["value"]
            assert state["poll"]["response"] == {
                "value": "/svc/web => ((",
                "index": str(server.state.index),
            }
            assert state["poll"]["request"].startswith("GET /v1/kv/namerd/dtabs/ns?raw=true")
            assert state["dtab"] == "/svc/web=>/$/inet/127.0.0.1/1003"
            # Linkerd's VarState/PollState keys, times as Linkerd's Time.toString
            assert set(state["state"]) == {
                "running",
                "lastStartedAt",
                "lastStoppedAt",
                "lastUpdatedAt",
                "value",
            }
            assert set(state["poll"]) == {
                "request",
                "lastRequestAt",
                "response",
                "lastResponseAt",
                "error",
            }
            assert state["state"]["lastStartedAt"].endswith(" +0000")

            server.state.kv_delete(KEY)  # gone: the empty dtab (Linkerd's Ok(None))
            await until(lambda: interpreter.stored_dtab() == Ok(Dtab.empty))
            assert interpreter.state()["ns"]["state"]["value"] == ""
            observation.close()
        finally:
            await interpreter.close()
            await server.stop()
        assert interpreter.watch.running is False
        assert interpreter.state()["ns"]["state"]["lastStoppedAt"] is not None

    asyncio.run(main())


def test_a_first_bad_answer_fails_the_binding_until_a_good_one(registry):
    async def main() -> None:
        server = await ConsulServer(jitter=False).start()
        server.state.kv_put(KEY, b"not a dtab")
        interpreter = interpreter_for(registry, server)
        try:
            interpreter.watch.start()
            await until(lambda: isinstance(interpreter.stored_dtab(), Failed))
            activity = interpreter.bind(Dtab.empty, Path.read("/svc/1234"))
            state = activity.sample()
            assert isinstance(state, Failed) and "does not parse" in str(state.error)
            server.state.kv_put(KEY, b"/svc => /$/inet/127.0.0.1")
            await until(lambda: bound_id(activity.sample()) == "/$/inet/127.0.0.1/1234")
        finally:
            await interpreter.close()
            await server.stop()

    asyncio.run(main())


def test_consul_down_at_start_fails_then_recovers(registry):
    async def main() -> None:
        server = ConsulServer(jitter=False)  # not listening yet
        interpreter = interpreter_for(registry, server)
        try:
            interpreter.watch.start()
            await until(lambda: interpreter.watch.errors >= 2)  # retried with the backoff
            assert isinstance(interpreter.stored_dtab(), Failed)
            assert interpreter.state()["ns"]["poll"]["error"]
            await server.start()
            server.state.kv_put(KEY, b"/svc => /$/inet/127.0.0.1")
            await until(lambda: isinstance(interpreter.stored_dtab(), Ok), timeout=15)
        finally:
            await interpreter.close()
            await server.stop()

    asyncio.run(main())
