"""Fixtures shared by core's tests: ``served_linker``, a linker served in-process (io.l5d.fs,
one HTTP router, the admin) whose configuration file a test rewrites and reloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.config.loader import load_file
from turnout.linker import Linker
from turnout.plugin_manager import Plugins, load_plugins
from turnout.testing import free_port

_PLUGINS: list[Plugins] = []


def plugins() -> Plugins:
    """Every installed plugin, loaded once per test session."""
    if not _PLUGINS:
        _PLUGINS.append(load_plugins())
    return _PLUGINS[0]


class ServedLinker:
    """A linker with ``io.l5d.fs`` (``web`` → ``backend_port``), an HTTP router on
    ``self.port`` with dtab ``/svc => /#/io.l5d.fs`` and the admin; ``self.data`` is its
    configuration, written to ``self.path``. :meth:`serving` runs it; :meth:`reload` applies
    a change of ``self.data``."""

    def __init__(self, tmp_path: Path, backend_port: int) -> None:
        disco = tmp_path / "disco"
        disco.mkdir()
        (disco / "web").write_text(f"127.0.0.1 {backend_port}\n")
        self.port = free_port()
        self.data: dict[str, Any] = {
            "admin": {"ip": "127.0.0.1", "port": free_port()},
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco)}],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.fs",
                    "servers": [{"ip": "127.0.0.1", "port": self.port}],
                }
            ],
        }
        self.path = tmp_path / "turnout.yaml"
        self.path.write_text(yaml.safe_dump(self.data))
        registry = plugins().registry
        self.linker = Linker.build(load_file(str(self.path), registry=registry), plugins())

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Linker]:
        """The linker serving (until the block ends: then shut down, retired runtimes too)."""
        ready = asyncio.Event()
        task = asyncio.create_task(
            self.linker.serve(install_signals=False, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 10)
        try:
            yield self.linker
            await asyncio.wait_for(self.linker.reloader.wait_retired(), 10)
        finally:
            self.linker.request_shutdown(0)
            await asyncio.wait_for(task, 10)

    async def reload(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        """``change(self.data)``, written to the file and reloaded: the reload status."""
        change(self.data)
        self.path.write_text(yaml.safe_dump(self.data))
        return await asyncio.wait_for(self.linker.reloader.reload(), 10)

    async def request(self, host: str = "web") -> bytes:
        """``GET /x`` with ``Host: host`` on a new connection: the raw response."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data


@pytest.fixture
def served_linker(tmp_path: Path) -> Callable[[int], ServedLinker]:
    """``served_linker(backend_port)``: a :class:`ServedLinker` (see there)."""
    return lambda backend_port: ServedLinker(tmp_path, backend_port)
