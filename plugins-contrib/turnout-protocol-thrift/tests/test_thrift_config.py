"""``protocol: thrift`` registers through its entry point and reads Linkerd's options."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from turnout.config import RouterConfig
from turnout.naming import Path
from turnout.testing.config import plugin_registry, read_entry
from turnout_protocol_thrift import plugin
from turnout_protocol_thrift.config import ThriftRouterConfig

CONFIG = """
protocol: thrift
thriftProtocol: compact
thriftMethodInDst: true
dtab: /svc => /#/io.l5d.fs;
servers:
- port: 4115
  thriftFramed: false
client:
  kind: io.l5d.static
  configs:
  - prefix: /#/io.l5d.fs/{service}
    thriftFramed: false
    attemptTTwitterUpgrade: true
    requestAttemptTimeoutMs: 500
"""


@pytest.fixture(scope="module")
def registry() -> Any:
    return plugin_registry(plugin)


def test_the_plugin_registers_protocol_thrift(registry) -> None:
    registration = registry.registration("router", "thrift")
    assert registration.cls is ThriftRouterConfig
    assert registration.hook == "turnout_register_protocols"


def test_turnout_plugins_lists_it_with_its_distribution() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "turnout", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    plugins = json.loads(out)
    entries = plugins if isinstance(plugins, list) else plugins.get("plugins", [])
    ours = [p for p in entries if p.get("distribution") == "turnout-protocol-thrift"]
    assert ours, out
    assert {"family": "router", "kind": "thrift"} in ours[0]["kinds"]


def test_linkerd_options_are_read(registry) -> None:
    config, problems = read_entry(registry, RouterConfig, CONFIG)
    assert problems == []
    assert isinstance(config, ThriftRouterConfig)
    assert config.thrift_protocol == "compact" and config.thrift_method_in_dst
    assert config.servers[0].thrift_framed is False
    assert config.client is not None
    cat = Path.read("/#/io.l5d.fs/cat")
    assert config.client.thrift_options(cat) == (False, True)
    assert config.client.thrift_options(Path.read("/$/inet/127.1/1")) == (True, False)
    core = config.core_config().client
    assert type(core).__name__ == "StaticClientConfig"
    assert core.configs[0].request_attempt_timeout_ms == 500


def test_the_defaults_are_linkerds(registry) -> None:
    config, problems = read_entry(registry, RouterConfig, "protocol: thrift\nservers:\n- {}\n")
    assert problems == []
    assert isinstance(config, ThriftRouterConfig)
    assert config.server_port(config.servers[0]) == 4114
    assert config.servers[0].thrift_framed is True
    assert config.thrift_protocol == "binary" and not config.thrift_method_in_dst
    assert config.dst_prefix == Path.read("/svc")
    assert config.max_message_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("thriftProtocol: json\n", "thriftProtocol", "binary"),
        ("thriftFramed: true\n", "thriftFramed", "unknown key"),
        (
            "client:\n  attemptTTwitterUpgrde: true\n",
            "client.attemptTTwitterUpgrde",
            "attemptTTwitterUpgrade",
        ),
        ("client:\n  tls: {commonName: x}\n", "client.tls", "does not originate TLS"),
        (
            "client:\n  kind: io.l5d.static\n  thriftFramed: false\n  configs: []\n",
            "client.thriftFramed",
            "configs[]",
        ),
        (
            "service:\n  responseClassifier: {kind: io.l5d.http.nonRetryable5XX}\n",
            "service.responseClassifier",
            None,
        ),
        ("maxMessageBytes: 10\n", "maxMessageBytes", "between 64 and"),
        (
            "client:\n  hostConnectionPool: {idleTimeMs: 5, maxSize: 10}\n",
            "client.hostConnectionPool.maxSize",
            "only idleTimeMs",
        ),
    ],
)
def test_bad_options_are_located_and_explained(registry, text, where, says) -> None:
    config, problems = read_entry(registry, RouterConfig, "protocol: thrift\nservers: []\n" + text)
    assert config is None
    assert problems, text
    problem = problems[0]
    assert problem.path.startswith(where), problems
    assert problem.line >= 3
    if says is not None:
        assert says in problem.message, problem.message


def test_turnout_check_locates_an_error_in_a_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routers:\n- protocol: thrift\n  thriftProtocol: tjson\n  servers: []\n")
    done = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"{path}:3:19" in done.stdout + done.stderr, done.stdout + done.stderr
