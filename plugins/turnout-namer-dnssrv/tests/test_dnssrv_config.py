"""Configuration of ``io.l5d.dnssrv``: registration, Linkerd's keys, turnout's extensions,
the experimental gate and errors at their position."""

from __future__ import annotations

import pytest
from turnout.config import NamerConfig
from turnout.naming import Path
from turnout.testing.config import plugin_registry, read_entry
from turnout_namer_dnssrv import plugin
from turnout_namer_dnssrv.config import DnsSrvNamerConfig


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read_namer(registry, text: str):
    return read_entry(registry, NamerConfig, text, "namer.yaml")


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("namer", "io.l5d.dnssrv")
    assert registration.cls is DnsSrvNamerConfig
    assert registration.provider.plugin == "turnout_namer_dnssrv.plugin"


def test_linkerds_example_is_read(registry):
    config, problems = read_namer(
        registry,
        """
        kind: io.l5d.dnssrv
        experimental: true
        refreshIntervalSeconds: 60
        dnsHosts:
        - ns0.example.org
        - ns1.example.org
        """,
    )
    assert problems == []
    assert config.refresh_interval_seconds == 60.0
    assert config.dns_hosts == ["ns0.example.org", "ns1.example.org"]
    assert config.effective_prefix == Path.read("/io.l5d.dnssrv")


def test_defaults(registry):
    config, problems = read_namer(registry, "kind: io.l5d.dnssrv\nexperimental: true\n")
    assert problems == []
    assert config.refresh_interval_seconds == 5.0
    assert config.dns_hosts == []
    assert config.domain is None
    assert config.timeout_ms == 5000
    assert config.resolve_inet is False


def test_turnout_extensions(registry):
    config, problems = read_namer(
        registry,
        """
        kind: io.l5d.dnssrv
        experimental: true
        prefix: /dns
        refreshIntervalSeconds: 0.5
        dnsHosts: ["127.0.0.1:5353", "[::1]:5353"]
        domain: svc.test
        timeoutMs: 800
        resolveInet: true
        """,
    )
    assert problems == []
    assert config.refresh_interval_seconds == 0.5
    assert config.timeout_ms == 800 and config.resolve_inet is True
    assert config.domain == "svc.test"
    assert config.effective_prefix == Path.read("/dns")


def test_experimental_is_required(registry):
    config, problems = read_namer(registry, "kind: io.l5d.dnssrv\n")
    assert config is None
    assert len(problems) == 1 and "experimental: true" in problems[0].message


def test_a_bad_dns_host_is_reported_where_it_is_written(registry):
    _, problems = read_namer(
        registry,
        'kind: io.l5d.dnssrv\nexperimental: true\ndnsHosts: ["127.0.0.1:53", "h:99999"]\n',
    )
    assert [(p.line, p.path) for p in problems] == [(3, "dnsHosts[1]")]
    assert "port from 1 to 65535" in problems[0].message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("refreshIntervalSeconds: 0\n", "must be between 0.05 and 86400"),
        ("timeoutMs: 0\n", "must be between 10 and 60000"),
        ("domain: a..b\n", "not a valid domain name"),
        ("dnsHost: []\n", "did you mean 'dnsHosts'?"),
    ],
)
def test_config_errors(registry, extra, message):
    config, problems = read_namer(registry, "kind: io.l5d.dnssrv\nexperimental: true\n" + extra)
    assert config is None
    assert [message in p.message for p in problems] == [True], problems
