"""``watch_config`` (what ``turnout run --watch-config`` runs): a change of the file's content
is reloaded; an unchanged content (a touch) is not."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import yaml
from turnout.config.loader import load_file
from turnout.linker import Linker
from turnout.plugin_manager import load_plugins
from turnout.reload import watch_config
from turnout.testing import free_port

PLUGINS = load_plugins()


def test_watch_config_reloads_changed_content_only(tmp_path: Path) -> None:
    data = {
        "admin": {"ip": "127.0.0.1", "port": free_port()},
        "routers": [
            {
                "protocol": "http",
                "dtab": "/svc => /$/inet/127.0.0.1/1",
                "servers": [{"ip": "127.0.0.1", "port": free_port()}],
            }
        ],
    }
    path = tmp_path / "turnout.yaml"
    text = yaml.safe_dump(data)
    path.write_text(text)
    loaded = load_file(str(path), registry=PLUGINS.registry)

    async def until(predicate: object, timeout: float = 10.0) -> None:
        async def poll() -> None:
            while not predicate():  # type: ignore[operator]
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)

    async def main() -> None:
        linker = Linker.build(loaded, PLUGINS)
        ready = asyncio.Event()
        task = asyncio.create_task(
            linker.serve(install_signals=False, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 10)
        watcher = asyncio.create_task(watch_config(linker, 0.05))
        status = linker.reloader.status
        try:
            await asyncio.sleep(0.3)
            os.utime(path)  # touched, same content: no reload
            await asyncio.sleep(0.3)
            assert status.last_attempt is None
            data["routers"][0]["dtab"] = "/svc => /$/inet/127.0.0.1/2"
            path.write_text(yaml.safe_dump(data))
            await until(lambda: status.generation == 1)
            assert status.ok and str(linker.routers[0].config.dtab) == str(
                linker.config.routers[0].dtab
            )
            assert "127.0.0.1/2" in linker.config.routers[0].dtab.show
            path.write_text(yaml.safe_dump(data) + "bogus: 1\n")
            await until(lambda: status.ok is False)
            assert status.generation == 1
            assert any("turnout.yaml:" in e and "bogus" in e for e in status.errors)
        finally:
            watcher.cancel()
            linker.request_shutdown(0)
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
