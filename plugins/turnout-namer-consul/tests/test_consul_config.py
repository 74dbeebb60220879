"""The io.l5d.consul configuration: registration, Linkerd's keys and defaults, errors,
warnings for what is not implemented, redaction of the token. (The ``tls`` block's checks
are in test_consul_tls.py.)"""

from __future__ import annotations

import textwrap

import pytest
from turnout.config import NamerConfig
from turnout.config.schema import INVALID, Validator
from turnout.config.source import read_text
from turnout.naming import Path
from turnout.plugin_manager import load_plugins
from turnout.testing.config import build_context
from turnout_namer_consul import plugin
from turnout_namer_consul.config import ConsulNamerConfig
from turnout_namer_consul.namer import ConsulNamer


@pytest.fixture(scope="module")
def registry():
    return load_plugins({}, autoload=False, extra=[plugin]).registry


def read_namer(registry, text: str):
    source, problems = read_text(textwrap.dedent(text), "namer.yaml", environ={})
    validator = Validator(source, registry)
    config = validator.build(NamerConfig, source.data)
    return (
        (None if config is INVALID else config),
        problems + validator.problems,
        validator.warnings,
    )


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("namer", "io.l5d.consul")
    assert registration.cls is ConsulNamerConfig
    assert registration.provider.plugin == "turnout_namer_consul.plugin"


def test_linkerd_defaults(registry):
    config, problems, warnings = read_namer(registry, "kind: io.l5d.consul\n")
    assert problems == [] and warnings == []
    assert (config.host, config.port) == ("localhost", 8500)
    assert config.include_tag is False and config.use_health_check is False
    assert config.health_statuses == ["passing"]
    assert config.token is None and config.set_host is False
    assert config.consistency_mode == "default" and config.fail_fast is False
    assert config.prefer_service_address is True and config.weights == []
    assert config.transfer_metadata is False
    assert config.effective_prefix == Path.read("/io.l5d.consul")


def test_every_option(registry):
    config, problems, warnings = read_namer(
        registry,
        """
        kind: io.l5d.consul
        prefix: /consul
        host: consul.example
        port: 8501
        includeTag: true
        useHealthCheck: true
        healthStatuses: [passing, warning]
        token: s3cret
        setHost: true
        consistencyMode: stale
        failFast: true
        preferServiceAddress: false
        weights:
        - {tag: canary, weight: 0.25}
        - {tag: big, weight: 4}
        transferMetadata: true
        blockingWaitMs: 30000
        """,
    )
    assert problems == [] and warnings == []
    namer = config.new_namer(build_context())
    assert isinstance(namer, ConsulNamer)
    assert str(namer.id_prefix) == "/#/consul"
    assert (namer.host, namer.port, namer.include_tag, namer.use_health_check) == (
        "consul.example",
        8501,
        True,
        True,
    )
    assert namer.health_statuses == ("passing", "warning") and namer.token == "s3cret"
    assert namer.set_host and namer.consistency == "stale" and not namer.prefer_service_address
    assert namer.weights == {"canary": 0.25, "big": 4.0} and namer.transfer_metadata
    assert namer.wait == 30.0


def test_the_token_is_redacted(registry):
    config, _, _ = read_namer(registry, "kind: io.l5d.consul\ntoken: s3cret\n")
    shown = config.to_dict()
    assert shown["token"] == "<redacted>" and "s3cret" not in str(shown)
    assert config.to_dict(redact=False)["token"] == "s3cret"


def test_streaming_is_accepted_with_a_warning_and_tls_without(registry):
    config, problems, warnings = read_namer(
        registry,
        """
        kind: io.l5d.consul
        fixedLengthStreamedAfterKB: 5120
        tls:
          disableValidation: false
          commonName: consul.example
        """,
    )
    assert problems == [] and config is not None
    assert [w.message for w in warnings] == [
        "fixedLengthStreamedAfterKB is not implemented by turnout's io.l5d.consul namer and is "
        "ignored (responses are read whole)"
    ]
    assert config.tls.common_name == "consul.example" and not config.tls.disable_validation
    namer = config.new_namer(build_context())  # the system CAs, the name consul.example
    assert namer.ssl_context is not None and namer.server_hostname == "consul.example"
    assert namer.state()["tls"] == {"verify": True, "name": "consul.example"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("healthStatuses: [passing, sick]", "expected one of 'passing', 'warning', 'critical'"),
        ("healthStatuses: []", "give at least one status"),
        ("consistencyMode: eventual", "expected one of 'default', 'stale', 'consistent'"),
        ("port: 0", "must be between 1 and 65535"),
        ("weights: [{tag: a, weight: -1}]", "must be at least 0"),
        ("weights: [{weight: 2}]", "missing required key 'tag'"),
        ("useHealthchecks: true", "did you mean 'useHealthCheck'?"),
        ("blockingWaitMs: 10", "must be between 1000 and 600000"),
    ],
)
def test_config_errors(registry, text, message):
    config, problems, _ = read_namer(registry, f"kind: io.l5d.consul\n{text}\n")
    assert config is None
    assert any(message in p.message for p in problems), [p.message for p in problems]
