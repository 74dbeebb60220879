"""End to end: a real turnout process routes HTTP requests to real backends that are tasks of
an app in the Marathon API double, and follows the tasks as they change."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until

pytestmark = pytest.mark.integration

#: only the plugins these tests use (other plugins installed in the environment do not matter)
PLUGINS = {"TURNOUT_PLUGINS": "turnout-protocol-http,turnout-namer-marathon"}


def config(marathon_port: int, **namer: Any) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "namers": [
                {"kind": "io.l5d.marathon", "host": "127.0.0.1", "port": marathon_port}
                | {"ttlMs": 200, **namer}
            ],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.marathon;",
                    "servers": [{"port": free_port()}],
                }
            ],
        },
        sort_keys=False,
    )


def get(proxy, host: str = "web", target: str = "/") -> Any:
    return http_request(proxy.port, "GET", target, headers={"Host": host}, timeout=10)


def admin_json(proxy, path: str) -> Any:
    with urllib.request.urlopen(proxy.admin_url + path, timeout=10) as r:
        return json.loads(r.read())


def served_by(proxy, n: int = 10) -> set[str]:
    """Which backends answered ``n`` requests for ``web`` (their names; "502" for errors)."""
    out = set()
    for _ in range(n):
        r = get(proxy)
        out.add(r.text.split()[0] if r.status == 200 else str(r.status))
    return out


def test_requests_follow_marathon_tasks(turnout_process, recording_backend, marathon_double):
    a = recording_backend(name="a")
    b = recording_backend(name="b")
    double = marathon_double()
    double.add_app("/web")
    double.set_tasks("/web", [("127.0.0.1", a.port)])
    proxy = turnout_process(config(double.port), env=PLUGINS)

    r = get(proxy, target="/hello")
    assert r.status == 200 and r.text == "a /hello\n"
    assert a.request_count == 1 and a.requests[0].header("host") == "web"

    # the task moves: traffic follows within a few poll intervals
    double.set_tasks("/web", [("127.0.0.1", b.port)])
    assert wait_until(lambda: served_by(proxy, 5) == {"b"}, timeout=20)
    double.add_task("/web", "127.0.0.1", a.port)
    assert wait_until(lambda: served_by(proxy, 20) == {"a", "b"}, timeout=20)

    state = admin_json(proxy, "/namer_state/io.l5d.marathon.json")
    assert state["kind"] == "io.l5d.marathon"
    assert sorted(state["watches"]["/web"]["addresses"]) == sorted(
        [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
    )
    assert state["apps"]["appIds"] == ["/web"]

    # Marathon goes away: the last good set keeps serving, and the outage is visible
    double.stop()
    assert wait_until(
        lambda: (
            admin_json(proxy, "/namer_state/io.l5d.marathon.json")["watches"]["/web"][
                "staleSeconds"
            ]
            > 0.5
        ),
        timeout=20,
    )
    assert served_by(proxy, 10) == {"a", "b"}
    state = admin_json(proxy, "/namer_state/io.l5d.marathon.json")
    assert "Cannot connect" in state["watches"]["/web"]["lastError"]
    assert state["watches"]["/web"]["state"] == "bound"
    metrics = admin_json(proxy, "/admin/metrics.json")
    assert metrics["namer/#/io.l5d.marathon/stale_seconds"] > 0.5
    assert metrics["namer/#/io.l5d.marathon/errors"] >= 1

    # it comes back with changes made meanwhile
    double.set_tasks("/web", [("127.0.0.1", a.port)])
    double.start()

    def recovered() -> bool:
        state = admin_json(proxy, "/namer_state/io.l5d.marathon.json")
        return state["watches"]["/web"]["errorSince"] is None and state["watches"]["/web"][
            "addresses"
        ] == [f"127.0.0.1:{a.port}"]

    assert wait_until(recovered, timeout=30)
    assert wait_until(lambda: served_by(proxy, 20) == {"a"}, timeout=20)

    # an app that does not exist is no route
    r = get(proxy, host="nope")
    assert r.status == 502 and "Unable to route request!" in r.text


def test_marathon_down_at_start_fails_fast_then_recovers(
    turnout_process, recording_backend, marathon_double
):
    backend = recording_backend(name="a")
    double = marathon_double(start=False)
    double.set_tasks("/web", [("127.0.0.1", backend.port)])
    proxy = turnout_process(config(double.port), env=PLUGINS)

    started = time.monotonic()
    r = get(proxy)
    elapsed = time.monotonic() - started
    assert r.status == 502, r.text
    assert elapsed < 5  # failed at once with the namer's error, no binding timeout wait
    assert "io.l5d.marathon" in r.text and "Cannot connect" in r.text
    assert "Cannot connect" in unquote(r.header("l5d-err") or "")
    assert backend.request_count == 0

    double.start()
    assert wait_until(lambda: get(proxy).status == 200, timeout=30)
    assert backend.request_count >= 1
