"""End to end: a real turnout process (HTTP router, ``io.l5d.fs`` namer, nginx behind it)
with ``io.l5d.statsd`` pushing every 100 ms to a UDP socket of the test."""

from __future__ import annotations

import signal

import pytest
import yaml
from turnout.testing import free_port, http_request

pytestmark = pytest.mark.integration


def test_traffic_shows_in_the_pushes(turnout_process, nginx_backend, disco_dir, statsd):
    backend = nginx_backend("web")
    disco_dir.write("web", backend)
    port = free_port()
    config = {
        "admin": {"port": free_port()},
        "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root), "pollIntervalMs": 50}],
        "routers": [
            {
                "protocol": "http",
                "dtab": "/svc => /#/io.l5d.fs;",
                "servers": [{"ip": "127.0.0.1", "port": port}],
            }
        ],
        "telemetry": [
            {
                "kind": "io.l5d.statsd",
                "experimental": True,
                "prefix": "edge",
                "port": statsd.port,
                "gaugeIntervalMs": 100,
            }
        ],
    }
    proxy = turnout_process(yaml.safe_dump(config, sort_keys=False))
    for _ in range(6):
        assert http_request(port, "GET", "/", {"Host": "web"}).status == 200

    server = f"edge.rt.http.server.127_0_0_1.{port}"
    client = "edge.rt.http.client._.io_l5d_fs.web"
    assert statsd.wait_for(lambda: statsd.total(f"{server}.requests") == 6)
    assert statsd.wait_for(lambda: statsd.total(f"{client}.requests") == 6)
    assert statsd.wait_for(lambda: statsd.total(f"{server}.request_latency_ms.count") == 6)
    assert statsd.total(f"{server}.status.200") == 6
    assert statsd.last(f"{server}.request_latency_ms.p99") > 0
    assert statsd.last(f"{client}.loadbalancer.size") == 1
    assert statsd.last("edge.process.rss_bytes") > 0

    for _ in range(4):
        http_request(port, "GET", "/", {"Host": "web"})
    assert statsd.wait_for(lambda: statsd.total(f"{server}.requests") == 10)
    assert all(len(d) <= 1432 for d in statsd.datagrams)

    # the listener goes away: turnout keeps serving and pushing into the void
    statsd.close()
    for _ in range(3):
        assert http_request(port, "GET", "/", {"Host": "web"}).status == 200
    assert proxy.running()
    assert proxy.stop(signal.SIGTERM) == 0
