"""Telemeter options that a YAML schema alone cannot check are refused with the place and the
fix, by the same loader ``turnout check`` uses (all first-party telemeters installed)."""

from __future__ import annotations

import pytest
from turnout.config.loader import load_text
from turnout.errors import ConfigError
from turnout.plugin_manager import load_plugins

ROUTER = "routers:\n- protocol: http\n  servers: [{port: 4140}]\n"


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


@pytest.mark.parametrize(
    ("telemeter", "expected"),
    [
        ("{kind: io.l5d.zipkin, path: api/v2/spans}", "telemetry[0].path: must start with /"),
        ("{kind: io.l5d.zipkin, maxQueuedSpans: 100000000}", "telemetry[0].maxQueuedSpans"),
        ("{kind: io.l5d.prometheus, buckets: [0.1, .inf]}", "expected a finite number"),
        ("{kind: io.l5d.prometheus, buckets: [1, 0.5]}", "strictly increasing"),
        ("{kind: io.l5d.prometheus, path: metrics}", "telemetry[0].path: must start with /"),
    ],
)
def test_bad_telemeter_options_are_refused(registry, telemeter, expected):
    with pytest.raises(ConfigError) as e:
        load_text(f"telemetry:\n- {telemeter}\n{ROUTER}", "t.yaml", registry=registry)
    text = str(e.value)
    assert expected in text and "t.yaml:2:" in text, text
