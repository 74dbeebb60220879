"""Fixtures of namerd's tests: ``namerd_process`` (``python -m turnout namerd`` in a
subprocess, killed at teardown) and the API helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from turnout.testing import http_request, process
from turnout.testing.pytest_plugin import disco_dir, recording_backend, turnout_process

__all__ = ["disco_dir", "namerd_process", "recording_backend", "turnout_process"]


class NamerdProcess(process.NamerdProcess):
    """The testing kit's namerd process, with its admin and API ports and helpers for the
    API."""

    def __init__(self, config: str, workdir: Path, admin_port: int, api_port: int) -> None:
        super().__init__(config, workdir, [api_port, admin_port])
        self.admin_port = admin_port
        self.api_port = api_port

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
