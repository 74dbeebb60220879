"""End to end: a real turnout process routes HTTP requests to recording backends found in the
Consul API double, follows registration changes, survives an outage, fails fast then
recovers when Consul is down at start-up, and talks to an agent that requires mutual TLS."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until
from turnout_namer_consul.testing import ConsulDouble

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def turnout_config(consul_port: int, **namer: Any) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "namers": [
                {"kind": "io.l5d.consul", "host": "127.0.0.1", "port": consul_port, **namer}
            ],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.consul/dc1;",
                    "servers": [{"port": free_port()}],
                }
            ],
        },
        sort_keys=False,
    )


def get(proc: Any, host: str = "web", target: str = "/hello") -> Any:
    return http_request(proc.port, "GET", target, {"Host": host}, timeout=15)


def admin_json(proc: Any, path: str) -> Any:
    with urllib.request.urlopen(proc.admin_url + path, timeout=10) as r:
        return json.loads(r.read())


def served_by(proc: Any) -> str | None:
    response = get(proc)
    return response.text.split()[0] if response.status == 200 else None


def test_traffic_follows_registrations_and_survives_an_outage(
    consul_double, recording_backend, turnout_process
):
    double = consul_double()
    a = recording_backend(name="a")
    b = recording_backend(name="b")
    double.register("web", a.port, service_id="web-a", address="127.0.0.1")
    proc = turnout_process(turnout_config(double.port))

    response = get(proc)
    assert response.status == 200 and response.text == "a /hello\n"
    assert a.request_count == 1

    # move the service from a to b
    double.register("web", b.port, service_id="web-b")  # ServiceAddress "": node address
    assert wait_until(lambda: served_by(proc) == "b", timeout=20)
    started = time.monotonic()
    double.deregister("web-a")

    def addresses() -> list[str]:
        return admin_json(proc, "/namer_state/io.l5d.consul.json")["watches"]["/dc1/web"][
            "addresses"
        ]

    assert wait_until(lambda: addresses() == [f"127.0.0.1:{b.port}"], timeout=20, interval=0.005)
    print(f"a deregistered: out of turnout's set {time.monotonic() - started:.3f}s later")
    a_count = a.request_count
    assert [served_by(proc) for _ in range(10)] == ["b"] * 10
    assert a.request_count == a_count

    # Consul goes away: the last good set keeps serving; the state says how stale it is
    double.stop()
    state: dict[str, Any] = {}

    def stale() -> bool:
        state.update(admin_json(proc, "/namer_state/io.l5d.consul.json")["watches"]["/dc1/web"])
        return bool(state["lastError"]) and state["staleSeconds"] > 0.5

    assert wait_until(stale, timeout=20)
    print("namer state during the outage:", state)
    assert state["state"] == "bound" and state["addresses"] == [f"127.0.0.1:{b.port}"]
    assert [served_by(proc) for _ in range(5)] == ["b"] * 5
    metrics = admin_json(proc, "/admin/metrics.json")
    assert metrics["namer/#/io.l5d.consul/stale_seconds"] > 0
    assert metrics["namer/#/io.l5d.consul/errors"] >= 1

    # a registered again while Consul was unreachable: picked up when it answers again
    double.call(lambda s: s.register("web", a.port, service_id="web-a", address="127.0.0.1"))
    double.start()
    assert wait_until(lambda: served_by(proc) == "a", timeout=30, interval=0.05)
    state = admin_json(proc, "/namer_state/io.l5d.consul.json")["watches"]["/dc1/web"]
    assert state["staleSeconds"] == 0 and len(state["addresses"]) == 2


def test_consul_down_at_start_fails_fast_then_recovers(recording_backend, turnout_process):
    double = ConsulDouble()  # its port is chosen, nothing listens there yet
    try:
        a = recording_backend(name="a")
        proc = turnout_process(turnout_config(double.port))
        started = time.monotonic()
        response = get(proc)
        took = time.monotonic() - started
        print(f"answered {response.status} in {took:.3f}s while Consul was down: {response.text!r}")
        assert response.status == 502
        assert took < 5.0  # fails fast: not a wait for bindingTimeoutMs (10 s)
        double.start()
        double.register("web", a.port)
        assert wait_until(lambda: served_by(proc) == "a", timeout=30, interval=0.1)
    finally:
        double.close()


def test_traffic_routed_from_a_consul_agent_over_mutual_tls(
    consul_double, recording_backend, turnout_process, pki
):
    double = consul_double(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    a = recording_backend(name="a")
    b = recording_backend(name="b")
    double.register("web", a.port, service_id="web-a", address="127.0.0.1")
    tls = {
        "commonName": "consul.test",
        "trustCertsBundle": str(pki.ca),
        "clientAuth": {"certPath": str(pki.client_cert), "keyPath": str(pki.client_key)},
    }
    proc = turnout_process(turnout_config(double.port, tls=tls))

    response = get(proc)
    assert response.status == 200 and response.text == "a /hello\n"
    double.register("web", b.port, service_id="web-b", address="127.0.0.1")
    double.deregister("web-a")
    assert wait_until(lambda: served_by(proc) == "b", timeout=20)
    state = admin_json(proc, "/namer_state/io.l5d.consul.json")
    assert state["tls"] == {"verify": True, "name": "consul.test"}
    calls = double.requests("/v1/catalog/service/web")
    assert calls and {c["client_cert"] for c in calls} == {"turnout-client"}
    assert "warning" not in proc.log().lower()
