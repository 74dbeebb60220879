"""End to end: a real turnout process routes HTTP through ``io.l5d.k8s.external`` to backends
whose address (127.0.0.1 and a port) is a LoadBalancer Service's ingress in the Kubernetes API
double; routing follows the Service, an API outage keeps the last good set."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
import yaml
from turnout.testing import RecordingBackend, free_port, http_request, wait_until
from turnout_namer_k8s.testing import KubeApiDouble

pytestmark = pytest.mark.integration

#: generous bounds: a loaded 2-CPU machine
SLOW = 20.0
ENV = {"TURNOUT_PLUGINS": "turnout-namer-k8s-external,turnout-namer-k8s,turnout-protocol-http"}


def config(kube: KubeApiDouble) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port(), "ip": "127.0.0.1"},
            "namers": [
                {
                    "kind": "io.l5d.k8s.external",
                    "experimental": True,
                    "host": "127.0.0.1",
                    "port": kube.port,
                }
            ],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.k8s.external/prod/http;",
                    "servers": [{"port": free_port(), "ip": "127.0.0.1"}],
                }
            ],
        },
        sort_keys=False,
    )


def lb_service(kube: KubeApiDouble, backend: RecordingBackend | None) -> None:
    """Service prod/web, port "http" = the backend's port; its load balancer's ingress is
    127.0.0.1 (None: no load balancer address yet)."""
    port = backend.port if backend is not None else 80
    kube.set_service(
        "prod",
        "web",
        [{"name": "http", "port": port, "targetPort": 8080}],
        load_balancer=[backend.host] if backend is not None else [],
    )


def ask(proc) -> str:
    try:
        r = http_request(proc.port, "GET", "/hello", {"Host": "web"}, timeout=5)
    except OSError as e:
        return f"error {e}"
    return r.text.split(" ", 1)[0] if r.status == 200 else f"status {r.status}"


def namer_state(proc) -> dict[str, Any]:
    url = proc.admin_url + "/namer_state/io.l5d.k8s.external.json"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["watches"]["prod/http/web"]


def test_routing_follows_the_load_balancer(turnout_process, recording_backend, kube):
    a, b = recording_backend(name="a"), recording_backend(name="b")
    lb_service(kube, None)  # a LoadBalancer Service, not provisioned yet
    proc = turnout_process(config(kube), env=ENV)

    # no ingress address: the name is Neg, so there is no route
    assert wait_until(lambda: ask(proc).startswith("status 5"), timeout=SLOW)
    assert namer_state(proc)["state"] == "neg"

    lb_service(kube, a)
    assert wait_until(lambda: ask(proc) == "a", timeout=SLOW)
    assert a.requests[-1].target == "/hello"
    lb_service(kube, b)
    assert wait_until(lambda: ask(proc) == "b", timeout=SLOW)
    assert namer_state(proc)["addresses"] == [f"127.0.0.1:{b.port}"]

    # the API server goes away: the last good set keeps serving
    kube.stop()
    assert wait_until(lambda: namer_state(proc)["lastError"] is not None, timeout=SLOW)
    assert all(ask(proc) == "b" for _ in range(5))
    kube.start()
    lb_service(kube, a)
    assert wait_until(lambda: ask(proc) == "a", timeout=SLOW)

    # the load balancer loses its address, then the Service is deleted: no route
    lb_service(kube, None)
    assert wait_until(lambda: ask(proc).startswith("status 5"), timeout=SLOW)
    lb_service(kube, b)
    assert wait_until(lambda: ask(proc) == "b", timeout=SLOW)
    kube.delete_service("prod", "web")
    assert wait_until(lambda: ask(proc).startswith("status 5"), timeout=SLOW)
