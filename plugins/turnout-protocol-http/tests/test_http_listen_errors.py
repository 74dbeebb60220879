"""A server or admin port that cannot be bound: one line naming the router (or the admin), the
address and the fix, exit status 1, no traceback; on uvloop and on the standard loop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def held_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def run(tmp_path, config: dict, loop: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "turnout.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "disco").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "turnout", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "TURNOUT_LOOP": loop},
        cwd=tmp_path,
    )


def config(server_port: int, admin_port: int) -> dict:
    return {
        "admin": {"ip": "127.0.0.1", "port": admin_port},
        "namers": [{"kind": "io.l5d.fs", "rootDir": "disco"}],
        "routers": [
            {
                "protocol": "http",
                "label": "edge",
                "dtab": "/svc => /#/io.l5d.fs;",
                "servers": [{"ip": "127.0.0.1", "port": server_port}],
            }
        ],
    }


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_router_port_taken(tmp_path, loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    taken = held_port()
    free = held_port()
    admin_port = free.getsockname()[1]
    free.close()
    with taken:
        port = taken.getsockname()[1]
        result = run(tmp_path, config(port, admin_port), loop)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "router 'edge' cannot listen: " in result.stderr, result.stderr
    assert str(port) in result.stderr and "choose another port" in result.stderr


def test_admin_port_taken(tmp_path):
    taken = held_port()
    free = held_port()
    server_port = free.getsockname()[1]
    free.close()
    with taken:
        admin_port = taken.getsockname()[1]
        result = run(tmp_path, config(server_port, admin_port), "asyncio")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"the admin server (127.0.0.1:{admin_port}) cannot listen: " in result.stderr
