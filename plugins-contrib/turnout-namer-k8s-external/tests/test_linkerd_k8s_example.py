"""Linkerd's ``linkerd/examples/k8s.yaml`` (``io.l5d.k8s`` and ``io.l5d.k8s.external``):
``turnout check`` accepts it unchanged (no "not implemented", nothing ignored), and a copy on
free ports, pointed at the Kubernetes API double, routes one request through
``/#/io.l5d.k8s/foo/http`` (the example's dtab: Endpoints) and one through
``/#/io.l5d.k8s.external/...`` (a LoadBalancer Service) given in an ``l5d-dtab`` header."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from turnout.testing import free_port, http_request, wait_until
from turnout_namer_k8s.testing import subsets_for

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "linkerd" / "k8s.yaml"

#: linkerd/examples/k8s.yaml (github.com/linkerd/linkerd), when the checkout has no copy
LINKERD_TEXT = """\
namers:
- kind: io.l5d.k8s
  host: localhost
  port: 8001
- kind: io.l5d.k8s.external
  experimental: true
  host: localhost
  port: 8001
routers:
- protocol: http
  dtab: |
    /svc => /#/io.l5d.k8s/foo/http;
  servers:
  - port: 4140
"""

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,namer-k8s,namer-k8s-external"}


def example_text() -> str:
    return EXAMPLE.read_text() if EXAMPLE.exists() else LINKERD_TEXT


def test_turnout_check_accepts_linkerds_example(tmp_path):
    path = tmp_path / "k8s.yaml"
    path.write_text(example_text())
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "k8s.yaml: OK" in result.stdout, output
    assert "not implemented" not in output.lower() and "ignored" not in output.lower(), output


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_linkerds_example_routes_through_both_namers(kube, recording_backend, turnout_process):
    internal = recording_backend(name="internal")
    external = recording_backend(name="external")
    # io.l5d.k8s: the Endpoints of foo/web, port "http"
    kube.set_endpoints("foo", "web", subsets_for([(internal.host, internal.port)]))
    # io.l5d.k8s.external: the LoadBalancer Service foo/edge, whose ingress is 127.0.0.1
    kube.set_service(
        "foo", "edge", [{"name": "http", "port": external.port}], load_balancer=[external.host]
    )
    router_port = free_port()
    text = example_text().replace("host: localhost", "host: 127.0.0.1")
    text = text.replace("port: 8001", f"port: {kube.port}")
    text = re.sub(r"port: 4140\b", f"port: {router_port}", text)
    text += f"admin:\n  port: {free_port()}\n  ip: 127.0.0.1\n"
    assert text.count(f"port: {kube.port}") == 2 and f"port: {router_port}" in text
    proxy = turnout_process(text, env=PLUGINS)
    assert proxy.port == router_port

    def routed(host: str, expected: str, headers: dict[str, str]) -> bool:
        r = http_request(router_port, "GET", "/x", headers={"Host": host, **headers}, timeout=10)
        return r.status == 200 and r.text == f"{expected} /x\n"

    assert wait_until(lambda: routed("web", "internal", {}), timeout=20)
    dtab = {"l5d-dtab": "/svc => /#/io.l5d.k8s.external/foo/http"}
    assert wait_until(lambda: routed("edge", "external", dtab), timeout=20)
    assert external.requests[-1].header("host") == "edge"
    assert {r.header("host") for r in internal.requests} == {"web"}
