"""Fixtures of the ``lines`` router's end-to-end tests: threaded line backends, a real turnout
process with one ``protocol: lines`` router over an ``io.l5d.fs`` directory, and a client."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, TurnoutProcess, free_port
from turnout.testing.pytest_plugin import *  # noqa: F403

SRC = Path(__file__).parents[1] / "src"
INSTALLED = any(
    ep.value == "turnout_example_lines.plugin"
    for ep in importlib.metadata.entry_points(group="turnout")
)
if not INSTALLED:  # a checkout where this plugin was not pip-installed
    sys.path.insert(0, str(SRC))

#: what a responder returns to leave a request unanswered
SILENT = None


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class LineBackend:
    """A line server on 127.0.0.1: every request line is recorded in :attr:`requests` and
    answered ``responder(payload)`` (a ``str`` line without its newline; :data:`SILENT`
    answers nothing, and the connection stays open until turnout closes it)."""

    def __init__(self, responder: Callable[[str], str | None], name: str) -> None:
        self.name = name
        self.responder = responder
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        backend = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with backend.lock:
                    backend.sockets.append(self.connection)
                for raw in self.rfile:
                    payload = raw.decode().rstrip("\n")
                    with backend.lock:
                        backend.requests.append(payload)
                    answer = backend.responder(payload)
                    if answer is not None:
                        self.wfile.write(answer.encode() + b"\n")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)
        self.thread.start()

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def line_backend() -> Iterator[Callable[..., LineBackend]]:
    """``line_backend(responder, name="backend")``: a started :class:`LineBackend`, stopped
    at teardown."""
    started: list[LineBackend] = []

    def factory(responder: Callable[[str], str | None], name: str = "backend") -> LineBackend:
        backend = LineBackend(responder, name)
        started.append(backend)
        return backend

    yield factory
    for backend in started:
        backend.stop()


def lines_config(
    disco: DiscoDir, *, router: dict[str, Any] | None = None, telemetry: list[Any] | None = None
) -> str:
    """YAML of a turnout with one ``protocol: lines`` router on a free port, an admin on a
    free port and an ``io.l5d.fs`` namer over ``disco`` (polling every 50 ms)."""
    config: dict[str, Any] = {
        "admin": {"port": free_port()},
        "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
        "routers": [
            {
                "protocol": "lines",
                "dtab": "/svc => /#/io.l5d.fs;",
                **(router or {}),
                "servers": [{"port": free_port()}],
            }
        ],
    }
    if telemetry:
        config["telemetry"] = telemetry
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture
def lines_proxy(turnout_process: Any, disco_dir: DiscoDir) -> Callable[..., TurnoutProcess]:
    """``lines_proxy(router={...}, telemetry=[...])``: a started turnout (see
    :func:`lines_config`); ``.port`` is the router's port, ``.admin_url`` the admin's."""
    env = {}
    if not INSTALLED:
        path = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = str(SRC) + (os.pathsep + path if path else "")
        env["TURNOUT_PLUGIN_MODULES"] = "turnout_example_lines.plugin"

    def start(**kw: Any) -> TurnoutProcess:
        proc: TurnoutProcess = turnout_process(lines_config(disco_dir, **kw), env=env)
        return proc

    return start


class LineClient:
    """A client connection to the router: :meth:`ask` sends one line and reads the answer."""

    def __init__(self, port: int, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def ask(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        answer = self.file.readline()
        assert answer.endswith(b"\n"), f"connection closed after {answer!r}"
        return answer.decode().rstrip("\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def line_client() -> Iterator[Callable[[int], LineClient]]:
    """``line_client(port)``: a connected :class:`LineClient`, closed at teardown."""
    opened: list[LineClient] = []

    def factory(port: int) -> LineClient:
        client = LineClient(port)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.close()
