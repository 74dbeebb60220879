"""Configuration of ``io.l5d.prometheus``: registration, Linkerd's keys and defaults,
turnout's ``naming`` and ``buckets``, errors."""

from __future__ import annotations

import pytest
from turnout.config import TelemeterConfig
from turnout.metrics import MetricsTree
from turnout.testing.config import plugin_registry, read_entry
from turnout_telemeter_prometheus import plugin
from turnout_telemeter_prometheus.config import DEFAULT_BUCKETS
from turnout_telemeter_prometheus.naming import LinkerdNaming, PrometheusNaming
from turnout_telemeter_prometheus.telemeter import PrometheusConfig, PrometheusTelemeter


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read(registry, text: str):
    return read_entry(registry, TelemeterConfig, text, "telemeter.yaml")


class Ctx:
    def __init__(self) -> None:
        self.metrics = MetricsTree()


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("telemeter", "io.l5d.prometheus")
    assert registration.cls is PrometheusConfig
    assert registration.provider.plugin == "turnout_telemeter_prometheus.plugin"


def test_linkerd_defaults(registry):
    config, problems = read(registry, "kind: io.l5d.prometheus\n")
    assert problems == []
    assert config.path == "/admin/metrics/prometheus"
    assert config.prefix == ""
    assert config.naming == "prometheus"
    assert config.buckets == list(DEFAULT_BUCKETS)
    telemeter = config.new_telemeter(Ctx())
    assert isinstance(telemeter, PrometheusTelemeter)
    assert isinstance(telemeter.collector.naming, PrometheusNaming)
    [route] = telemeter.admin_routes()
    assert (route.method, route.path, route.category) == (
        "GET",
        "/admin/metrics/prometheus",
        "diagnostics",
    )


def test_linkerds_example_with_turnout_options(registry):
    config, problems = read(
        registry,
        """
        kind: io.l5d.prometheus
        path: /metrics
        prefix: linkerd_
        naming: linkerd
        buckets: [0.001, 0.01, 1]
        """,
    )
    assert problems == []
    telemeter = config.new_telemeter(Ctx())
    assert isinstance(telemeter.collector.naming, LinkerdNaming)
    assert telemeter.collector.naming.prefix == "linkerd_"
    assert telemeter.collector.buckets == (0.001, 0.01, 1.0)
    assert telemeter.admin_routes()[0].path == "/metrics"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("path: metrics", "path"),
        ("naming: statsd", "naming"),
        ("buckets: [1, 0.5]", "buckets"),
        ("buckets: [0, 1]", "buckets"),
        ("buckets: []", "buckets"),
        ("sampleRate: 0.5", "sampleRate"),
    ],
)
def test_errors(registry, text, where):
    config, problems = read(registry, f"kind: io.l5d.prometheus\n{text}\n")
    assert config is None or problems
    assert any(where in str(p) for p in problems), problems
