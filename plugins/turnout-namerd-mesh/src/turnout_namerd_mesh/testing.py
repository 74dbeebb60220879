"""Test support of turnout-namerd-mesh (for its tests and its users'): :class:`NamerdProcess`
(``python -m turnout namerd`` in a subprocess, on uvloop or the stdlib loop) and :func:`run`
(a coroutine on a chosen event loop)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from turnout.testing import http_request, process

T = TypeVar("T")

#: the event loops turnout runs on: uvloop (its default) and the stdlib's
LOOPS = ["uvloop", "asyncio"]


def run(coro: Coroutine[Any, Any, T], loop: str, timeout: float = 60.0) -> T:
    """Run ``coro`` to completion on a new ``loop`` ("uvloop" or "asyncio"), bounded."""
    bounded = asyncio.wait_for(coro, timeout)
    if loop == "uvloop":
        import uvloop

        return uvloop.run(bounded)
    return asyncio.run(bounded)


class NamerdProcess(process.NamerdProcess):
    """The testing kit's namerd process on the event loop ``loop`` (``uvloop`` or
    ``asyncio``), with helpers for its HTTP API and admin."""

    def __init__(self, config: str, workdir: Path, ports: list[int], loop: str) -> None:
        super().__init__(
            config, workdir, ports, {"TURNOUT_LOOP": "asyncio"} if loop == "asyncio" else {}
        )
        self.loop = loop

    # -- io.l5d.httpController (/api/1) ----------------------------------------------------------
    def http(
        self, port: int, method: str, target: str, body: bytes | None = None, **headers: str
    ) -> Any:
        all_headers = {"Host": f"127.0.0.1:{port}", **headers}
        return http_request(port, method, target, all_headers, body, timeout=10)

    def admin_json(self, admin_port: int, target: str) -> Any:
        r = self.http(admin_port, "GET", target)
        assert r.status == 200, (r.status, r.text)
        return json.loads(r.body)


__all__ = ["LOOPS", "NamerdProcess", "run"]
