"""A watch stream whose client disconnects stops watching at once (in process: the store's
watchers and the bound activity's observers are counted)."""

from __future__ import annotations

import asyncio

from turnout.namerd import InMemoryDtabStore
from turnout.namerd.http_api import HttpController
from turnout.namerd.runtime import NamespaceInterpreters
from turnout.naming import Dtab, GlobalNamer
from turnout.testing import free_port


async def _eventually(check: object, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_a_dropped_watch_releases_its_observations() -> None:
    async def main() -> None:
        store = InMemoryDtabStore({"default": Dtab.read("/svc=>/$/inet/127.0.0.1/1")})
        namespaces = NamespaceInterpreters(store, [], GlobalNamer())
        port = free_port()
        api = HttpController(store, namespaces, port=port)
        await api.start()
        try:
            writers = []
            for target in (
                "/api/1/dtabs/default?watch=true",
                "/api/1/bind/default?path=/svc/x&watch=true",
            ):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"GET {target} HTTP/1.1\r\nHost: namerd\r\n\r\n".encode())
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert head.startswith(b"HTTP/1.1 200")
                await asyncio.wait_for(reader.readuntil(b"\n\r\n"), 10)  # the first document
                writers.append(writer)
            feed = store._feeds.get("default")
            assert feed is not None and feed.watchers == 2  # the dtab watch + the bind's dtab
            stored = namespaces.dtab("default")  # what the bind watch observes, through its tree
            assert stored.observed
            for writer in writers:
                writer.close()
            assert await _eventually(lambda: feed.watchers == 0)
            assert await _eventually(lambda: not stored.observed)
            assert not api._streams
        finally:
            await api.close()

    asyncio.run(main())
