"""Configuration: kinds registered, Linkerd's keys and defaults, checks, namer construction."""

from __future__ import annotations

import asyncio

import pytest
from turnout.config import NamerConfig
from turnout.errors import TurnoutError
from turnout.metrics import MetricsTree
from turnout.testing.config import build_context, plugin_registry, read_entry
from turnout_namer_k8s import plugin
from turnout_namer_k8s.config import K8sNamerConfig, K8sNsNamerConfig
from turnout_namer_k8s.namer import K8sNamer, K8sNsNamer


@pytest.fixture(scope="module")
def registry():
    # autoload=False: only turnout's built-ins and this plugin, whatever else is installed
    return plugin_registry(plugin)


def read_namer(registry, text: str):
    return read_entry(registry, NamerConfig, text, "namer.yaml")


def test_both_kinds_are_registered(registry):
    assert registry.registration("namer", "io.l5d.k8s").cls is K8sNamerConfig
    assert registry.registration("namer", "io.l5d.k8s.ns").cls is K8sNsNamerConfig
    assert registry.registration("namer", "io.l5d.k8s").hook == "turnout_register_namers"


def test_linkerd_defaults(registry):
    config, problems = read_namer(registry, "kind: io.l5d.k8s\n")
    assert problems == []
    assert (config.host, config.port, config.label_selector) == ("localhost", 8001, None)
    assert str(config.effective_prefix) == "/io.l5d.k8s"
    config, problems = read_namer(registry, "kind: io.l5d.k8s.ns\n")
    assert problems == []
    assert (config.host, config.port, config.env_var) == ("localhost", 8001, "POD_NAMESPACE")
    assert str(config.effective_prefix) == "/io.l5d.k8s.ns"


def test_linkerd_keys(registry):
    config, problems = read_namer(
        registry,
        """
        kind: io.l5d.k8s.ns
        prefix: /k8s
        host: kube-proxy.local
        port: 8002
        labelSelector: example.com/version
        envVar: MY_NAMESPACE
        """,
    )
    assert problems == []
    assert (config.host, config.port) == ("kube-proxy.local", 8002)
    assert (config.label_selector, config.env_var) == ("example.com/version", "MY_NAMESPACE")
    assert str(config.effective_prefix) == "/k8s"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("kind: io.l5d.k8s\nport: 0\n", "port"),
        ("kind: io.l5d.k8s\nport: 70000\n", "port"),
        ("kind: io.l5d.k8s\nlabelSelector: 'a,b'\n", "labelSelector"),
        ("kind: io.l5d.k8s\nlabelSelector: 'v=1'\n", "labelSelector"),
        ("kind: io.l5d.k8s\nenvVar: X\n", "envVar"),  # only io.l5d.k8s.ns has it
        ("kind: io.l5d.k8s\nnamespace: prod\n", "namespace"),  # unknown keys fail
    ],
)
def test_bad_configs_are_refused(registry, text, where):
    config, problems = read_namer(registry, text)
    assert config is None or problems, (config, problems)
    assert any(where in str(p) for p in problems), [str(p) for p in problems]


def test_new_namer(monkeypatch):
    metrics = MetricsTree()
    ctx = build_context(metrics=metrics)
    namer = K8sNamerConfig(host="127.0.0.1", port=8009, label_selector="v").new_namer(ctx)
    assert isinstance(namer, K8sNamer) and not isinstance(namer, K8sNsNamer)
    assert (namer.host, namer.port, namer.label_selector, namer.namespace) == (
        "127.0.0.1",
        8009,
        "v",
        None,
    )
    assert str(namer.id_prefix) == "/#/io.l5d.k8s"
    assert "namer/#/io.l5d.k8s/watches" in metrics.flat()

    monkeypatch.setenv("POD_NAMESPACE", "prod")
    ns_namer = K8sNsNamerConfig().new_namer(build_context())
    assert isinstance(ns_namer, K8sNsNamer) and ns_namer.namespace == "prod"
    assert ns_namer.kind == "io.l5d.k8s.ns"
    assert str(ns_namer.id_prefix) == "/#/io.l5d.k8s.ns"
    asyncio.run(namer.close())
    asyncio.run(ns_namer.close())


@pytest.mark.parametrize("value", [None, "", "Not_A_Namespace"])
def test_io_l5d_k8s_ns_needs_its_environment_variable(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("MY_NS", raising=False)
    else:
        monkeypatch.setenv("MY_NS", value)
    with pytest.raises(TurnoutError, match="MY_NS"):
        K8sNsNamerConfig(env_var="MY_NS").new_namer(build_context())
