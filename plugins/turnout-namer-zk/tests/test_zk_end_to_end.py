"""End to end: a real turnout process routes HTTP to real backends found in a real
ZooKeeper through ``io.l5d.serversets``; members are registered from the test as ephemeral
sequential znodes; traffic follows registration changes, survives ZooKeeper being killed, and
starts by itself when ZooKeeper comes up after turnout.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until
from turnout_namer_zk.testing import member_json, register

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ZNODE = "/e2e/discovery/prod/web"
#: only the plugins these tests need (others installed in the same environment stay out)
PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,namer-zk"}
DTAB = "/svc => /#/io.l5d.serversets/e2e/discovery/prod;"


def turnout_config(zk, *, binding_timeout_ms: int | None = None) -> str:
    router: dict[str, Any] = {
        "protocol": "http",
        "dtab": DTAB,
        "servers": [{"port": free_port()}],
    }
    if binding_timeout_ms is not None:
        router["bindingTimeoutMs"] = binding_timeout_ms
    config = {
        "admin": {"port": free_port()},
        "namers": [{"kind": "io.l5d.serversets", "zkAddrs": zk.zk_addrs()}],
        "routers": [router],
    }
    return yaml.safe_dump(config, sort_keys=False)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def served_by(proxy) -> tuple[float, str]:
    """One request for ``web``: (when it was sent, the backend that answered or the status)."""
    sent = time.monotonic()
    response = http_request(proxy.port, headers={"Host": "web"}, timeout=10)
    if response.status != 200:
        return sent, str(response.status)
    return sent, response.text.split(" ", 1)[0]


def traffic_until(proxy, done, timeout: float = 10.0) -> list[tuple[float, str]]:
    """Send requests one after the other until ``done(history)``; the history."""
    history: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    while not done(history):
        assert time.monotonic() < deadline, f"traffic never settled: {history[-20:]}"
        history.append(served_by(proxy))
    return history


def last_n(history: list[tuple[float, str]], n: int) -> set[str]:
    return {who for _, who in history[-n:]} if len(history) >= n else set()


def test_traffic_follows_serverset_changes_and_survives_zookeeper_outages(
    zookeeper, kazoo_factory, recording_backend, turnout_process
):
    zk = zookeeper
    client = kazoo_factory(zk)
    a, b, c = (recording_backend(name=n) for n in ("a", "b", "c"))
    node_a = register(client, ZNODE, member_json(a.port))
    register(client, ZNODE, member_json(b.port))
    proxy = turnout_process(turnout_config(zk), env=PLUGINS)
    latencies: dict[str, float] = {}

    # both members get traffic
    traffic_until(proxy, lambda h: {"a", "b"} <= {who for _, who in h})

    # a leaves the serverset: no request reaches it after it left
    client.delete(node_a)
    left = time.monotonic()
    history = traffic_until(proxy, lambda h: last_n(h, 20) == {"b"})
    after_a = [t for t, who in history if who == "a"]
    latencies["routed away from a leaving"] = (after_a[-1] - left) if after_a else 0.0
    assert {who for _, who in history} <= {"a", "b"}, history  # never an error

    # c joins: it gets traffic
    register(client, ZNODE, member_json(c.port))
    joined = time.monotonic()
    history = traffic_until(proxy, lambda h: any(who == "c" for _, who in h))
    latencies["routed to c joining"] = next(t for t, who in history if who == "c") - joined
    traffic_until(proxy, lambda h: last_n(h, 30) == {"b", "c"})

    # ZooKeeper is killed: the last good set keeps serving; the outage shows
    admin = proxy.admin_url
    zk.kill()
    assert wait_until(
        lambda: get_json(f"{admin}/namer_state/io.l5d.serversets.json")["watches"][
            "/e2e/discovery/prod/web"
        ]["lastError"],
        timeout=15,
    )
    history = traffic_until(proxy, lambda h: len(h) >= 30)
    assert {who for _, who in history} == {"b", "c"}, history
    assert wait_until(
        lambda: (
            get_json(f"{admin}/admin/metrics.json")["namer/#/io.l5d.serversets/stale_seconds"] >= 1
        ),
        timeout=10,
    )
    state = get_json(f"{admin}/namer_state/io.l5d.serversets.json")
    web = state["watches"]["/e2e/discovery/prod/web"]
    assert web["state"] == "bound" and len(web["addresses"]) == 2
    assert web["errorSince"] is not None and web["staleSeconds"] >= 1
    assert state["zookeeper"]["state"] != "CONNECTED"
    metrics = get_json(f"{admin}/admin/metrics.json")
    assert metrics["namer/#/io.l5d.serversets/zk/connected"] == 0
    assert metrics["namer/#/io.l5d.serversets/errors"] >= 1

    # ZooKeeper is back: the namer answers again and sees new changes
    zk.restart()
    assert wait_until(
        lambda: (
            get_json(f"{admin}/namer_state/io.l5d.serversets.json")["watches"][
                "/e2e/discovery/prod/web"
            ]["errorSince"]
            is None
        ),
        timeout=20,
    )
    assert wait_until(lambda: client.connected, timeout=30)
    client.delete(f"{ZNODE}/{client.get_children(ZNODE)[0]}")
    traffic_until(proxy, lambda h: len(last_n(h, 20)) == 1)
    metrics = get_json(f"{admin}/admin/metrics.json")
    assert metrics["namer/#/io.l5d.serversets/stale_seconds"] == 0
    assert metrics["namer/#/io.l5d.serversets/zk/connected"] == 1

    print("latencies:", {k: f"{v * 1000:.0f} ms" for k, v in latencies.items()})
    assert all(v < 1.0 for v in latencies.values()), latencies


def test_zookeeper_down_at_start_fails_fast_then_routes_by_itself(
    zookeeper_factory, kazoo_factory, recording_backend, turnout_process
):
    zk = zookeeper_factory(start=False)
    backend = recording_backend(name="late")
    proxy = turnout_process(turnout_config(zk, binding_timeout_ms=10_000), env=PLUGINS)

    sent = time.monotonic()
    response = http_request(proxy.port, headers={"Host": "web"}, timeout=15)
    first = time.monotonic() - sent
    assert response.status == 502, response
    assert "ZooKeeper" in (response.header("l5d-err") or "") + response.text, response
    sent = time.monotonic()
    assert http_request(proxy.port, headers={"Host": "web"}, timeout=15).status == 502
    again = time.monotonic() - sent
    print(f"first request failed after {first:.2f} s, the next after {again:.3f} s")
    assert first < 10.0  # bindingTimeoutMs
    assert again < 1.0  # failed names fail at once

    zk.start()
    started = time.monotonic()
    register(kazoo_factory(zk), ZNODE, member_json(backend.port))
    assert wait_until(
        lambda: http_request(proxy.port, headers={"Host": "web"}, timeout=15).status == 200,
        timeout=30,
        interval=0.1,
    )
    print(f"routed {time.monotonic() - started:.2f} s after ZooKeeper started")
    assert backend.requests
