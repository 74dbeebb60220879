"""Registration and configuration of ``io.l5d.consul.interpreter``: the entry point,
Linkerd's keys and defaults, and errors at their place."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from turnout.api import InterpreterConfig, Path
from turnout.testing.config import build_context, plugin_registry, read_entry
from turnout_interpreter_consul import plugin
from turnout_interpreter_consul.config import ConsulInterpreterConfig
from turnout_interpreter_consul.interpreter import ConsulDtabInterpreter


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read(registry, text: str):
    return read_entry(registry, InterpreterConfig, text, "interpreter.yaml")


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("interpreter", "io.l5d.consul.interpreter")
    assert registration.cls is ConsulInterpreterConfig
    assert registration.provider.plugin == "turnout_interpreter_consul.plugin"


def test_turnout_plugins_lists_the_kind_with_its_distribution():
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    text = json.dumps(data)
    assert "io.l5d.consul.interpreter" in text
    assert "turnout-interpreter-consul" in text


def test_linkerds_parse_config_test(registry):
    # ConsulInterpreterTest.scala "parse config"
    config, problems = read(
        registry,
        """
        kind: io.l5d.consul.interpreter
        host: consul-node
        port: 9999
        namespace: internal
        """,
    )
    assert problems == []
    assert (config.host, config.port, config.namespace) == ("consul-node", 9999, "internal")
    assert config.key == "namerd/dtabs/internal"


def test_linkerds_defaults(registry):
    config, problems = read(registry, "kind: io.l5d.consul.interpreter\n")
    assert problems == []
    assert config.host == "localhost"
    assert config.port == 8500
    assert config.path_prefix == Path.read("/namerd/dtabs")
    assert config.namespace == "default"  # Linkerd's DefaultNamespace
    assert config.key == "namerd/dtabs/default"
    assert config.token is None and config.datacenter is None
    assert config.read_consistency_mode is None and config.backoff is None
    assert config.tls is None


def test_every_linkerd_key(registry):
    config, problems = read(
        registry,
        """
        kind: io.l5d.consul.interpreter
        host: consul.internal
        port: 8501
        pathPrefix: /dtabs/prod
        namespace: edge-1
        token: s3cret
        datacenter: dc2
        readConsistencyMode: stale
        writeConsistencyMode: consistent
        failFast: true
        backoff:
          kind: jittered
          minMs: 10
          maxMs: 1000
        tls:
          disableValidation: true
        """,
    )
    assert problems == [], problems
    assert config.key == "dtabs/prod/edge-1"
    assert config.read_consistency_mode == "stale"
    assert config.backoff.backoff_kind == "jittered"
    delays = config.backoff.new_backoff()()
    assert all(0.01 <= next(delays) <= 1.0 for _ in range(20))
    ctx = build_context(metrics=None)
    interpreter = config.new_interpreter(ctx)
    assert isinstance(interpreter, ConsulDtabInterpreter)
    assert interpreter.watch.token == "s3cret"
    assert interpreter.watch.datacenter == "dc2"
    assert interpreter.watch.ssl_context is not None
    assert ("stale", "1") in interpreter.watch.params()
    assert ("dc", "dc2") in interpreter.watch.params()


def test_constant_backoff(registry):
    config, problems = read(
        registry, "kind: io.l5d.consul.interpreter\nbackoff: {kind: constant, ms: 250}\n"
    )
    assert problems == []
    delays = config.backoff.new_backoff()()
    assert [next(delays) for _ in range(3)] == [0.25, 0.25, 0.25]


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("namespace: a/b", "interpreter.yaml:2:12", "letters, digits"),
        ("port: 0", "interpreter.yaml:2:7", "port"),
        ("readConsistencyMode: eventual", "interpreter.yaml:2:22", "stale"),
        ("backoff: {kind: constant}", "interpreter.yaml:2:10", "needs ms"),
        ("backoff: {kind: jittered, minMs: 10, maxMs: 5}", "interpreter.yaml:2:", "minMs"),
        ("backoff: {kind: exponential, ms: 5}", "interpreter.yaml:2:", "jittered"),
        ("dtabPath: /x", "interpreter.yaml:2:1", "unknown key"),
        ("tls: {trustCertsBundle: /nonexistent/ca.pem}", "interpreter.yaml:2:", "does not exist"),
        ("datacenter: ''", "interpreter.yaml:2:13", "leave it out"),
    ],
)
def test_errors_are_located_and_name_the_fix(registry, text, where, hint):
    config, problems = read(registry, f"kind: io.l5d.consul.interpreter\n{text}\n")
    assert config is None
    shown = "\n".join(str(p) for p in problems)
    assert where in shown and hint in shown, shown
