"""What an HTTP router taken over on reload keeps: the same client objects (balancer state,
pooled connections) when the client policy and the namer that bound them did not change; new
ones otherwise; the listening socket of an unchanged address; and its bound names, bound again
under the new configuration before the swap (``Router.prebind``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from turnout.config.loader import load_file
from turnout.linker import Linker
from turnout.naming import Path as PathName
from turnout.plugin_manager import load_plugins
from turnout.testing import RecordingBackend, free_port

PLUGINS = load_plugins()


async def request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_clients_and_sockets_kept_or_rebuilt(tmp_path: Path) -> None:
    backend = RecordingBackend(name="A").start()
    other = RecordingBackend(name="B").start()
    try:
        disco = tmp_path / "disco"
        disco.mkdir()
        (disco / "web").write_text(f"127.0.0.1 {backend.port}\n")
        port = free_port()
        data: dict[str, Any] = {
            "admin": {"ip": "127.0.0.1", "port": free_port()},
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco)}],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.fs",
                    "servers": [{"ip": "127.0.0.1", "port": port}],
                }
            ],
        }
        path = tmp_path / "turnout.yaml"
        path.write_text(yaml.safe_dump(data))
        loaded = load_file(str(path), registry=PLUGINS.registry)
        run(Linker.build(loaded, PLUGINS), path, data, port, other)
    finally:
        backend.stop()
        other.stop()


def run(
    linker: Linker, path: Path, data: dict[str, Any], port: int, other: RecordingBackend
) -> None:
    async def reload(change: Any) -> Any:
        change(data)
        path.write_text(yaml.safe_dump(data))
        status = await asyncio.wait_for(linker.reloader.reload(), 10)
        assert status.ok, status.errors
        return linker.routers[0]

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(
            linker.serve(install_signals=False, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 10)
        try:
            first: Any = linker.routers[0]
            namer = linker.namers[0][1]
            assert b" 200 " in await request(port)
            (client,) = first.core.clients.values()
            name = PathName.read("/svc/web")
            listener = first.server_runtimes[0].server
            interpreter = linker.interpreters["http"]
            # a dtab-only change: new runtime, same socket, same client, same namer
            second = await reload(
                lambda d: d["routers"][0].update(dtab="/svc/web => /#/io.l5d.fs/web")
            )
            assert second is not first and first.successor is second
            assert second.server_runtimes[0].server is listener
            assert list(second.core.clients.values()) == [client]
            assert linker.namers[0][1] is namer
            assert linker.interpreters["http"] is interpreter
            # the name is bound again before any request, on the adopted client
            route = second.core.plain[name]
            assert route.ready and route.single is not None and route.single[0] is client
            misses = linker.metrics.flat()["rt/http/bindcache/path/misses"]
            assert b" 200 " in await request(port)
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
            assert b" 200 " in await request(port)
            assert list(third.core.clients.values()) == [new_client]
            assert third.server_runtimes[0].server is listener
            # a dtab that sends the name elsewhere: bound to the new place before the swap
            fourth = await reload(
                lambda d: d["routers"][0].update(dtab=f"/svc/web => /$/inet/127.0.0.1/{other.port}")
            )
            bound = fourth.core.plain[name]
            assert bound.ready and str(bound.single[0].id) == f"/$/inet/127.0.0.1/{other.port}"
            assert b" 200 " in await request(port)
            assert len(other.requests) == 1
            await asyncio.wait_for(linker.reloader.wait_retired(), 10)
            # metrics of the client survive the old runtime's close (shared by id)
            m = linker.metrics
            key = ("rt", "http", "client", "#", "io.l5d.fs", "web", "requests")
            assert m.flat().get("/".join(key), 0) >= 1, sorted(m.flat())
        finally:
            linker.request_shutdown(0)
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
