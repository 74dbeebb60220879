"""End to end: a real turnout process routes HTTP through ``io.l5d.k8s`` to real backends
whose addresses are endpoints in the Kubernetes API double; traffic follows the endpoints, an
API outage keeps the last good set, and an API down at start-up fails fast then recovers."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
import yaml
from turnout.testing import RecordingBackend, free_port, http_request, wait_until
from turnout_namer_k8s.testing import KubeApiDouble, subsets_for

pytestmark = pytest.mark.integration

#: generous bounds: a loaded 2-CPU machine
SLOW = 20.0
#: load only the plugins these tests need (whatever else is installed in the environment)
ENV = {"TURNOUT_PLUGINS": "turnout-namer-k8s,turnout-protocol-http"}


def config(kube: KubeApiDouble) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "namers": [{"kind": "io.l5d.k8s", "host": "127.0.0.1", "port": kube.port}],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.k8s/default/http;",
                    "servers": [{"port": free_port()}],
                }
            ],
        },
        sort_keys=False,
    )


def endpoints(*backends: RecordingBackend) -> list[dict[str, Any]]:
    return subsets_for([(b.host, b.port) for b in backends])


def ask(proc) -> str:
    """One request for service ``web``; the answering backend's name, or the status."""
    try:
        r = http_request(proc.port, "GET", "/hello", {"Host": "web"}, timeout=5)
    except OSError as e:
        return f"error {e}"
    return r.text.split(" ", 1)[0] if r.status == 200 else f"status {r.status}"


def only(proc, name: str, n: int = 5) -> bool:
    """Whether the next ``n`` requests all reach backend ``name``."""
    return all(ask(proc) == name for _ in range(n))


def namer_state(proc) -> dict[str, Any]:
    with urllib.request.urlopen(proc.admin_url + "/namer_state/io.l5d.k8s.json", timeout=5) as r:
        return json.loads(r.read())["watches"]["default/http/web"]


def test_traffic_follows_the_endpoints_and_survives_an_api_outage(
    turnout_process, recording_backend, kube
):
    a, b = recording_backend(name="a"), recording_backend(name="b")
    kube.set_endpoints("default", "web", endpoints(a))
    proc = turnout_process(config(kube), env=ENV)

    assert wait_until(lambda: ask(proc) == "a", timeout=SLOW)
    assert a.requests[-1].target == "/hello"

    # a second endpoint: both get traffic
    kube.set_endpoints("default", "web", endpoints(a, b))
    assert wait_until(lambda: ask(proc) == "b", timeout=SLOW)
    # the first one removed: traffic moves away from it
    started = time.monotonic()
    kube.set_endpoints("default", "web", endpoints(b))
    assert wait_until(lambda: only(proc, "b"), timeout=SLOW, interval=0.01)
    print(f"\nk8s e2e: traffic left the removed endpoint within {time.monotonic() - started:.3f}s")
    state = namer_state(proc)
    assert state["state"] == "bound" and state["addresses"] == [f"127.0.0.1:{b.port}"]
    assert state["errorSince"] is None

    # the API server goes away: the last good set keeps serving, the error is visible
    kube.stop()
    assert wait_until(lambda: namer_state(proc)["lastError"] is not None, timeout=SLOW)
    assert only(proc, "b", 10)
    state = namer_state(proc)
    assert state["errorSince"] is not None and state["addresses"] == [f"127.0.0.1:{b.port}"]
    assert wait_until(lambda: namer_state(proc)["staleSeconds"] > 0, timeout=SLOW)
    with urllib.request.urlopen(proc.admin_url + "/admin/metrics.json", timeout=5) as r:
        metrics = json.loads(r.read())
    assert metrics["namer/#/io.l5d.k8s/errors"] >= 1

    # changed while the API server was down; picked up when it is back
    kube.set_endpoints("default", "web", endpoints(a))
    kube.start()
    started = time.monotonic()
    assert wait_until(lambda: only(proc, "a"), timeout=SLOW, interval=0.01)
    print(f"k8s e2e: after the outage, traffic moved within {time.monotonic() - started:.3f}s")
    assert wait_until(lambda: namer_state(proc)["errorSince"] is None, timeout=SLOW)


def test_api_down_at_start_up_fails_fast_then_routes_by_itself(
    turnout_process, recording_backend, kube
):
    a = recording_backend(name="a")
    kube.set_endpoints("default", "web", endpoints(a))
    kube.stop()
    proc = turnout_process(config(kube), env=ENV)

    started = time.monotonic()
    answer = ask(proc)
    took = time.monotonic() - started
    print(f"\nk8s e2e: API down at start-up: {answer} in {took:.3f}s")
    assert answer == "status 502"
    assert took < 5  # fails fast, not after a binding timeout
    r = http_request(proc.port, "GET", "/", {"Host": "web"})
    assert r.status == 502 and "io.l5d.k8s" in r.text, r.text

    kube.start()
    assert wait_until(lambda: ask(proc) == "a", timeout=SLOW)
    assert namer_state(proc)["state"] == "bound"
