"""Fixtures: an OTLP collector double, a turnout process with an HTTP router and the
opentelemetry telemeter, recording backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, TurnoutProcess, free_port
from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_telemeter_opentelemetry.testing import OtlpCollector


@pytest.fixture
def otlp_collector() -> Iterator[OtlpCollector]:
    c = OtlpCollector().start()
    yield c
    c.stop()


@pytest.fixture
def otel_proxy(turnout_process: Any, disco_dir: DiscoDir) -> Callable[..., TurnoutProcess]:
    """``otel_proxy(endpoint, **opentelemetry options)``: turnout with one HTTP router over
    ``disco_dir`` (fs namer) and an ``io.l5d.opentelemetry`` telemeter (sampleRate 1, 50 ms
    flush)."""

    def start(endpoint: str, router: dict[str, Any] | None = None, **options: Any) -> Any:
        telemeter = {
            "kind": "io.l5d.opentelemetry",
            "endpoint": endpoint,
            "sampleRate": 1.0,
            "flushIntervalMs": 50,
            **options,
        }
        config = {
            "admin": {"port": free_port()},
            "telemetry": [telemeter],
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root), "pollIntervalMs": 50}],
            "routers": [
                {
                    "protocol": "http",
                    "label": "edge",
                    "dtab": "/svc => /#/io.l5d.fs;",
                    **(router or {}),
                    "servers": [{"port": free_port()}],
                }
            ],
        }
        return turnout_process(yaml.safe_dump(config, sort_keys=False))

    return start
