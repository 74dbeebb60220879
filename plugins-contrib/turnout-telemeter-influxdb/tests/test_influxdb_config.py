"""Registration and configuration of ``io.l5d.influxdb``: the entry point, Linkerd's (empty)
option set, and located errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from turnout.api import MetricsTree, TelemeterConfig
from turnout.testing.config import plugin_registry, read_entry
from turnout_telemeter_influxdb import plugin
from turnout_telemeter_influxdb.config import InfluxDbConfig
from turnout_telemeter_influxdb.telemeter import InfluxDbTelemeter


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


class Ctx:
    def __init__(self) -> None:
        self.metrics = MetricsTree()


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("telemeter", "io.l5d.influxdb")
    assert registration.cls is InfluxDbConfig
    assert registration.provider.plugin == "turnout_telemeter_influxdb.plugin"


def test_turnout_plugins_lists_the_kind_with_its_distribution():
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "io.l5d.influxdb" in text
    data = json.loads(text)
    found = json.dumps(data)
    assert "turnout-telemeter-influxdb" in found


def test_linkerds_config_builds_the_telemeter(registry):
    config, problems = read_entry(registry, TelemeterConfig, "kind: io.l5d.influxdb\n")
    assert problems == []
    telemeter = config.new_telemeter(Ctx())
    assert isinstance(telemeter, InfluxDbTelemeter)
    assert telemeter.tracer() is None
    [route] = telemeter.admin_routes()
    assert (route.method, route.path, route.category) == (
        "GET",
        "/admin/metrics/influxdb",
        "diagnostics",
    )


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("path: /metrics", "telemeter.yaml:2:1", "path"),
        ("prefix: linkerd_", "telemeter.yaml:2:1", "prefix"),
        ("experimental: maybe", "telemeter.yaml:2:15", "experimental"),
    ],
)
def test_errors_are_located(registry, text, where, hint):
    config, problems = read_entry(
        registry, TelemeterConfig, f"kind: io.l5d.influxdb\n{text}\n", "telemeter.yaml"
    )
    assert config is None
    assert problems, "expected a problem"
    shown = "\n".join(str(p) for p in problems)
    assert where in shown and hint in shown, shown
