"""The io.l5d.k8s dtab store's configuration: registration, Linkerd's keys and defaults,
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
from turnout_namer_k8s import plugin
from turnout_namer_k8s.dtab_store import GROUP, KIND, PLURAL, VERSION, K8sDtabStoreConfig

BASE = """\
storage:
  kind: io.l5d.k8s
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
    assert ("turnout-namer-k8s", "io.l5d.k8s") in found
    (tmp_path / "namerd.yaml").write_text(BASE.format(extra=""))
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 0, r.stderr
    assert "storage io.l5d.k8s" in r.stdout


def test_linkerd_defaults_and_resource(registry: Any) -> None:
    store = load(registry).config.storage
    assert isinstance(store, K8sDtabStoreConfig)
    assert (store.host, store.port, store.namespace) == ("localhost", 8001, "default")
    assert (GROUP, VERSION, KIND, PLURAL) == ("l5d.io", "v1alpha1", "DTab", "dtabs")
    store = load(registry, "  host: api\n  port: 8443\n  namespace: linkerd\n").config.storage
    assert (store.host, store.port, store.namespace) == ("api", 8443, "linkerd")


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ("  port: 0\n", "namerd.yaml:3:9: storage.port", "must be"),
        ("  namespace: Not_A_Namespace\n", "namerd.yaml:3:14: storage.namespace", "Kubernetes"),
        ("  host: ''\n", "namerd.yaml:3:9: storage.host", "must not be empty"),
        ("  labelSelector: x\n", "namerd.yaml:3:3: storage.labelSelector", "unknown key"),
    ],
)
def test_located_errors(registry: Any, extra: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(registry, extra)
    shown = str(e.value)
    assert where in shown, shown
    assert message in shown, shown
