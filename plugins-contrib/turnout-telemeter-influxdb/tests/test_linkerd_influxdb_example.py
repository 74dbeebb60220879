"""Linkerd's ``linkerd/examples/influxdb.yaml``: ``turnout check`` accepts it unchanged (no
"not implemented", nothing ignored), and a copy on free ports, in a working directory holding
its ``io.l5d.fs`` directory, routes a request and serves ``/admin/metrics/influxdb``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from turnout.testing import free_port, http_request, wait_until
from turnout_telemeter_influxdb.testing import parse_lines

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "linkerd" / "influxdb.yaml"

#: linkerd/examples/influxdb.yaml (github.com/linkerd/linkerd), when the checkout has no copy
LINKERD_TEXT = """\
namers:
- kind: io.l5d.fs
  rootDir: linkerd/examples/io.l5d.fs

routers:
- protocol: http
  dtab: /svc => /#/io.l5d.fs;
  servers:
  - port: 4140

telemetry:
- kind: io.l5d.influxdb
"""

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,telemeter-influxdb"}


def example_text() -> str:
    return EXAMPLE.read_text() if EXAMPLE.exists() else LINKERD_TEXT


def test_the_example_is_linkerds():
    text = example_text()
    assert "kind: io.l5d.influxdb" in text
    assert "rootDir: linkerd/examples/io.l5d.fs" in text


def turnout_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )


def test_turnout_check_accepts_linkerds_example(tmp_path):
    (tmp_path / "linkerd" / "examples" / "io.l5d.fs").mkdir(parents=True)
    path = tmp_path / "influxdb.yaml"
    path.write_text(example_text())
    result = turnout_check(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "influxdb.yaml: OK" in result.stdout, output
    assert "not implemented" not in output.lower() and "ignored" not in output.lower(), output


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_linkerds_example_serves_influxdb_lines(tmp_path, recording_backend, turnout_process):
    backend = recording_backend(name="web")
    workdir = tmp_path / "work"
    fs = workdir / "linkerd" / "examples" / "io.l5d.fs"
    fs.mkdir(parents=True)
    (fs / "web").write_text(f"127.0.0.1 {backend.port}\n")
    router_port, admin_port = free_port(), free_port()
    text = re.sub(r"port: 4140\b", f"port: {router_port}\n    ip: 127.0.0.1", example_text())
    text += f"admin:\n  ip: 127.0.0.1\n  port: {admin_port}\n"
    assert f"port: {router_port}" in text
    proxy = turnout_process(text, env=PLUGINS, cwd=workdir)
    assert proxy.port == router_port

    def routed() -> bool:
        r = http_request(router_port, "GET", "/x", {"Host": "web"}, timeout=10)
        return r.status == 200

    assert wait_until(routed, timeout=20)
    response = http_request(
        admin_port, "GET", "/admin/metrics/influxdb", {"Host": "telegraf"}, timeout=10
    )
    assert response.status == 200
    points = parse_lines(response.text)
    servers = [p for p in points if p.measurement == "rt:server"]
    assert servers and servers[0].tags == {
        "host": "telegraf",
        "rt": "http",
        "server": f"127.0.0.1/{router_port}",
    }
    assert servers[0].fields["requests"] >= 1
