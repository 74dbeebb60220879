"""The ``io.l5d.zk`` dtab store without ZooKeeper: registration through the entry point,
Linkerd's options and defaults, and located configuration errors from ``turnout check``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kazoo.security import ACL, Id
from turnout.api import DtabStoreConfig
from turnout.testing.config import plugin_registry, read_entry
from turnout_namer_zk import plugin
from turnout_namer_zk.dtab_store import (
    ZkDtabStore,
    decode_version,
    encode_version,
    zk_acl,
)
from turnout_namer_zk.dtab_store_config import ZkAclConfig, ZkDtabStoreConfig


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
    reg = registry.registration("dtab store", "io.l5d.zk")
    assert reg is not None and reg.cls is ZkDtabStoreConfig
    assert reg.hook == "turnout_register_dtab_stores"


def test_turnout_plugins_lists_it_with_the_distribution(tmp_path: Path) -> None:
    r = turnout(tmp_path, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    found = [
        p
        for p in json.loads(r.stdout)["plugins"]
        if {"family": "dtab store", "kind": "io.l5d.zk"} in p["kinds"]
    ]
    assert [p["distribution"] for p in found] == ["turnout-namer-zk"], found


def test_linkerd_options_and_defaults(registry) -> None:  # type: ignore[no-untyped-def]
    config, problems = read_entry(
        registry,
        DtabStoreConfig,
        "kind: io.l5d.zk\nzkAddrs: [{host: 127.0.0.1, port: 2181}, {host: zk2}]\n",
        "namerd.yaml",
    )
    assert problems == []
    assert isinstance(config, ZkDtabStoreConfig)
    assert config.connect_string == "127.0.0.1:2181,zk2:2181"
    assert config.path_prefix == "/dtabs"
    assert config.session_timeout_ms == 10_000
    assert config.auth_info is None
    assert config.acls == [ZkAclConfig(scheme="world", id="anyone", perms="crwda")]

    config, problems = read_entry(
        registry,
        DtabStoreConfig,
        """
        kind: io.l5d.zk
        zkAddrs: [{host: 127.0.0.1}]
        pathPrefix: /namerd/dtabs
        sessionTimeoutMs: 5000
        authInfo: {scheme: digest, auth: "namerd:secret"}
        acls:
        - {scheme: digest, id: "namerd:abc=", perms: crwda}
        - {scheme: world, id: anyone, perms: r}
        """,
        "namerd.yaml",
    )
    assert problems == [], problems
    assert isinstance(config, ZkDtabStoreConfig)
    store = config.new_store(None)  # type: ignore[arg-type]
    assert isinstance(store, ZkDtabStore)
    assert store.prefix == "/namerd/dtabs"
    assert store.conn.session_timeout == 5.0
    assert store.conn.auth_info == ("digest", "namerd:secret")
    assert store.acls == [ACL(31, Id("digest", "namerd:abc=")), ACL(1, Id("world", "anyone"))]
    assert not store.conn.started  # nothing connects before the first operation


def test_versions_are_linkerds_four_bytes() -> None:
    assert encode_version(0) == b"\x00\x00\x00\x00"
    assert encode_version(258) == b"\x00\x00\x01\x02"
    assert decode_version(b"\x00\x00\x01\x02") == 258
    assert decode_version(b"\x00" * 8) is None
    assert zk_acl("ip", "127.0.0.1", "rw") == ACL(3, Id("ip", "127.0.0.1"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: io.l5d.zk\n", "missing required key 'zkAddrs'"),
        ("kind: io.l5d.zk\nzkAddrs: []\n", "give at least one ZooKeeper server"),
        ("kind: io.l5d.zk\nzkAddrs: [{host: a}]\npathPrefix: dtabs\n", "pathPrefix"),
        ("kind: io.l5d.zk\nzkAddrs: [{host: a}]\npathPrefix: /dtabs/\n", "pathPrefix"),
        ("kind: io.l5d.zk\nzkAddrs: [{host: a}]\nacls: []\n", "give at least one ACL"),
        (
            "kind: io.l5d.zk\nzkAddrs: [{host: a}]\nacls: [{scheme: world, id: anyone, perms: cc}]",
            "not a valid permission string",
        ),
        ("kind: io.l5d.zk\nzkAddrs: [{host: a}]\nauthInfo: {scheme: digest}\n", "'auth'"),
        ("kind: io.l5d.zk\nzkAddrs: [{host: a}]\npathPrefx: /x\n", "did you mean 'pathPrefix'"),
    ],
)
def test_config_errors(registry, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    config, problems = read_entry(registry, DtabStoreConfig, text, "namerd.yaml")
    assert config is None
    assert any(message in f"{p.path} {p.message}" for p in problems), problems


def test_turnout_check_locates_the_error(tmp_path: Path) -> None:
    (tmp_path / "namerd.yaml").write_text(
        "storage:\n"
        "  kind: io.l5d.zk\n"
        "  zkAddrs: [{host: 127.0.0.1, port: 2181}]\n"
        "  acls:\n"
        "  - {scheme: world, id: anyone, perms: crwdz}\n"
        "interfaces:\n"
        "- kind: io.l5d.httpController\n"
    )
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 1
    assert "namerd.yaml:5:40: storage.acls[0].perms: 'crwdz' is not a valid permission" in (
        r.stderr
    ), r.stderr
    (tmp_path / "namerd.yaml").write_text(
        (tmp_path / "namerd.yaml").read_text().replace("crwdz", "crwda")
    )
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 0, r.stderr
    assert "storage io.l5d.zk" in r.stdout
