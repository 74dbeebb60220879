"""Fixtures of namerd's tests: ``namerd_process`` (``python -m turnout namerd`` in a
subprocess, killed at teardown) and the API helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from turnout.testing import die_with_parent, http_request, port_open
from turnout.testing.pytest_plugin import disco_dir, recording_backend, turnout_process

__all__ = ["disco_dir", "namerd_process", "recording_backend", "turnout_process"]


class NamerdProcess:
    """``python -m turnout namerd <config>``; ready when the admin answers and the API port
    accepts connections."""

    def __init__(self, config: str, workdir: Path, admin_port: int, api_port: int) -> None:
        self.config = config
        self.workdir = workdir
        self.admin_port = admin_port
        self.api_port = api_port
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "namerd.yaml"
        self.config_path.write_text(config)
        self.log_path = workdir / "namerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> NamerdProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
        env["PYTHONUNBUFFERED"] = "1"
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
        while not (
            port_open("127.0.0.1", self.api_port) and port_open("127.0.0.1", self.admin_port)
        ):
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

    # -- the API ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        all_headers = {"Host": f"127.0.0.1:{self.api_port}", **(headers or {})}
        return http_request(self.api_port, method, target, all_headers, body, timeout=10)

    def json(self, target: str) -> Any:
        r = self.request("GET", target)
        assert r.status == 200, (r.status, r.text)
        return json.loads(r.body)

    def put(self, ns: str, dtab: str, if_match: str | None = None) -> Any:
        headers = {"Content-Type": "application/dtab"}
        if if_match is not None:
            headers["If-Match"] = if_match
        return self.request("PUT", f"/api/1/dtabs/{ns}", dtab.encode(), headers)


NamerdFactory = Callable[..., NamerdProcess]


@pytest.fixture
def namerd_process(tmp_path: Path) -> Iterator[NamerdFactory]:
    """``namerd_process(config_yaml, admin_port, api_port, start=True)``."""
    started: list[NamerdProcess] = []

    def factory(config: str, admin_port: int, api_port: int, *, start: bool = True) -> Any:
        proc = NamerdProcess(config, tmp_path / f"namerd-{len(started)}", admin_port, api_port)
        started.append(proc)
        return proc.start() if start else proc

    yield factory
    for proc in started:
        proc.kill()
        log = proc.log()
        if log:
            print(f"--- namerd log ({proc.workdir}) ---\n{log}")
