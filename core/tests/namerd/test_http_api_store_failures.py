"""What io.l5d.httpController answers when its dtab store fails: 503 with the reason when the
store cannot be used (ZooKeeper, etcd... unreachable), 403 when it refused namerd's
credentials (as Linkerd did), and nothing lost: the same request works once the store does."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from turnout.api import DtabStoreForbidden
from turnout.namerd import InMemoryDtabStore
from turnout.namerd.http_api import HttpController
from turnout.naming import Dtab

pytestmark = pytest.mark.timeout(30)


class FlakyStore(InMemoryDtabStore):
    """An in-memory store that fails while ``failure`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: Exception | None = None

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def list(self) -> list[str]:
        self._check()
        return await super().list()

    async def get(self, ns: str) -> Any:
        self._check()
        return await super().get(ns)

    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        self._check()
        return await super().put(ns, dtab, expected)


async def scenario() -> list[tuple[str, int, str]]:
    store = FlakyStore()
    await store.put("default", Dtab.read("/svc=>/$/inet/127.0.0.1/1"))
    controller = HttpController(store, namespaces=None, port=0)  # type: ignore[arg-type]
    await controller.start()
    _, port = controller.address()
    seen: list[tuple[str, int, str]] = []
    try:
        async with aiohttp.ClientSession() as http:

            async def call(label: str, method: str, path: str, body: str | None = None) -> None:
                headers = {"Content-Type": "application/dtab"} if body else {}
                async with http.request(
                    method, f"http://127.0.0.1:{port}{path}", data=body, headers=headers
                ) as r:
                    seen.append((label, r.status, await r.text()))

            for label, failure in (
                ("down", ConnectionError("ZooKeeper unreachable")),
                ("forbidden", DtabStoreForbidden("NoAuth for /dtabs/default")),
                ("up", None),
            ):
                store.failure = failure
                await call(label, "GET", "/api/1/dtabs")
                await call(label, "GET", "/api/1/dtabs/default")
                await call(label, "PUT", "/api/1/dtabs/default", "/svc=>/$/inet/127.0.0.1/2")
    finally:
        await controller.close()
    return seen


def test_store_failures_are_503_and_refusals_403_and_nothing_is_lost() -> None:
    seen = asyncio.run(scenario())
    by_label: dict[str, list[tuple[int, str]]] = {}
    for label, status, text in seen:
        by_label.setdefault(label, []).append((status, text))
    assert [s for s, _ in by_label["down"]] == [503, 503, 503]
    assert all("ZooKeeper unreachable" in t for _, t in by_label["down"])
    assert [s for s, _ in by_label["forbidden"]] == [403, 403, 403]
    assert all("NoAuth" in t for _, t in by_label["forbidden"])
    assert [s for s, _ in by_label["up"]] == [200, 200, 204]
    assert "/$/inet/127.0.0.1/1" in by_label["up"][1][1]  # the failed PUTs changed nothing
