"""End to end: a real turnout process with one HTTP router over an ``io.l5d.fs`` namer, a
recording backend behind it and the ``io.l5d.influxdb`` telemeter; every line of
``/admin/metrics/influxdb`` goes through the strict line-protocol parser, and the counters,
gauges and histogram fields follow the traffic."""

from __future__ import annotations

import pytest
import yaml
from turnout.testing import free_port, http_request
from turnout_telemeter_influxdb.testing import Point, parse_lines

pytestmark = pytest.mark.integration

PLUGINS = {"TURNOUT_PLUGINS": "protocol-http,telemeter-influxdb"}


def scrape(proxy, host: str | None = None) -> list[Point]:
    host = host or f"127.0.0.1:{proxy.admin_port}"
    response = http_request(
        proxy.admin_port, "GET", "/admin/metrics/influxdb", {"Host": host}, timeout=10
    )
    assert response.status == 200, response.text
    assert response.header("content-type").startswith("text/plain")
    points = parse_lines(response.text)  # every line valid, or this raises
    assert points
    for p in points:
        assert p.timestamp is None  # Telegraf stamps what it pulls
        assert p.tags["host"] == host
        assert p.tag_order == sorted(p.tag_order)
        assert all(isinstance(v, float) for v in p.fields.values())
    return points


def find(points: list[Point], measurement: str, **tags: str) -> dict:
    matches = [
        p
        for p in points
        if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())
    ]
    assert len(matches) == 1, (measurement, tags, [(p.measurement, p.tags) for p in points])
    return matches[0].fields


@pytest.fixture
def proxy(turnout_process, recording_backend, disco_dir):
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    config = {
        "admin": {"ip": "127.0.0.1", "port": free_port()},
        "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root), "pollIntervalMs": 50}],
        "routers": [
            {
                "protocol": "http",
                "label": "edge",
                "dtab": "/svc => /#/io.l5d.fs;",
                "servers": [{"ip": "127.0.0.1", "port": free_port()}],
            }
        ],
        "telemetry": [{"kind": "io.l5d.influxdb"}],
    }
    return turnout_process(yaml.safe_dump(config, sort_keys=False), env=PLUGINS)


def send(proxy, n: int, host: str = "web") -> None:
    for _ in range(n):
        response = http_request(proxy.port, "GET", "/hello", {"Host": host}, timeout=10)
        assert response.status == (200 if host == "web" else 502), response.status


def test_lines_follow_the_traffic(proxy):
    server = {"rt": "edge", "server": f"127.0.0.1/{proxy.port}"}
    client = {"rt": "edge", "client": "#/io.l5d.fs/web"}
    service = {"rt": "edge", "service": "svc/web"}

    send(proxy, 5)
    points = scrape(proxy)
    s = find(points, "rt:server", **server)
    assert s["requests"] == 5
    assert s["success"] == 5
    assert s["request_latency_ms_count"] == 5
    for stat in ("avg", "min", "max", "p50", "p90", "p95", "p99", "p999", "p9999", "sum"):
        assert f"request_latency_ms_{stat}" in s, sorted(s)
    assert s["request_latency_ms_min"] <= s["request_latency_ms_p50"]
    assert s["request_latency_ms_p50"] <= s["request_latency_ms_max"]
    assert find(points, "rt:server:status", **server)["200"] == 5
    c = find(points, "rt:client", **client)
    assert c["requests"] == 5
    assert c["request_latency_ms_count"] == 5
    assert find(points, "rt:service", **service)["requests"] == 5
    [endpoint] = [p for p in points if p.measurement == "rt:client:endpoint"]
    assert endpoint.tags["client"] == "#/io.l5d.fs/web"
    assert endpoint.tags["endpoint"].startswith("127.0.0.1:")
    # a gauge: the process' resident memory, and the client's load balancer
    assert find(points, "process")["rss_bytes"] > 0
    lb = find(points, "rt:client:loadbalancer", **client)
    assert lb["size"] == 1.0

    send(proxy, 7)
    send(proxy, 2, host="nowhere")  # no such service: failures on the server
    points = scrape(proxy)
    s = find(points, "rt:server", **server)
    assert s["requests"] == 14
    assert s["failures"] == 2
    assert s["request_latency_ms_count"] == 14
    c = find(points, "rt:client", **client)
    assert c["requests"] == 12
    assert c["request_latency_ms_count"] == 12
    assert find(points, "rt:service", **service)["requests"] == 12


def test_a_host_header_needing_escapes(proxy):
    send(proxy, 1)
    points = scrape(proxy, host="telegraf,dc=eu")
    assert find(points, "rt:server", rt="edge")["requests"] == 1


def test_the_admin_index_lists_the_endpoint(proxy):
    response = http_request(
        proxy.admin_port, "GET", "/admin/index.txt", {"Host": "localhost"}, timeout=10
    )
    assert "/admin/metrics/influxdb" in response.text.split()
