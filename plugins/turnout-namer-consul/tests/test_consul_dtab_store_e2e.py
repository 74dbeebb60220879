"""End to end: ``turnout namerd`` with the io.l5d.consul dtab store against the Consul API
double, and a linker binding through it with io.l5d.namerd.http: a PUT through namerd's API
changes where real requests go; a write straight into Consul's KV does too; a stale version
is refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from turnout.testing import (
    DiscoDir,
    free_port,
    http_request,
    wait_until,
)
from turnout_namer_consul.testing import ConsulDouble

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def linker_yaml(api: int) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "routers": [
                {
                    "protocol": "http",
                    "interpreter": {
                        "kind": "io.l5d.namerd.http",
                        "experimental": True,
                        "dst": f"/$/inet/127.0.0.1/{api}",
                        "namespace": "default",
                        "retry": {"baseSeconds": 1, "maxSeconds": 2},
                    },
                    "servers": [{"port": free_port()}],
                }
            ],
        }
    )


def served_by(proxy: Any) -> str:
    r = http_request(proxy.port, "GET", "/", {"Host": "web"}, timeout=15)
    return r.text.split(" ")[0] if r.status == 200 else f"status {r.status}"


def api(port: int, method: str, target: str, body: bytes | None = None, **headers: str) -> Any:
    all_headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/dtab"}
    all_headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return http_request(port, method, target, all_headers, body, timeout=10)


def test_a_put_through_namerd_changes_the_routing(
    namerd_process: Any,
    turnout_process: Any,
    recording_backend: Any,
    disco_dir: DiscoDir,
) -> None:
    a, b, c = (recording_backend(name=n) for n in "abc")
    for name, backend in (("a", a), ("b", b), ("c", c)):
        disco_dir.write(name, backend)
    double = ConsulDouble(acl_token="namerd-token").start()
    try:
        double.call(lambda s: s.state.kv_put("namerd/dtabs/default", b"/svc/web=>/#/io.l5d.fs/a"))
        port = free_port()
        namerd_process(
            yaml.safe_dump(
                {
                    "admin": {"port": free_port()},
                    "storage": {
                        "kind": "io.l5d.consul",
                        "host": "127.0.0.1",
                        "port": double.port,
                        "token": "namerd-token",
                    },
                    "namers": [
                        {"kind": "io.l5d.fs", "rootDir": str(disco_dir.root), "pollIntervalMs": 50}
                    ],
                    "interfaces": [{"kind": "io.l5d.httpController", "port": port}],
                }
            ),
            port,
        )
        proxy = turnout_process(linker_yaml(port))
        assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()

        current = api(port, "GET", "/api/1/dtabs/default")
        assert current.status == 200, current.text
        etag = current.header("ETag")
        entry = double.call(lambda s: s.state.kv["namerd/dtabs/default"])
        assert etag == base64.b64encode(str(entry["ModifyIndex"]).encode()).decode()

        r = api(port, "PUT", "/api/1/dtabs/default", b"/svc/web=>/#/io.l5d.fs/b", If_Match=etag)
        assert r.status == 204, r.text
        assert wait_until(lambda: served_by(proxy) == "b", timeout=30), proxy.log()
        assert double.call(lambda s: s.state.kv["namerd/dtabs/default"]["Value"]) == (
            b"/svc/web=>/#/io.l5d.fs/b"
        )

        # the version namerd gave out is stale now: 412, nothing changes
        r = api(port, "PUT", "/api/1/dtabs/default", b"/svc/web=>/#/io.l5d.fs/a", If_Match=etag)
        assert r.status == 412, r.text
        assert {served_by(proxy) for _ in range(3)} == {"b"}

        # a write straight into Consul (another namerd, or consul kv put) reaches the linker
        double.call(lambda s: s.state.kv_put("namerd/dtabs/default", b"/svc/web=>/#/io.l5d.fs/c"))
        assert wait_until(lambda: served_by(proxy) == "c", timeout=30), proxy.log()
        assert all(call["token"] == "namerd-token" for call in double.requests("/v1/kv/"))
    finally:
        double.close()
