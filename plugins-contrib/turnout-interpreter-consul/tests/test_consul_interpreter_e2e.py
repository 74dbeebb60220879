"""End to end: real turnout processes whose HTTP router reads its dtab from the Consul API
double's KV store (``io.l5d.consul.interpreter``), with the ``io.l5d.consul`` namer beside
it; routing follows what is written into KV, through a bad dtab and an outage."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,namer-consul,interpreter-consul"}
KEY = "namerd/dtabs/internal"
TOKEN = "interpreter-token"
STATE = "/edge/interpreter_state/io.l5d.consul.interpreter.json"


def put(double, value: str, key: str = KEY) -> None:
    """Write ``key`` straight into the double's state (works while it is stopped)."""
    double.call(lambda server: server.state.kv_put(key, value.encode()))


def config(double, *, datacenter: str = "dc1", token: str | None = TOKEN) -> str:
    interpreter = {
        "kind": "io.l5d.consul.interpreter",
        "host": "127.0.0.1",
        "port": double.port,
        "namespace": "internal",
        "datacenter": datacenter,
        "backoff": {"kind": "constant", "ms": 100},
    }
    namer = {"kind": "io.l5d.consul", "host": "127.0.0.1", "port": double.port}
    if token is not None:
        interpreter["token"] = token
        namer["token"] = token
    return yaml.safe_dump(
        {
            "admin": {"ip": "127.0.0.1", "port": free_port()},
            "namers": [namer],
            "routers": [
                {
                    "protocol": "http",
                    "label": "edge",
                    "servers": [{"ip": "127.0.0.1", "port": free_port()}],
                    "interpreter": interpreter,
                }
            ],
        },
        sort_keys=False,
    )


def answer(proxy) -> str:
    try:
        r = http_request(proxy.port, "GET", "/x", {"Host": "web"}, timeout=10)
    except OSError as e:
        return f"error {e}"
    return r.text if r.status == 200 else f"status {r.status}"


def routes_to(proxy, name: str) -> bool:
    return answer(proxy) == f"{name} /x\n"


def state(proxy) -> dict:
    with urllib.request.urlopen(proxy.admin_url + STATE, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        return json.loads(response.read())


def test_routing_follows_the_dtab_in_consul(consul_double, recording_backend, turnout_process):
    a, b, c = (recording_backend(name=n) for n in ("a", "b", "c"))
    double = consul_double(acl_token=TOKEN)
    double.register("c", c.port, address="127.0.0.1")
    put(double, f"/svc/web => /$/inet/127.0.0.1/{a.port}")
    proxy = turnout_process(config(double), env=PLUGINS)

    assert wait_until(lambda: routes_to(proxy, "a"), timeout=20), answer(proxy)
    s = state(proxy)["internal"]
    assert s["state"]["running"] is True
    assert s["state"]["value"]["dtab"] == f"/svc/web=>/$/inet/127.0.0.1/{a.port}"
    assert s["poll"]["request"].startswith(f"GET /v1/kv/{KEY}?raw=true")
    assert s["poll"]["response"]["value"] == f"/svc/web => /$/inet/127.0.0.1/{a.port}"
    # the dashboard's delegator explains with the dtab from Consul
    query = "/delegator.json?namespace=edge&path=/svc/web&dtab="
    with urllib.request.urlopen(proxy.admin_url + query, timeout=10) as response:
        explained = response.read().decode()
    assert f"/$/inet/127.0.0.1/{a.port}" in explained, explained

    # changed: an address
    put(double, f"/svc/web => /$/inet/127.0.0.1/{b.port}")
    assert wait_until(lambda: routes_to(proxy, "b"), timeout=20), answer(proxy)
    # changed again: through the linker's own io.l5d.consul namer
    put(double, "/svc => /#/io.l5d.consul/dc1; /svc/web => /svc/c")
    assert wait_until(lambda: routes_to(proxy, "c"), timeout=20), answer(proxy)

    # a dtab that does not parse: the old routing stays, the state says why
    put(double, "/svc/web => => nonsense")
    assert wait_until(lambda: state(proxy)["internal"]["parseErrors"] >= 1, timeout=20)
    s = state(proxy)["internal"]
    assert "does not parse" in s["state"]["value"]
    assert s["dtab"] == "/svc=>/#/io.l5d.consul/dc1;/svc/web=>/svc/c"
    assert all(routes_to(proxy, "c") for _ in range(5))

    # the ACL token and the datacenter went with every KV query
    kv = double.requests("/v1/kv/")
    assert kv and all(r["token"] == TOKEN for r in kv)
    assert all(r["query"].get("dc") == ["dc1"] for r in kv)
    assert all(r["status"] in (200, None) for r in kv)
    assert any("index" in r["query"] for r in kv)  # blocking queries

    # Consul stops: routing continues with what it had
    double.stop()
    assert wait_until(lambda: state(proxy)["internal"]["errors"] >= 1, timeout=20)
    assert all(routes_to(proxy, "c") for _ in range(5))
    # a change written while it was down applies once it is back
    put(double, f"/svc/web => /$/inet/127.0.0.1/{a.port}")
    assert all(routes_to(proxy, "c") for _ in range(3))
    double.start()
    assert wait_until(lambda: routes_to(proxy, "a"), timeout=30), answer(proxy)
    s = state(proxy)["internal"]
    assert s["poll"]["error"] is None
    assert s["dtab"] == f"/svc/web=>/$/inet/127.0.0.1/{a.port}"

    # metrics
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=10) as r:
        metrics = json.loads(r.read())
    scope = "rt/edge/interpreter/io.l5d.consul.interpreter"
    assert metrics[f"{scope}/updates"] >= 4
    assert metrics[f"{scope}/parse_errors"] >= 1
    assert metrics[f"{scope}/errors"] >= 1


def test_a_missing_key_is_an_empty_dtab(consul_double, recording_backend, turnout_process):
    a = recording_backend(name="a")
    double = consul_double()
    proxy = turnout_process(config(double, token=None), env=PLUGINS)
    assert wait_until(lambda: state(proxy)["internal"]["state"]["value"] == "", timeout=20)
    assert state(proxy)["internal"]["dtab"] == ""
    assert answer(proxy) == "status 502"  # nothing routes /svc/web
    put(double, f"/svc/web => /$/inet/127.0.0.1/{a.port}")
    assert wait_until(lambda: routes_to(proxy, "a"), timeout=20), answer(proxy)


def test_a_wrong_token_and_datacenter_are_errors_shown_in_state(
    consul_double, recording_backend, turnout_process
):
    double = consul_double(acl_token=TOKEN)
    put(double, "/svc/web => /$/inet/127.0.0.1/1")
    proxy = turnout_process(config(double, token="wrong"), env=PLUGINS)
    assert wait_until(lambda: state(proxy)["internal"]["errors"] >= 1, timeout=20)
    s = state(proxy)["internal"]
    assert "403" in s["poll"]["error"] and "ACL not found" in s["poll"]["error"]
    assert s["dtab"] is None
    assert answer(proxy).startswith("status 5")
    assert double.requests("/v1/kv/")[0]["token"] == "wrong"

    other = turnout_process(config(double, datacenter="dc9"), env=PLUGINS)
    assert wait_until(lambda: "No path to datacenter" in str(state(other)), timeout=20)
    assert any(r["query"].get("dc") == ["dc9"] for r in double.requests("/v1/kv/"))
