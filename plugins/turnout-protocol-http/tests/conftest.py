"""Fixtures of the HTTP router's end-to-end tests: real turnout processes started from YAML
(``http_proxy``), recording and nginx backends, an ``io.l5d.fs`` directory (``disco_dir``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, TurnoutProcess, free_port
from turnout.testing.pytest_plugin import *  # noqa: F403

#: modules loaded into turnout by ``test_namers=True`` (see helpers/turnout_http_test_namers.py)
HELPERS = Path(__file__).parent / "helpers"

ProxyFactory = Callable[..., TurnoutProcess]


def http_config(
    *,
    disco: DiscoDir | None,
    dtab: str = "/svc => /#/io.l5d.fs;",
    router: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    namers: list[dict[str, Any]] | None = None,
    admin: dict[str, Any] | None = None,
    port: int | None = None,
    telemetry: list[dict[str, Any]] | None = None,
) -> str:
    """YAML of one ``protocol: http`` router on a free port, an admin on a free port and an
    ``io.l5d.fs`` namer over ``disco`` (polling every 50 ms) unless ``namers`` is given."""
    if namers is None:
        namers = []
        if disco is not None:
            namers.append({"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50})
    config: dict[str, Any] = {
        "admin": {"port": free_port(), **(admin or {})},
        "namers": namers,
        "routers": [
            {
                "protocol": "http",
                "dtab": dtab,
                **(router or {}),
                "servers": [{"port": port or free_port(), **(server or {})}],
            }
        ],
    }
    if telemetry:
        config["telemetry"] = telemetry
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture
def http_proxy(turnout_process: Any, disco_dir: DiscoDir) -> ProxyFactory:
    """``http_proxy(dtab=..., router={...}, server={...}, namers=[...], admin={...},
    test_namers=False, env={...})``: a started turnout with one HTTP router (see
    :func:`http_config`); ``.port`` is the router's port, ``.admin_url`` the admin's."""

    def start(
        *, test_namers: bool = False, env: dict[str, str] | None = None, **kw: Any
    ) -> TurnoutProcess:
        environment = dict(env or {})
        if test_namers:
            path = os.environ.get("PYTHONPATH")
            environment["PYTHONPATH"] = str(HELPERS) + (os.pathsep + path if path else "")
            environment["TURNOUT_PLUGIN_MODULES"] = "turnout_http_test_namers"
        proc: TurnoutProcess = turnout_process(http_config(disco=disco_dir, **kw), env=environment)
        return proc

    return start


@pytest.fixture(scope="module")
def module_proxy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Like ``http_proxy`` but shared by a module's tests: ``module_proxy(disco=DiscoDir,
    **http_config options)``; every process started is killed when the module ends."""
    started: list[TurnoutProcess] = []

    def start(*, disco: DiscoDir | None, **kw: Any) -> TurnoutProcess:
        workdir = tmp_path_factory.mktemp("turnout")
        proc = TurnoutProcess(http_config(disco=disco, **kw), workdir=workdir)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()
