"""Linkerd's ``linkerd/examples/h2.yaml`` and ``h2spec.yaml`` load unchanged (but for ports
and paths), pass ``turnout check`` with no warning, and route real HTTP/2 requests (curl with
prior knowledge, a grpcio call) to an h2c nginx and a grpcio server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import free_port, wait_until
from turnout_h2_grpc import GrpcClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "linkerd"


def check(path: Path, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "OK" in output, output
    for word in ("not implemented", "ignored", "warning"):
        assert word not in output.lower(), output


def runnable(name: str, tmp_path: Path) -> Path:
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    config["admin"] = {"port": free_port()}
    for server in config["routers"][0]["servers"]:
        server["port"] = free_port()
        server.pop("ip", None)  # (0.0.0.0 in the example: loopback here)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_linkerd_h2_example(tmp_path, turnout_process, nginx_backend, grpc_backend):
    web = nginx_backend("web", http2=True)
    rpc = grpc_backend("rpc")
    # the example's namer directory, relative to the working directory as in Linkerd
    fs = tmp_path / "linkerd" / "examples" / "io.l5d.fs"
    fs.mkdir(parents=True)
    (fs / "web").write_text(f"127.0.0.1 {web.port}\n")
    (fs / "rpc").write_text(f"127.0.0.1 {rpc.port}\n")
    path = runnable("h2.yaml", tmp_path)
    check(path, tmp_path)
    proxy = turnout_process(path.read_text(), cwd=tmp_path)
    port = proxy.port
    # :authority "web" → /svc/web → /srv/web → /#/io.l5d.fs/web
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2-prior-knowledge",
            "--connect-to",
            f"web:80:127.0.0.1:{port}",
            "http://web/hello",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stdout == "web /hello\n", done
    with GrpcClient(port, authority="rpc") as client:
        assert client.unary("Unary", b"x", timeout=10) == b"rpc:x"
    # h2AccessLog: logs/access.log under the working directory, rolled daily
    log = tmp_path / "logs" / "access.log"
    assert wait_until(lambda: log.exists() and log.read_text().count("\n") >= 2, timeout=5)
    assert '"GET /hello HTTP/2" 200' in log.read_text()
    assert proxy.stop() == 0
    assert "Traceback" not in proxy.log()


def test_linkerd_h2spec_example(tmp_path, turnout_process, nginx_backend):
    web = nginx_backend("web", http2=True)
    path = runnable("h2spec.yaml", tmp_path)
    check(path, tmp_path)
    # the example sends everything to /$/inet/127.1/8080: the test's backend instead
    text = path.read_text().replace("/$/inet/127.1/8080", f"/$/inet/127.0.0.1/{web.port}")
    proxy = turnout_process(text, cwd=tmp_path)
    done = subprocess.run(
        ["nghttp", f"http://127.0.0.1:{proxy.port}/spec"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stdout == "web /spec\n", done
    assert proxy.stop() == 0
