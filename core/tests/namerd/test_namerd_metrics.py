"""namerd's metrics (turnout.namerd.metrics): the counting store wrapper still keeps the
store contract and counts reads, writes, conflicts and watches; the /api/1 middleware counts
requests by endpoint and outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from turnout.metrics import MetricsTree
from turnout.namerd import InMemoryDtabStore
from turnout.namerd.metrics import CountingStore, http_metrics_middleware
from turnout.namerd.store import NamespaceExists, VersionMismatch
from turnout.namerd.store_contract import DtabStoreContract, MakeStore
from turnout.naming import Dtab
from turnout.testing import free_port


class TestCountingStoreContract(DtabStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return lambda: CountingStore(InMemoryDtabStore(), MetricsTree(), "io.l5d.inMemory")


def test_counting_store_counts() -> None:
    metrics = MetricsTree()
    store = CountingStore(InMemoryDtabStore(), metrics, "io.l5d.inMemory")
    dtab = Dtab.read("/a=>/b")

    async def main() -> None:
        version = await store.create("ns", dtab)
        with pytest.raises(NamespaceExists):
            await store.create("ns", dtab)
        await store.put("ns", dtab, version)
        with pytest.raises(VersionMismatch):
            await store.put("ns", dtab, version)
        await store.get("ns")
        await store.list()
        watch = store.watch("ns")
        assert (await asyncio.wait_for(watch.__anext__(), 5))[0] == dtab
        assert metrics.flat()["dtabstore/io.l5d.inMemory/open_watches"] == 1
        await watch.aclose()  # type: ignore[attr-defined]
        await store.close()

    asyncio.run(main())
    flat = metrics.flat()
    assert flat["dtabstore/io.l5d.inMemory/writes"] == 4
    assert flat["dtabstore/io.l5d.inMemory/conflicts"] == 2
    assert flat["dtabstore/io.l5d.inMemory/reads"] == 2
    assert flat["dtabstore/io.l5d.inMemory/watches"] == 1
    assert flat["dtabstore/io.l5d.inMemory/open_watches"] == 0


def test_http_middleware_counts_by_endpoint_and_status() -> None:
    metrics = MetricsTree()

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="[]")

    async def main() -> None:
        app = web.Application(middlewares=[http_metrics_middleware(metrics)])
        app.router.add_get("/api/1/dtabs", ok)
        app.router.add_get("/api/1/bind/{ns}", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            async with aiohttp.ClientSession() as session:
                for target in ("/api/1/dtabs", "/api/1/bind/default?path=/a", "/api/1/nope"):
                    async with session.get(f"http://127.0.0.1:{port}{target}") as resp:
                        await resp.read()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    flat: dict[str, Any] = metrics.flat()
    scope = "interface/io.l5d.httpController"
    assert flat[f"{scope}/requests"] == 3
    assert flat[f"{scope}/success"] == 2
    assert flat[f"{scope}/failures"] == 1
    assert flat[f"{scope}/dtabs/requests"] == 1
    assert flat[f"{scope}/bind/requests"] == 1
    assert flat[f"{scope}/status/404"] == 1
