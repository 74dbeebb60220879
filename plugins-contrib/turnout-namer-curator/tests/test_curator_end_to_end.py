"""End to end: a real turnout process routes HTTP to real backends registered in a real
ZooKeeper the way Curator's ServiceDiscovery registers them; traffic follows instances
joining and leaving, and survives ZooKeeper being killed and restarted."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until
from turnout_namer_curator.testing import register_instance

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,namer-curator"}
BASE = "/services"


def turnout_config(zk) -> str:
    config = {
        "admin": {"port": free_port()},
        "namers": [
            {
                "kind": "io.l5d.curator",
                "experimental": True,
                "zkAddrs": zk.zk_addrs(),
                "basePath": BASE,
            }
        ],
        "routers": [
            {
                "protocol": "http",
                "dtab": "/svc => /#/io.l5d.curator;",
                "servers": [{"port": free_port()}],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def served_by(proxy, n: int = 10, host: str = "web") -> set[str]:
    out = set()
    for _ in range(n):
        r = http_request(proxy.port, headers={"Host": host}, timeout=10)
        out.add(r.text.split(" ", 1)[0] if r.status == 200 else str(r.status))
    return out


def test_traffic_follows_curator_instances(
    zookeeper, kazoo_factory, recording_backend, turnout_process
):
    zk = zookeeper
    client = kazoo_factory(zk, timeout=60)
    a, b, c = (recording_backend(name=n) for n in ("a", "b", "c"))
    node_a = register_instance(client, BASE, "web", "127.0.0.1", a.port)
    register_instance(client, BASE, "web", "127.0.0.1", b.port)
    proxy = turnout_process(turnout_config(zk), env=PLUGINS)

    response = http_request(proxy.port, "GET", "/hello", headers={"Host": "web"}, timeout=10)
    assert response.status == 200 and response.text.split(" ")[1].strip() == "/hello"
    assert wait_until(lambda: served_by(proxy, 20) == {"a", "b"}, timeout=20)

    client.delete(node_a)  # unregisterService
    assert wait_until(lambda: served_by(proxy, 10) == {"b"}, timeout=20)
    register_instance(client, BASE, "web", "127.0.0.1", c.port)
    assert wait_until(lambda: served_by(proxy, 20) == {"b", "c"}, timeout=20)

    admin = proxy.admin_url
    state = get_json(f"{admin}/namer_state/io.l5d.curator.json")
    assert state["kind"] == "io.l5d.curator"
    assert sorted(state["watches"]["web"]["addresses"]) == sorted(
        [f"127.0.0.1:{b.port}", f"127.0.0.1:{c.port}"]
    )

    # ZooKeeper is killed: the last good set keeps serving, the outage shows
    zk.kill()
    assert wait_until(
        lambda: get_json(f"{admin}/namer_state/io.l5d.curator.json")["watches"]["web"][
            "errorSince"
        ],
        timeout=20,
    )
    assert served_by(proxy, 20) == {"b", "c"}

    # ZooKeeper is back: changes made afterwards are followed
    zk.restart()
    # (kazoo may have tried while ZooKeeper was still starting: a handshake read then waits up
    # to the session timeout, 60 s here, before the next attempt)
    assert wait_until(lambda: client.connected, timeout=90)
    register_instance(client, BASE, "web", "127.0.0.1", a.port)
    assert wait_until(lambda: served_by(proxy, 30) == {"a", "b", "c"}, timeout=30)

    # a service nobody registered is no route
    r = http_request(proxy.port, headers={"Host": "nope"}, timeout=10)
    assert r.status == 502, r
