"""Linkerd's ``linkerd/examples/consul-interpreter.yaml``: ``turnout check`` accepts it
unchanged (no "not implemented", nothing ignored), and a copy on free ports, pointed at the
Consul API double holding a service and the dtab at ``/namerd/dtabs/internal``, routes a
request to that service."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from turnout.testing import free_port, http_request, wait_until

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "linkerd" / "consul-interpreter.yaml"

#: linkerd/examples/consul-interpreter.yaml (github.com/linkerd/linkerd), when the checkout
#: has no copy
LINKERD_TEXT = """\
admin:
  ip: 0.0.0.0
  port: 9990
namers:
- kind: io.l5d.consul
  includeTag: false
  useHealthCheck: false
routers:
- protocol: http
  servers:
    - port: 4140
      ip: 0.0.0.0
  interpreter:
    kind: io.l5d.consul.interpreter
    host: localhost
    port: 8500
    namespace: internal
"""

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,namer-consul,interpreter-consul"}


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
    path = tmp_path / "consul-interpreter.yaml"
    path.write_text(example_text())
    result = turnout_check(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "consul-interpreter.yaml: OK" in result.stdout, output
    assert "not implemented" not in output.lower() and "ignored" not in output.lower(), output


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_linkerds_example_routes_through_the_dtab_in_consul(
    consul_double, recording_backend, turnout_process
):
    backend = recording_backend(name="web")
    double = consul_double()
    double.register("web", backend.port, address="127.0.0.1")
    dtab = b"/svc => /#/io.l5d.consul/dc1;"
    request = urllib.request.Request(
        f"{double.url}/v1/kv/namerd/dtabs/internal", data=dtab, method="PUT"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read()) is True

    router_port, admin_port = free_port(), free_port()
    text = example_text().replace("0.0.0.0", "127.0.0.1")
    text = text.replace("port: 8500", f"port: {double.port}")
    text = re.sub(r"port: 4140\b", f"port: {router_port}", text)
    text = re.sub(r"port: 9990\b", f"port: {admin_port}", text)
    # the io.l5d.consul namer of the example talks to localhost:8500 too: point it at the
    # double (the only line added; the example relies on a local agent)
    text = text.replace(
        "  useHealthCheck: false\n",
        f"  useHealthCheck: false\n  host: 127.0.0.1\n  port: {double.port}\n",
    )
    assert f"port: {double.port}" in text and f"port: {router_port}" in text
    proxy = turnout_process(text, env=PLUGINS)
    assert proxy.port == router_port

    def routed() -> bool:
        r = http_request(router_port, "GET", "/x", {"Host": "web"}, timeout=10)
        return r.status == 200 and r.text == "web /x\n"

    assert wait_until(routed, timeout=20)
    assert backend.requests[-1].header("host") == "web"
    kv = [r for r in double.requests("/v1/kv/namerd/dtabs/internal") if r["method"] == "GET"]
    assert kv and all(r["query"]["raw"] == ["true"] for r in kv)
