"""Linkerd's ``linkerd/examples/curator.yaml``: ``turnout check`` accepts it unchanged (no
"not implemented", nothing ignored), and a copy on free ports, pointed at a real ZooKeeper,
routes a request to a backend registered the way Curator registers it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from turnout.testing import free_port, http_request, wait_until
from turnout_namer_curator.testing import register_instance

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "linkerd" / "curator.yaml"

#: linkerd/examples/curator.yaml (github.com/linkerd/linkerd), when the checkout has no copy
LINKERD_TEXT = """\
namers:
- kind: io.l5d.curator
  experimental: true
  zkAddrs:
  - host: localhost
    port: 2181
  basePath: /curator
routers:
- protocol: http
  dtab: |
    /svc => /#/io.l5d.curator;
  servers:
  - port: 4140
    ip: 0.0.0.0
"""

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,namer-curator"}


def example_text() -> str:
    return EXAMPLE.read_text() if EXAMPLE.exists() else LINKERD_TEXT


def turnout_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )


def test_turnout_check_accepts_linkerds_example(tmp_path):
    path = tmp_path / "curator.yaml"
    path.write_text(example_text())
    result = turnout_check(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "curator.yaml: OK" in result.stdout, output
    assert "not implemented" not in output.lower() and "ignored" not in output.lower(), output


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_linkerds_example_routes_to_a_curator_instance(
    zookeeper, kazoo_factory, recording_backend, turnout_process
):
    backend = recording_backend(name="curated")
    client = kazoo_factory(zookeeper)
    register_instance(client, "/curator", "web", "127.0.0.1", backend.port)
    router_port = free_port()
    text = example_text().replace("0.0.0.0", "127.0.0.1")
    text = text.replace("port: 2181", f"port: {zookeeper.port}")
    text = re.sub(r"port: 4140\b", f"port: {router_port}", text)
    text += f"admin:\n  port: {free_port()}\n  ip: 127.0.0.1\n"
    assert f"port: {zookeeper.port}" in text and f"port: {router_port}" in text
    proxy = turnout_process(text, env=PLUGINS)
    assert proxy.port == router_port

    def routed() -> bool:
        r = http_request(router_port, "GET", "/x", headers={"Host": "web"}, timeout=10)
        return r.status == 200 and r.text == "curated /x\n"

    assert wait_until(routed, timeout=20)
    assert backend.requests[-1].header("host") == "web"
