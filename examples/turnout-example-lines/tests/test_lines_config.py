"""``protocol: lines`` registers through the plugin hook and reads like any router config."""

from __future__ import annotations

from typing import Any

import pytest
from turnout.config import RouterConfig
from turnout.naming import Path
from turnout.testing.config import plugin_registry, read_entry
from turnout_example_lines import plugin
from turnout_example_lines.config import LinesRouterConfig

CONFIG = """
protocol: lines
label: echo
dstPrefix: /lines
dtab: /lines => /#/io.l5d.fs;
maxLineBytes: 1024
servers:
- port: 4150
"""


@pytest.fixture(scope="module")
def registry() -> Any:
    # autoload=False: turnout's built-ins and this plugin only, whatever else is installed
    return plugin_registry(plugin)


def test_the_plugin_registers_protocol_lines(registry) -> None:
    registration = registry.registration("router", "lines")
    assert registration.cls is LinesRouterConfig
    assert registration.hook == "turnout_register_protocols"


def test_config_is_read(registry) -> None:
    config, problems = read_entry(registry, RouterConfig, CONFIG)
    assert problems == []
    assert isinstance(config, LinesRouterConfig)
    assert config.effective_label == "echo"
    assert config.dst_prefix == Path.read("/lines")
    assert config.max_line_bytes == 1024
    assert config.connect_timeout_ms == 3000


def test_the_default_port_and_label(registry) -> None:
    text = "protocol: lines\nservers:\n- ip: 127.0.0.1\n"
    config, problems = read_entry(registry, RouterConfig, text)
    assert problems == []
    assert isinstance(config, LinesRouterConfig)
    assert config.effective_label == "lines"
    assert config.server_port(config.servers[0]) == 4150


def test_tls_servers_are_refused_where_written(registry, tmp_path) -> None:
    trustme = pytest.importorskip("trustme")  # (the certificates must be real to be read)
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    tls = f"{{certPath: {tmp_path / 'cert.pem'}, keyPath: {tmp_path / 'key.pem'}}}"
    text = f"protocol: lines\nservers:\n- port: 4150\n- port: 4151\n  tls: {tls}\n"
    config, problems = read_entry(registry, RouterConfig, text)
    assert config is None
    assert [(p.path, p.line, p.message) for p in problems] == [
        ("servers[1].tls", 5, "protocol lines does not terminate TLS")
    ]


def test_a_too_small_line_limit_is_refused(registry) -> None:
    _, problems = read_entry(
        registry, RouterConfig, "protocol: lines\nmaxLineBytes: 2\nservers: []\n"
    )
    assert [p.path for p in problems] == ["maxLineBytes"]
