"""End to end: a real turnout process routes HTTP requests to real backends published as SRV
records in a real BIND 9; weights split the traffic, record changes move it, a killed named
leaves the last good set serving (and shows in the admin), a named down at start-up gives
fast 502s until it comes up."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

WEB = "_http._tcp.web.svc.test"
#: only the plugins these tests use (whatever else is installed in the environment)
ENV = {"TURNOUT_PLUGINS": "protocol-http,namer-dnssrv"}


def turnout_config(bind, dtab: str) -> str:
    config: dict[str, Any] = {
        "admin": {"port": free_port()},
        "namers": [
            {
                "kind": "io.l5d.dnssrv",
                "experimental": True,
                "dnsHosts": [bind.address],
                "refreshIntervalSeconds": 1,
                "timeoutMs": 500,
                "resolveInet": True,
            }
        ],
        "routers": [{"protocol": "http", "dtab": dtab, "servers": [{"port": free_port()}]}],
    }
    return yaml.safe_dump(config, sort_keys=False)


def served_by(port: int, n: int, host: str = "web") -> Counter[str]:
    """``n`` requests on one keep-alive connection: how many each backend answered (all
    must be 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    counts: Counter[str] = Counter()
    try:
        for _ in range(n):
            conn.request("GET", "/", headers={"Host": host})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body)
            counts[body.split()[0].decode()] += 1
    finally:
        conn.close()
    return counts


def answered_by(port: int, host: str = "web") -> str | None:
    r = http_request(port, headers={"Host": host}, timeout=10)
    return r.body.split()[0].decode() if r.status == 200 else None


def admin_json(proxy, path: str) -> Any:
    with urllib.request.urlopen(proxy.admin_url + path, timeout=10) as r:
        return json.loads(r.read())


def test_srv_records_route_weight_move_and_survive_an_outage(
    bind_server, turnout_process, recording_backend
):
    a, b, c = (recording_backend(name=n) for n in "abc")
    bind = bind_server()
    for name in "abc":
        bind.replace_a(name, "127.0.0.1")
    bind.replace_srv("_http._tcp.web", [(0, 1, a.port, "a"), (0, 3, b.port, "b")])
    dtab = (
        "/srv => /#/io.l5d.dnssrv;"
        f"/svc/web => /srv/{WEB};"
        f"/svc/byname => /$/inet/c.svc.test/{c.port};"
    )
    proxy = turnout_process(turnout_config(bind, dtab), env=ENV)

    # SRV weights 1 and 3 split the traffic 25% / 75%
    assert wait_until(lambda: answered_by(proxy.port) is not None, timeout=20)
    counts = served_by(proxy.port, 800)
    assert set(counts) == {"a", "b"}
    assert 0.15 <= counts["a"] / 800 <= 0.35, counts  # 25% +- 10 points (4.6 sigma)

    # resolveInet: a /$/inet host name only BIND knows
    assert answered_by(proxy.port, "byname") == "c"

    # a record change moves the traffic within the refresh interval (1 s)
    bind.replace_srv("_http._tcp.web", [(0, 5, c.port, "c"), (1, 1, a.port, "a")])
    start = time.monotonic()
    assert wait_until(lambda: answered_by(proxy.port) == "c", timeout=20)
    # the refresh interval (1 s), plus slack for a loaded box; below the 5 s default
    assert time.monotonic() - start < 4.5
    assert served_by(proxy.port, 50) == {"c": 50}  # priority 1 (a) is a backup only

    # named killed: the last good set keeps serving; staleness and the error are visible
    bind.kill()

    def watch() -> dict[str, Any]:
        return admin_json(proxy, "/namer_state/io.l5d.dnssrv.json")["watches"][WEB]

    assert wait_until(
        lambda: watch()["errorSince"] is not None and watch()["staleSeconds"] > 1.5, timeout=30
    )
    assert served_by(proxy.port, 50) == {"c": 50}
    state = watch()
    assert state["state"] == "bound" and "Timeout" in state["lastError"]
    metrics = admin_json(proxy, "/admin/metrics.json")
    assert metrics["namer/#/io.l5d.dnssrv/stale_seconds"] > 1
    assert metrics["namer/#/io.l5d.dnssrv/errors"] >= 1

    # back up: changes are picked up again
    bind.restart()
    bind.replace_srv("_http._tcp.web", [(0, 1, b.port, "b")])
    assert wait_until(lambda: answered_by(proxy.port) == "b", timeout=20)
    assert served_by(proxy.port, 30) == {"b": 30}
    assert wait_until(lambda: watch()["errorSince"] is None, timeout=10)
    assert watch()["staleSeconds"] == 0


def test_dns_down_at_start_fails_fast_then_routing_recovers(
    bind_server, turnout_process, recording_backend
):
    a = recording_backend(name="a")
    bind = bind_server(start=False)  # nothing answers on its port yet
    proxy = turnout_process(
        turnout_config(bind, f"/srv => /#/io.l5d.dnssrv; /svc/web => /srv/{WEB};"), env=ENV
    )

    start = time.monotonic()
    r = http_request(proxy.port, headers={"Host": "web"}, timeout=15)
    took = time.monotonic() - start
    assert r.status == 502
    assert took < 5, took  # one query timeout (0.5 s), not bindingTimeoutMs (10 s)
    assert "io.l5d.dnssrv" in unquote(r.header("l5d-err") or "")

    bind.start()
    bind.replace_a("a", "127.0.0.1")
    bind.replace_srv("_http._tcp.web", [(0, 1, a.port, "a")])
    assert wait_until(lambda: answered_by(proxy.port) == "a", timeout=20)
    assert served_by(proxy.port, 20) == {"a": 20}
