"""The ``io.l5d.etcd`` dtab store without etcd: registration through the entry point,
Linkerd's options and defaults, located configuration errors from ``turnout check``, and
Linkerd's own ``namerd/examples/etcd.yaml``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from turnout.api import DtabStoreConfig
from turnout.testing.config import plugin_registry, read_entry
from turnout_namerd_etcd import plugin
from turnout_namerd_etcd.store import (
    EtcdDtabStore,
    EtcdDtabStoreConfig,
    decode_version,
    encode_version,
)

ROOT = Path(__file__).resolve().parents[3]


def turnout(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


@pytest.fixture
def registry():  # type: ignore[no-untyped-def]
    return plugin_registry(plugin)


def test_the_plugin_registers_the_store(registry) -> None:  # type: ignore[no-untyped-def]
    reg = registry.registration("dtab store", "io.l5d.etcd")
    assert reg is not None and reg.cls is EtcdDtabStoreConfig
    assert reg.hook == "turnout_register_dtab_stores"


def test_turnout_plugins_lists_it_with_the_distribution(tmp_path: Path) -> None:
    r = turnout(tmp_path, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    found = [
        p
        for p in json.loads(r.stdout)["plugins"]
        if {"family": "dtab store", "kind": "io.l5d.etcd"} in p["kinds"]
    ]
    assert [p["distribution"] for p in found] == ["turnout-namerd-etcd"], found


def test_linkerd_options_and_defaults(registry) -> None:  # type: ignore[no-untyped-def]
    config, problems = read_entry(registry, DtabStoreConfig, "kind: io.l5d.etcd\n", "n.yaml")
    assert problems == []
    assert isinstance(config, EtcdDtabStoreConfig)
    assert (config.host, config.port, config.path_prefix.show) == (
        "localhost",
        2379,
        "/namerd/dtabs",
    )
    store = config.new_store(None)  # type: ignore[arg-type]
    assert isinstance(store, EtcdDtabStore)
    assert (store.url, store.prefix, store.key("default")) == (
        "http://localhost:2379",
        "/namerd/dtabs",
        "/namerd/dtabs/default",
    )
    config, problems = read_entry(
        registry,
        DtabStoreConfig,
        "kind: io.l5d.etcd\nhost: '::1'\nport: 4001\npathPrefix: /dtabs\nexperimental: true\n",
        "n.yaml",
    )
    assert problems == [], problems
    assert isinstance(config, EtcdDtabStoreConfig)
    store = config.new_store(None)  # type: ignore[arg-type]
    assert (store.url, store.key("x")) == ("http://[::1]:4001", "/dtabs/x")


def test_tls_options(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config, problems = read_entry(
        registry,
        DtabStoreConfig,
        f"kind: io.l5d.etcd\ntls:\n  commonName: etcd.test\n"
        f"  trustCertsBundle: {tmp_path / 'ca.pem'}\n",
        "n.yaml",
    )
    assert problems == [], problems
    assert isinstance(config, EtcdDtabStoreConfig)
    store = config.new_store(None)  # type: ignore[arg-type]
    assert store.url == "https://localhost:2379"
    assert store.tls is not None and store.tls()["server_hostname"] == "etcd.test"


def test_versions_are_linkerds_decimal_text() -> None:
    assert encode_version(42) == b"42"
    assert decode_version(b"42") == 42
    for bad in (b"", b"0", b"-1", b"4x", b"\xff", "٤".encode()):
        assert decode_version(bad) is None, bad


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: io.l5d.etcd\nport: 0\n", "port"),
        ("kind: io.l5d.etcd\nhost: ''\n", "must not be empty"),
        ("kind: io.l5d.etcd\npathPrefix: dtabs\n", "pathPrefix"),
        ("kind: io.l5d.etcd\npathPrefx: /x\n", "did you mean 'pathPrefix'"),
        ("kind: io.l5d.etcd\ntls: {trustCertsBundle: /nowhere.pem}\n", "commonName"),
    ],
)
def test_config_errors(registry, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    config, problems = read_entry(registry, DtabStoreConfig, text, "namerd.yaml")
    assert config is None
    assert any(message in f"{p.path} {p.message}" for p in problems), problems


def test_turnout_check_locates_the_error(tmp_path: Path) -> None:
    (tmp_path / "namerd.yaml").write_text(
        "storage:\n"
        "  kind: io.l5d.etcd\n"
        "  host: 127.0.0.1\n"
        "  tls:\n"
        "    commonName: etcd\n"
        "    trustCertsBundle: missing-ca.pem\n"
        "interfaces:\n"
        "- kind: io.l5d.httpController\n"
    )
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 1
    assert "namerd.yaml:6:23: storage.tls.trustCertsBundle: " in r.stderr, r.stderr
    assert "missing-ca.pem" in r.stderr


def test_linkerds_etcd_example_passes_check(tmp_path: Path) -> None:
    """``examples/linkerd/namerd/etcd.yaml``, unchanged: Linkerd marked its v2-API store
    experimental; turnout's is not, so ``experimental: true`` is not required (the example
    does not set it). Its io.l5d.thriftNameInterpreter interface is refused, with why."""
    example = ROOT / "examples" / "linkerd" / "namerd" / "etcd.yaml"
    text = example.read_text()
    assert "kind: io.l5d.etcd" in text and "experimental" not in text
    r = turnout(tmp_path, "check", str(example))
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "io.l5d.thriftNameInterpreter" in errors[0], r.stderr
    served = text.replace("- kind: io.l5d.thriftNameInterpreter\n", "")
    (tmp_path / "etcd.yaml").write_text(served)
    r = turnout(tmp_path, "check", "etcd.yaml")
    assert r.returncode == 0, r.stderr
    assert "etcd.yaml: OK (namerd: storage io.l5d.etcd" in r.stdout
