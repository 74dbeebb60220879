"""The ``io.l5d.consul`` announcer against the Consul API double: a turnout registers its
server while it runs (another turnout's ``io.l5d.consul`` namer routes a real request through
it) and deregisters it as soon as draining starts."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from typing import Any

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,namer-consul"}


def announcing_config(consul_port: int, backend: int, slow: int, port: int, **extra: Any) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "routers": [
                {
                    "protocol": "http",
                    "dtab": f"/svc/web => /$/inet/127.0.0.1/{backend};"
                    f"/svc/slow => /$/inet/127.0.0.1/{slow};",
                    "announcers": [
                        {
                            "kind": "io.l5d.consul",
                            "host": "127.0.0.1",
                            "port": consul_port,
                            "tags": ["turnout"],
                            **extra,
                        }
                    ],
                    "servers": [{"port": port, "announce": ["/#/io.l5d.consul/.local/web"]}],
                }
            ],
        },
        sort_keys=False,
    )


def discovering_config(consul_port: int) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "namers": [{"kind": "io.l5d.consul", "host": "127.0.0.1", "port": consul_port}],
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


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_registered_while_running_deregistered_when_draining_starts(
    consul_double, recording_backend, turnout_process
):
    double = consul_double()
    backend = recording_backend(name="web")
    slow = recording_backend(name="slow", delay=3.0)
    port = free_port()
    announced = turnout_process(
        announcing_config(double.port, backend.port, slow.port, port, ttlMs=3000), env=PLUGINS
    )
    url = f"http://127.0.0.1:{double.port}"
    assert wait_until(lambda: get_json(f"{url}/v1/catalog/service/web"), timeout=10)
    (instance,) = get_json(f"{url}/v1/catalog/service/web")
    assert instance["ServiceID"] == f"web-127.0.0.1-{port}"
    assert (instance["ServiceAddress"], instance["ServicePort"]) == ("127.0.0.1", port)
    assert instance["ServiceTags"] == ["turnout"]
    (entry,) = get_json(f"{url}/v1/health/service/web")
    assert [c["Status"] for c in entry["Checks"] if c["ServiceID"]] == ["passing"]
    # the TTL check is passed every ttlMs/3
    assert wait_until(
        lambda: any(
            r["path"] == f"/v1/agent/check/pass/service:web-127.0.0.1-{port}"
            for r in double.requests("/v1/agent/check/")
        ),
        timeout=5,
    )

    proxy = turnout_process(discovering_config(double.port), env=PLUGINS)
    response = http_request(proxy.port, headers={"Host": "web"}, timeout=10)
    assert response.status == 200, response
    assert (backend.requests[-1].header("via") or "").count("turnout") == 2

    in_flight: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: in_flight.update(
            r=http_request(announced.port, headers={"Host": "slow"}, timeout=20)
        )
    )
    thread.start()
    assert wait_until(lambda: slow.requests, timeout=5)
    signalled = time.monotonic()
    announced.signal(signal.SIGTERM)
    assert wait_until(
        lambda: get_json(f"{url}/v1/catalog/service/web") == [], timeout=5, interval=0.01
    )
    deregistered = time.monotonic() - signalled
    assert announced.running(), "deregistered only at exit, not when draining started"
    thread.join(20)
    assert in_flight["r"].status == 200
    assert announced.wait(15) == 0
    print(f"deregistered {deregistered * 1000:.0f} ms after SIGTERM")
    assert deregistered < 1.0
    paths = [r["path"] for r in double.requests("/v1/agent/service/")]
    assert paths[0] == "/v1/agent/service/register"
    assert paths[-1] == f"/v1/agent/service/deregister/web-127.0.0.1-{port}"
