"""Fixtures: a Zipkin collector double, a turnout process with an HTTP router and the zipkin
telemeter, recording backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, TurnoutProcess, free_port
from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_telemeter_zipkin.testing import ZipkinCollector


@pytest.fixture
def collector() -> Iterator[ZipkinCollector]:
    c = ZipkinCollector().start()
    yield c
    c.stop()


@pytest.fixture
def traced_proxy(turnout_process: Any, disco_dir: DiscoDir) -> Callable[..., TurnoutProcess]:
    """``traced_proxy(collector_port, **zipkin options)``: turnout with one HTTP router over
    ``disco_dir`` (fs namer) and an ``io.l5d.zipkin`` telemeter (sampleRate 1, 50 ms flush)."""

    def start(port: int, router: dict[str, Any] | None = None, **options: Any) -> TurnoutProcess:
        telemeter = {
            "kind": "io.l5d.zipkin",
            "host": "127.0.0.1",
            "port": port,
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
        proc: TurnoutProcess = turnout_process(yaml.safe_dump(config, sort_keys=False))
        return proc

    return start
