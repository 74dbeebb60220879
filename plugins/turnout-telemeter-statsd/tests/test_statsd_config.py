"""Configuration of ``io.l5d.statsd``: registration, the experimental gate, Linkerd's keys
and defaults."""

from __future__ import annotations

import pytest
from turnout.config import TelemeterConfig
from turnout.metrics import MetricsTree
from turnout.testing.config import plugin_registry, read_entry
from turnout_telemeter_statsd import plugin
from turnout_telemeter_statsd.config import StatsdConfig
from turnout_telemeter_statsd.telemeter import StatsdTelemeter


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read(registry, text: str):
    return read_entry(registry, TelemeterConfig, text, "telemeter.yaml")


class Ctx:
    def __init__(self) -> None:
        self.metrics = MetricsTree()


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("telemeter", "io.l5d.statsd")
    assert registration.cls is StatsdConfig
    assert registration.provider.plugin == "turnout_telemeter_statsd.plugin"


def test_it_is_experimental(registry):
    _, problems = read(registry, "kind: io.l5d.statsd\n")
    assert any("experimental" in str(p) for p in problems), problems


def test_linkerd_defaults(registry):
    config, problems = read(registry, "kind: io.l5d.statsd\nexperimental: true\n")
    assert problems == []
    assert (config.prefix, config.hostname, config.port) == ("linkerd", "127.0.0.1", 8125)
    assert config.gauge_interval_ms == 10000
    assert config.sample_rate == 0.01
    telemeter = config.new_telemeter(Ctx())
    assert isinstance(telemeter, StatsdTelemeter)
    assert (telemeter.prefix, telemeter.host, telemeter.port) == ("linkerd", "127.0.0.1", 8125)
    assert telemeter.interval == 10.0
    assert telemeter.admin_routes() == []
    assert telemeter.tracer() is None


def test_linkerds_example(registry):
    config, problems = read(
        registry,
        """
        kind: io.l5d.statsd
        experimental: true
        prefix: linkerd
        hostname: statsd.example.org
        port: 8125
        gaugeIntervalMs: 10000
        sampleRate: 0.01
        """,
    )
    assert problems == []
    assert config.hostname == "statsd.example.org"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("port: 0", "port"),
        ("sampleRate: 2", "sampleRate"),
        ("gaugeIntervalMs: 0", "gaugeIntervalMs"),
        ('hostname: ""', "hostname"),
        ("host: x", "host"),
    ],
)
def test_errors(registry, text, where):
    _, problems = read(registry, f"kind: io.l5d.statsd\nexperimental: true\n{text}\n")
    assert any(where in str(p) for p in problems), problems
