"""End to end: a real turnout process with an HTTP router over an ``io.l5d.fs`` namer, nginx
behind it, and two ``io.l5d.prometheus`` telemeters (Prometheus naming on the default path,
Linkerd naming on another); traffic through the router shows in both scrapes."""

from __future__ import annotations

import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from turnout.testing import free_port, http_request

pytestmark = pytest.mark.integration


def scrape(admin_url: str, path: str) -> tuple[str, dict[tuple[str, frozenset], float]]:
    with urllib.request.urlopen(admin_url + path, timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return content_type, samples


def get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def proxy(turnout_process, nginx_backend, disco_dir):
    backend = nginx_backend("web")
    disco_dir.write("web", backend)
    port = free_port()
    config = {
        "admin": {"port": free_port()},
        "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root), "pollIntervalMs": 50}],
        "routers": [
            {
                "protocol": "http",
                "label": "edge",
                "dtab": "/svc => /#/io.l5d.fs;",
                "servers": [{"ip": "127.0.0.1", "port": port}],
            }
        ],
        "telemetry": [
            {"kind": "io.l5d.prometheus"},
            {"kind": "io.l5d.prometheus", "path": "/admin/metrics/linkerd", "naming": "linkerd"},
        ],
    }
    return turnout_process(yaml.safe_dump(config, sort_keys=False))


def send(proxy, n: int, host: str = "web") -> None:
    for _ in range(n):
        response = http_request(proxy.port, "GET", "/hello", {"Host": host})
        assert response.status == (200 if host == "web" else 400) or response.status >= 400


def test_scrapes_follow_the_traffic(proxy):
    server = {"router": "edge", "server": f"127.0.0.1:{proxy.port}"}
    client = {"router": "edge", "client": "/#/io.l5d.fs/web"}
    service = {"router": "edge", "service": "/svc/web"}

    send(proxy, 5)
    content_type, s = scrape(proxy.admin_url, "/admin/metrics/prometheus")
    assert content_type.startswith("text/plain")
    assert get(s, "turnout_server_requests_total", **server) == 5
    assert get(s, "turnout_server_status_total", **server, status="200") == 5
    assert get(s, "turnout_client_requests_total", **client) == 5
    assert get(s, "turnout_service_requests_total", **service) == 5
    assert get(s, "turnout_server_request_latency_seconds_count", **server) == 5
    assert get(s, "turnout_server_request_latency_seconds_bucket", **server, le="+Inf") == 5
    assert get(s, "turnout_server_request_latency_seconds_sum", **server) > 0
    assert get(s, "turnout_process_rss_bytes") > 0

    send(proxy, 7)
    send(proxy, 2, host="nowhere")  # no such service: failures
    _, s = scrape(proxy.admin_url, "/admin/metrics/prometheus")
    assert get(s, "turnout_server_requests_total", **server) == 14
    assert get(s, "turnout_client_requests_total", **client) == 12
    assert get(s, "turnout_server_request_latency_seconds_count", **server) == 14
    assert get(s, "turnout_server_failures_total", **server) == 2

    _, s = scrape(proxy.admin_url, "/admin/metrics/linkerd")
    assert get(s, "rt:server:requests", rt="edge", server=f"127.0.0.1/{proxy.port}") == 14
    assert get(s, "rt:client:requests", rt="edge", client="#/io.l5d.fs/web") == 12
    assert get(s, "rt:service:requests", rt="edge", service="svc/web") == 12
    latency = (
        "rt:client:request_latency_ms_count",
        frozenset({("rt", "edge"), ("client", "#/io.l5d.fs/web")}),
    )
    assert s[latency] == 12


def test_prometheus_accept_header_gets_the_text_format(proxy):
    send(proxy, 1)
    request = urllib.request.Request(
        proxy.admin_url + "/admin/metrics/linkerd",
        headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert b"rt:server:requests{" in response.read()


def test_the_admin_index_lists_the_endpoints(proxy):
    with urllib.request.urlopen(proxy.admin_url + "/admin/index.txt", timeout=5) as response:
        paths = response.read().decode().split()
    assert "/admin/metrics/prometheus" in paths
    assert "/admin/metrics/linkerd" in paths
