"""What an HTTP router taken over on reload keeps: the same client objects (balancer state,
pooled connections) when the client policy and the namer that bound them did not change; new
ones otherwise; the listening socket of an unchanged address; and its bound names, bound again
under the new configuration before the swap (``Router.prebind``)."""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.naming import Path as PathName
from turnout.testing import RecordingBackend


def test_clients_and_sockets_kept_or_rebuilt(served_linker: Any) -> None:
    backend = RecordingBackend(name="A").start()
    other = RecordingBackend(name="B").start()
    try:
        asyncio.run(scenario(served_linker(backend.port), other))
    finally:
        backend.stop()
        other.stop()


async def scenario(served: Any, other: RecordingBackend) -> None:
    async def reload(change: Any) -> Any:
        status = await served.reload(change)
        assert status.ok, status.errors
        return served.linker.routers[0]

    async with served.serving() as linker:
        first: Any = linker.routers[0]
        namer = linker.namers[0][1]
        assert b" 200 " in await served.request()
        (client,) = first.core.clients.values()
        name = PathName.read("/svc/web")
        listener = first.server_runtimes[0].server
        interpreter = linker.interpreters["http"]
        # a dtab-only change: new runtime, same socket, same client, same namer
        second = await reload(lambda d: d["routers"][0].update(dtab="/svc/web => /#/io.l5d.fs/web"))
        assert second is not first and first.successor is second
        assert second.server_runtimes[0].server is listener
        assert list(second.core.clients.values()) == [client]
        assert linker.namers[0][1] is namer
        assert linker.interpreters["http"] is interpreter
        # the name is bound again before any request, on the adopted client
        route = second.core.plain[name]
        assert route.ready and route.single is not None and route.single[0] is client
        misses = linker.metrics.flat()["rt/http/bindcache/path/misses"]
        assert b" 200 " in await served.request()
        assert list(second.core.clients.values()) == [client]
        assert second.core.plain[name] is route  # (no bind on the request path)
        assert linker.metrics.flat()["rt/http/bindcache/path/misses"] == misses
        # a client policy change: a new client for the same name, made before the swap
        third = await reload(
            lambda d: d["routers"][0].update(client={"loadBalancer": {"kind": "roundRobin"}})
        )
        (new_client,) = third.core.clients.values()
        assert new_client is not client and new_client.id == client.id
        assert third.core.plain[name].single[0] is new_client
        assert b" 200 " in await served.request()
        assert list(third.core.clients.values()) == [new_client]
        assert third.server_runtimes[0].server is listener
        # a dtab that sends the name elsewhere: bound to the new place before the swap
        fourth = await reload(
            lambda d: d["routers"][0].update(dtab=f"/svc/web => /$/inet/127.0.0.1/{other.port}")
        )
        bound = fourth.core.plain[name]
        assert bound.ready and str(bound.single[0].id) == f"/$/inet/127.0.0.1/{other.port}"
        assert b" 200 " in await served.request()
        assert len(other.requests) == 1
        await asyncio.wait_for(linker.reloader.wait_retired(), 10)
        # metrics of the client survive the old runtime's close (shared by id)
        m = linker.metrics
        key = ("rt", "http", "client", "#", "io.l5d.fs", "web", "requests")
        assert m.flat().get("/".join(key), 0) >= 1, sorted(m.flat())
