"""Test support of turnout-namerd-mesh (for its tests and its users'): :class:`NamerdProcess`
(``python -m turnout namerd`` in a subprocess, on uvloop or the stdlib loop) and :func:`run`
(a coroutine on a chosen event loop)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from turnout.testing import die_with_parent, http_request, port_open

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


class NamerdProcess:
    """``python -m turnout namerd <config>``; ready when its admin and API ports accept."""

    def __init__(self, config: str, workdir: Path, ports: list[int], loop: str) -> None:
        self.workdir = workdir
        self.ports = ports
        self.loop = loop
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "namerd.yaml"
        self.config_path.write_text(config)
        self.log_path = workdir / "namerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> NamerdProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
        env["PYTHONUNBUFFERED"] = "1"
        if self.loop == "asyncio":
            env["TURNOUT_LOOP"] = "asyncio"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "turnout", "namerd", str(self.config_path)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not all(port_open("127.0.0.1", p) for p in self.ports):
            if self.proc.poll() is not None:
                raise RuntimeError(f"namerd exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"namerd not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

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
