"""io.l5d.curator without ZooKeeper: registration through the entry point, Linkerd's keys
and defaults, the experimental gate, errors at their position, ServiceInstance JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from turnout.config import NamerConfig
from turnout.naming import AddrBound, Address, Path
from turnout.testing.config import build_context, installed_registry, plugin_registry, read_entry
from turnout_namer_curator import plugin
from turnout_namer_curator.config import CuratorConfig, normalize_base_path
from turnout_namer_curator.namer import (
    BadInstance,
    CuratorNamer,
    instances_addr,
    parse_instance,
)
from turnout_namer_curator.testing import service_instance_json
from turnout_namer_zk.config import ZkAddrConfig


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read_namer(registry, text: str):
    return read_entry(registry, NamerConfig, text, "namer.yaml")


# -- registration ------------------------------------------------------------------------------


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("namer", "io.l5d.curator")
    assert registration.cls is CuratorConfig
    assert registration.provider.plugin == "turnout_namer_curator.plugin"


def test_the_entry_point_finds_the_kind():
    registry = installed_registry("turnout-namer-curator")
    assert registry.config_class("namer", "io.l5d.curator") is CuratorConfig


def test_turnout_plugins_lists_the_kind_with_its_distribution():
    out = subprocess.run(
        [sys.executable, "-m", "turnout", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kinds = {
        (kind["family"], kind["kind"]): plugin["distribution"]
        for plugin in json.loads(out)["plugins"]
        for kind in plugin["kinds"]
    }
    assert kinds[("namer", "io.l5d.curator")] == "turnout-namer-curator"


# -- configuration -----------------------------------------------------------------------------


def test_linkerds_example_is_read(registry):
    config, problems = read_namer(
        registry,
        """
        kind: io.l5d.curator
        experimental: true
        zkAddrs:
        - host: localhost
          port: 2181
        basePath: /curator
        """,
    )
    assert problems == []
    assert config.connect_string == "localhost:2181"
    assert config.base_path == "/curator"
    assert config.effective_prefix == Path.read("/io.l5d.curator")
    assert config.session_timeout_ms == 10_000


def test_defaults(registry):
    config, problems = read_namer(
        registry, "kind: io.l5d.curator\nexperimental: true\nzkAddrs: [{host: zk1}, {host: zk2}]\n"
    )
    assert problems == []
    assert config.base_path == "/"  # Linkerd's default
    assert config.connect_string == "zk1:2181,zk2:2181"


def test_experimental_is_required(registry):
    config, problems = read_namer(registry, "kind: io.l5d.curator\nzkAddrs: [{host: zk}]\n")
    assert config is None
    assert len(problems) == 1 and "experimental: true" in problems[0].message


@pytest.mark.parametrize(
    ("extra", "line", "path", "message"),
    [
        ("basePath: curator\n", 4, "basePath", "must be an absolute znode path, like /curator"),
        ("basePath: /a//b\n", 4, "basePath", "cannot be a znode name"),
        ("basePath: /a/../b\n", 4, "basePath", "cannot be a znode name"),
        ("basePth: /x\n", 4, "basePth", "did you mean 'basePath'?"),
        ("sessionTimeoutMs: 10\n", 4, "sessionTimeoutMs", "between 1000 and 60000"),
    ],
)
def test_bad_options_are_reported_where_they_are_written(registry, extra, line, path, message):
    config, problems = read_namer(
        registry, "kind: io.l5d.curator\nexperimental: true\nzkAddrs: [{host: zk}]\n" + extra
    )
    assert config is None
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.source, problem.line, problem.path) == ("namer.yaml", line, path)
    assert message in problem.message, problem
    assert str(problem).startswith(f"namer.yaml:{line}:")


def test_zk_addrs_are_required(registry):
    _, problems = read_namer(registry, "kind: io.l5d.curator\nexperimental: true\n")
    assert any("zkAddrs" in (p.path + p.message) for p in problems), problems
    _, problems = read_namer(registry, "kind: io.l5d.curator\nexperimental: true\nzkAddrs: []\n")
    assert any("at least one ZooKeeper server" in p.message for p in problems), problems


def test_base_path_forms():
    assert normalize_base_path("/") == "/"
    assert normalize_base_path("/curator/") == "/curator"
    assert normalize_base_path("/a/b") == "/a/b"


# -- names ---------------------------------------------------------------------------------------


def test_names_are_service_names_with_a_residual():
    namer = CuratorConfig(
        experimental=True, zk_addrs=[ZkAddrConfig(host="127.0.0.1", port=1)], base_path="/curator"
    ).new_namer(build_context())
    assert isinstance(namer, CuratorNamer)
    assert namer.key_of(Path.read("/web")) == ("web", 1)
    assert namer.key_of(Path.read("/web/v1/users")) == ("web", 1)
    assert namer.key_of(Path.read("/")) is None
    assert namer.key_of(Path.read("/..")) is None
    assert namer.znode_of("web") == "/curator/web"
    root = CuratorNamer(Path.read("/#/io.l5d.curator"), "127.0.0.1:1", "/")
    assert root.znode_of("web") == "/web"


# -- ServiceInstance JSON -----------------------------------------------------------------------


def test_a_curator_instance_gives_address_and_port():
    instance = parse_instance(service_instance_json("web", "10.0.0.1", 8080, instance_id="i-1"))
    assert instance.address == Address("10.0.0.1", 8080)
    assert instance.id == "i-1" and instance.ssl is False


def test_ssl_port_wins_and_marks_the_set_ssl_as_linkerd_does():
    plain = parse_instance(service_instance_json("web", "10.0.0.1", 8080))
    tls = parse_instance(service_instance_json("web", "10.0.0.2", 8080, ssl_port=8443))
    only_tls = parse_instance(service_instance_json("web", "10.0.0.3", None, ssl_port=9443))
    assert tls.address == Address("10.0.0.2", 8443) and tls.ssl
    assert only_tls.address == Address("10.0.0.3", 9443)
    addr = instances_addr([plain, tls, None])
    assert addr == AddrBound([Address("10.0.0.1", 8080), Address("10.0.0.2", 8443)], {"ssl": True})
    assert instances_addr([plain]).meta == {"ssl": False}


def test_payload_uri_spec_and_unknown_fields_do_not_matter():
    data = json.loads(
        service_instance_json(
            "web",
            "web-1.example.org",
            80,
            payload={"@class": "java.util.LinkedHashMap", "zone": "a"},
            uri_spec="{scheme}://foo.com:{port}",
        )
    )
    data["somethingNew"] = [1, 2]
    assert data["uriSpec"]["parts"][0] == {"value": "scheme", "variable": True}
    instance = parse_instance(json.dumps(data).encode())
    assert instance.address == Address("web-1.example.org", 80)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"port": 80}', "no 'address'"),
        (b'{"address": "10.0.0.1", "port": null, "sslPort": null}', "neither 'port' nor"),
        (b'{"address": "10.0.0.1", "port": 70000}', "not a port"),
        (b'{"address": "10.0.0.1", "port": "80"}', "not a port"),
        (b'{"address": "10.0.0.1", "port": true}', "not a port"),
    ],
)
def test_unusable_instances(data, message):
    with pytest.raises(BadInstance, match=message):
        parse_instance(data)
