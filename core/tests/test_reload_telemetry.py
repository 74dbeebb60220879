"""Reloading telemetry: telemeters come and go with a reload; tracers trace new requests (when
tracing starts or stops altogether, every router is taken over by a new runtime); a
telemeter's admin endpoints come, change and go with it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from turnout.linker import Linker
from turnout.testing import RecordingBackend


async def admin_get(linker: Linker, path: str) -> tuple[int, str]:
    """GET ``path`` from the linker's admin server: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", linker.admin.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


class Spans(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def spans() -> Any:
    handler = Spans()
    logger = logging.getLogger("turnout.tracelog")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_telemetry_comes_and_goes_with_a_reload(served_linker: Any, spans: Spans) -> None:
    backend = RecordingBackend(name="A").start()
    try:
        asyncio.run(scenario(served_linker(backend.port), spans))
    finally:
        backend.stop()


async def scenario(served: Any, spans: Spans) -> None:
    async def reload(telemetry: list[dict[str, Any]]) -> Any:
        return await served.reload(lambda d: d.update(telemetry=telemetry))

    async with served.serving() as linker:
        first = linker.routers[0]
        assert linker.tracing is None
        assert b" 200 " in await served.request()
        assert spans.lines == []
        # tracing starts: the tracelog telemeter is built and the router taken over
        status = await reload([{"kind": "io.l5d.tracelog", "sampleRate": 1.0}])
        assert status.ok, status.errors
        second = linker.routers[0]
        assert second is not first and linker.tracing is not None
        assert b" 200 " in await served.request()
        assert len(spans.lines) == 2  # (a server and a client span)
        tracelog = linker.telemeters[0]
        # the tracer changes (sample rate 0): a new tracer in the same tracing, router kept
        status = await reload([{"kind": "io.l5d.tracelog", "sampleRate": 0.0}])
        assert status.ok, status.errors
        assert linker.routers[0] is second and linker.telemeters[0] is not tracelog
        assert b" 200 " in await served.request()
        assert len(spans.lines) == 2
        # a telemeter with admin endpoints comes live: its pages answer, the router is kept
        assert (await admin_get(linker, "/requests.json"))[0] == 404
        status = await reload(
            [
                {"kind": "io.l5d.tracelog", "sampleRate": 0.0},
                {"kind": "io.l5d.recentRequests", "sampleRate": 1.0},
            ]
        )
        assert status.ok, status.errors
        assert len(linker.telemeters) == 2 and linker.routers[0] is second
        assert b" 200 " in await served.request()
        code, body = await admin_get(linker, "/requests.json")
        assert code == 200 and [r["path"] for r in json.loads(body)] == ["/x"]
        assert "/requests" in (await admin_get(linker, "/admin"))[1].split()
        # changed: the new telemeter's handler answers (it has sampled nothing yet)
        status = await reload(
            [
                {"kind": "io.l5d.tracelog", "sampleRate": 0.0},
                {"kind": "io.l5d.recentRequests", "sampleRate": 1.0, "capacity": 5},
            ]
        )
        assert status.ok, status.errors
        assert await admin_get(linker, "/requests.json") == (200, "[]")
        # removed: its pages are gone, the other telemeter stays
        status = await reload([{"kind": "io.l5d.tracelog", "sampleRate": 0.0}])
        assert status.ok, status.errors
        assert (await admin_get(linker, "/requests.json"))[0] == 404
        assert "/requests" not in (await admin_get(linker, "/admin"))[1].split()
        # tracing stops: the router is taken over again, nothing traces
        status = await reload([])
        assert status.ok, status.errors
        assert linker.tracing is None and linker.telemeters == []
        assert linker.routers[0] is not second
        assert b" 200 " in await served.request()
        assert len(spans.lines) == 2
