"""The io.l5d.consul dtab store's configuration: registration, Linkerd's keys and defaults,
located errors (``turnout check`` of a namerd file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from turnout.errors import ConfigError
from turnout.namerd.config import load_namerd_text
from turnout.plugin_manager import load_plugins
from turnout_namer_consul import plugin
from turnout_namer_consul.dtab_store import ConsulDtabStoreConfig

BASE = """\
storage:
  kind: io.l5d.consul
{extra}interfaces:
- kind: io.l5d.httpController
"""


@pytest.fixture(scope="module")
def registry() -> Any:
    return load_plugins({}, autoload=False, extra=[plugin]).registry


def load(registry: Any, extra: str = "") -> Any:
    return load_namerd_text(BASE.format(extra=extra), "namerd.yaml", registry=registry)


def turnout(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_registered_through_the_entry_point(tmp_path: Path) -> None:
    r = turnout(tmp_path, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    found = [
        (p["distribution"], k["kind"])
        for p in json.loads(r.stdout)["plugins"]
        for k in p["kinds"]
        if k["family"] == "dtab store"
    ]
    assert ("turnout-namer-consul", "io.l5d.consul") in found
    (tmp_path / "namerd.yaml").write_text(BASE.format(extra=""))
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 0, r.stderr
    assert "storage io.l5d.consul" in r.stdout


def test_linkerd_defaults(registry: Any) -> None:
    store = load(registry).config.storage
    assert isinstance(store, ConsulDtabStoreConfig)
    assert (store.host, store.port) == ("localhost", 8500)
    assert store.path_prefix.show == "/namerd/dtabs"
    assert store.token is None and store.datacenter is None
    assert store.read_consistency_mode is None and store.write_consistency_mode is None
    assert store.tls is None


def test_every_linkerd_key(registry: Any) -> None:
    store = load(
        registry,
        "  host: consul.local\n  port: 8501\n  pathPrefix: /my/dtabs\n  token: t\n"
        "  datacenter: dc2\n  readConsistencyMode: stale\n  writeConsistencyMode: consistent\n"
        "  failFast: true\n",
    ).config.storage
    assert (store.host, store.port, store.path_prefix.show) == ("consul.local", 8501, "/my/dtabs")
    assert (store.token, store.datacenter) == ("t", "dc2")
    assert (store.read_consistency_mode, store.write_consistency_mode) == ("stale", "consistent")


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ("  port: 0\n", "namerd.yaml:3:9: storage.port", "must be"),
        ("  readConsistencyMode: fast\n", "namerd.yaml:3:24: storage.readConsistencyMode", "stale"),
        ("  pathPrefix: namerd\n", "namerd.yaml:3:15: storage.pathPrefix", ""),
        ("  bakoff: 1\n", "namerd.yaml:3:3: storage.bakoff", "unknown key"),
        (
            "  backoff: {kind: jittered, minMs: 10, maxMs: 1}\n",
            "namerd.yaml:3:47: storage.backoff.maxMs",
            "must be at least minMs",
        ),
        (
            "  tls:\n    trustCertsBundle: /nonexistent/ca.pem\n",
            "namerd.yaml:4:23: storage.tls.trustCertsBundle",
            "does not exist",
        ),
    ],
)
def test_located_errors(registry: Any, extra: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(registry, extra)
    shown = str(e.value)
    assert where in shown, shown
    assert message in shown, shown
