"""What a serving linker does not import (each is resident memory every turnout process and
every worker would pay; docs/performance.md "Memory at start-up"): aiohttp and its
dependencies (the admin server is turnout's own), importlib.metadata (plugins are found by
turnout.entry_points), and the standard-library modules only a rare path needs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from turnout.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: never imported by a linker serving HTTP with io.l5d.fs, the admin and recentRequests, with
#: every plugin of the workspace installed (io.l5d.prometheus, when configured, brings
#: prometheus-client, which imports urllib.request, http.client and email itself)
NOT_IMPORTED = (
    "aiohttp",
    "multidict",
    "yarl",
    "importlib.metadata",
    "email",
    "html.entities",
    "urllib.request",
    "http.client",
    "difflib",
    "tempfile",
    "zipfile",
)

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from turnout.config.loader import load_file
    from turnout.linker import Linker
    from turnout.plugin_manager import load_plugins

    plugins = load_plugins()
    linker = Linker.build(load_file(sys.argv[1], registry=plugins.registry), plugins)

    async def main():
        ready = asyncio.Event()
        task = asyncio.create_task(
            linker.serve(install_signals=False, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 30)
        # the admin answers (its handlers ran), then shut down
        reader, writer = await asyncio.open_connection("127.0.0.1", linker.admin.port)
        writer.write(b"GET /requests HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n")
        head = (await asyncio.wait_for(reader.read(), 10)).split(b"\\r\\n", 1)[0]
        writer.close()
        print(json.dumps({"status": head.decode(), "modules": sorted(sys.modules)}))
        linker.request_shutdown(0)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    """
)


def test_a_serving_linker_imports_none_of_the_heavy_modules(tmp_path: Path) -> None:
    disco = tmp_path / "disco"
    disco.mkdir()
    (disco / "web").write_text("127.0.0.1 9\n")
    config = tmp_path / "turnout.yaml"
    config.write_text(
        json.dumps(
            {
                "admin": {"ip": "127.0.0.1", "port": free_port()},
                "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco)}],
                "telemetry": [{"kind": "io.l5d.recentRequests", "sampleRate": 1.0}],
                "routers": [
                    {
                        "protocol": "http",
                        "dtab": "/svc => /#/io.l5d.fs",
                        "servers": [{"ip": "127.0.0.1", "port": free_port()}],
                    }
                ],
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["status"] == "HTTP/1.1 200 OK"
    modules = set(report["modules"])
    assert "turnout_protocol_http.runtime" in modules  # (it did serve)
    loaded = sorted(m for m in modules for heavy in NOT_IMPORTED if m == heavy)
    assert loaded == [], f"a serving linker imported {loaded}"
