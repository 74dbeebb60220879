"""io.l5d.ingress without an API server: registration through the entry point, Linkerd's keys
and defaults, errors at their position (in ``turnout check`` too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from turnout.api import Path
from turnout.testing.config import installed_registry, plugin_registry, read_entry
from turnout_identifier_k8s_ingress import plugin
from turnout_identifier_k8s_ingress.config import IngressIdentifierConfig
from turnout_identifier_k8s_ingress.identifier import IngressIdentifier
from turnout_protocol_http.config import HttpIdentifierConfig

KIND = "io.l5d.ingress"
DISTRIBUTION = "turnout-identifier-k8s-ingress"


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read_identifier(registry, text: str):
    return read_entry(registry, HttpIdentifierConfig, text, "identifier.yaml")


# -- registration ------------------------------------------------------------------------------


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("http identifier", KIND)
    assert registration.cls is IngressIdentifierConfig
    assert registration.hook == "turnout_register_identifiers"


def test_the_installed_entry_point_provides_the_kind():
    registry = installed_registry(DISTRIBUTION)
    registration = registry.registration("http identifier", KIND)
    assert registration.cls is IngressIdentifierConfig
    assert registration.provider.distribution == DISTRIBUTION


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
    assert kinds[("http identifier", KIND)] == DISTRIBUTION


# -- configuration -----------------------------------------------------------------------------


def test_defaults_are_linkerds(registry):
    config, problems = read_identifier(registry, f"kind: {KIND}\n")
    assert problems == []
    assert (config.host, config.port, config.namespace) == ("localhost", 8001, None)
    assert config.ingress_class_annotation == "linkerd"
    assert config.ignore_default_backends is False


def test_every_linkerd_key_is_read(registry):
    config, problems = read_identifier(
        registry,
        f"kind: {KIND}\nhost: example.org\nport: 9090\nnamespace: istio-ns\n"
        "ingressClassAnnotation: linkerd-ingress\nignoreDefaultBackends: true\n",
    )
    assert problems == []
    assert (config.host, config.port, config.namespace) == ("example.org", 9090, "istio-ns")
    assert config.ingress_class_annotation == "linkerd-ingress"
    assert config.ignore_default_backends is True


@pytest.mark.parametrize(
    ("line", "path", "message"),
    [
        ("namespace: Not_A_Namespace", "namespace", "is not a Kubernetes namespace name"),
        ("ingressClassAnnotation: ''", "ingressClassAnnotation", "must not be empty"),
        ("ignoreDefaultBackend: true", "ignoreDefaultBackend", "did you mean"),
        ("port: 0", "port", "between 1 and 65535"),
        ("host: ''", "host", "must not be empty"),
        ("ignoreDefaultBackends: maybe", "ignoreDefaultBackends", "expected true or false"),
    ],
)
def test_bad_options_are_reported_where_they_are_written(registry, line, path, message):
    config, problems = read_identifier(registry, f"kind: {KIND}\n{line}\n")
    assert config is None
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.source, problem.line, problem.path) == ("identifier.yaml", 2, path)
    assert message in problem.message, problem
    assert str(problem).startswith("identifier.yaml:2:")


def test_turnout_check_points_at_the_line(tmp_path):
    path = tmp_path / "l5d.yaml"
    path.write_text(
        "routers:\n- protocol: http\n  identifier:\n    kind: io.l5d.ingress\n"
        "    namespace: UPPER\n  servers: [{port: 4140}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TURNOUT_PLUGINS": "protocol-http,identifier-k8s-ingress"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{path}:5:" in output and "namespace" in output, output


def test_turnout_check_accepts_linkerds_ingress_config(tmp_path):
    # the identifier section of Linkerd's docs (linkerd.io config: io.l5d.ingress)
    path = tmp_path / "l5d.yaml"
    path.write_text(
        "routers:\n- protocol: http\n  identifier:\n    kind: io.l5d.ingress\n"
        "    namespace: default\n    ingressClassAnnotation: linkerd\n"
        "    ignoreDefaultBackends: false\n    host: localhost\n    port: 8001\n"
        "  dtab: /svc => /#/io.l5d.k8s\n  servers: [{port: 4140}]\n"
        "namers:\n- kind: io.l5d.k8s\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "TURNOUT_PLUGINS": "protocol-http,identifier-k8s-ingress,namer-k8s",
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "not implemented" not in output.lower() and "ignored" not in output.lower(), output


def test_building_the_identifier_contacts_nothing():
    identifier = IngressIdentifierConfig(host="127.0.0.1", port=1).new_identifier(Path.read("/svc"))
    assert isinstance(identifier, IngressIdentifier)
    assert identifier.cache.loaded.is_set() is False
    assert identifier.cache in plugin._unstarted
    plugin._unstarted.discard(identifier.cache)
