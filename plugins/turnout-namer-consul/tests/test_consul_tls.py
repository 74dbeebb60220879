"""The io.l5d.consul ``tls`` block: HTTPS to the Consul API double with throwaway
certificates (CA-issued, self-signed, client certificates), the namer's errors when the
server cannot be verified or refuses it, and the configuration checks of every file."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

import pytest
from turnout.config import NamerConfig
from turnout.config.loader import load_text
from turnout.config.schema import INVALID, Validator
from turnout.config.source import read_text
from turnout.errors import ConfigError, TurnoutError
from turnout.naming import AddrBound, AddrFailed, Leaf, Ok, Path, Pending
from turnout.plugin_manager import load_plugins
from turnout.testing.config import build_context
from turnout_namer_consul import plugin
from turnout_namer_consul.config import ConsulNamerConfig
from turnout_namer_consul.namer import ConsulNamer

PREFIX = Path.read("/#/io.l5d.consul")


@pytest.fixture(scope="module")
def registry():
    return load_plugins({}, autoload=False, extra=[plugin]).registry


def read_namer(registry: Any, text: str) -> tuple[Any, list[str]]:
    """The config (None when invalid) and its problems as ``path: message`` strings."""
    source, problems = read_text(textwrap.dedent(text), "namer.yaml", environ={})
    validator = Validator(source, registry)
    config = validator.build(NamerConfig, source.data)
    found = [f"{p.path}: {p.message}" for p in problems + validator.problems]
    return (None if config is INVALID else config), found


def tls_yaml(**tls: Any) -> str:
    lines = ["kind: io.l5d.consul", "host: 127.0.0.1", "tls:"]
    for key, value in tls.items():
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            lines += [f"    {k}: {v}" for k, v in value.items()]
        elif isinstance(value, list):
            lines.append(f"  {key}: [{', '.join(str(v) for v in value)}]")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


def namer_from(registry: Any, port: int, **tls: Any) -> ConsulNamer:
    """A namer built as turnout builds it: YAML → config (checked) → ``new_namer``."""
    config, problems = read_namer(
        registry, tls_yaml(**tls) + f"port: {port}\nblockingWaitMs: 10000\n"
    )
    assert problems == [] and config is not None, problems
    namer = config.new_namer(build_context())
    assert isinstance(namer, ConsulNamer)
    namer.backoff = lambda: iter(lambda: 0.05, None)
    return namer


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def eventually(predicate: Callable[[], Any], timeout: float = 15.0) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout}s: {predicate}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def addr(act: Any) -> Any:
    state = act.value
    if state is Pending:
        return "pending"
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    return state.value.value.addr.value


async def lookup(namer: ConsulNamer, path: str = "/dc1/web") -> tuple[Any, Any]:
    act = namer.lookup(Path.read(path))
    return act, act.observe(lambda _: None)


async def resolved(namer: ConsulNamer) -> set[int]:
    act, closer = await lookup(namer)
    try:
        await eventually(lambda: isinstance(addr(act), AddrBound))
        return {a.port for a in addr(act).addresses}
    finally:
        closer.close()
        await namer.close()


async def refused(namer: ConsulNamer) -> str:
    """The error the namer reports for ``/dc1/web`` (which must never bind)."""
    act, closer = await lookup(namer)
    try:
        await eventually(lambda: isinstance(addr(act), AddrFailed))
        await asyncio.sleep(0.3)  # a few retries: still no address set
        assert isinstance(addr(act), AddrFailed)
        state = namer.state()["watches"]["/dc1/web"]
        assert state["state"] == "failed" and state["addresses"] == [], state
        assert state["errors"] >= 1 and state["lastError"], state
        return str(state["lastError"])
    finally:
        closer.close()
        await namer.close()


# -- the namer over HTTPS ----------------------------------------------------------------------


@pytest.mark.integration
def test_resolves_over_tls_with_trust_certs_and_common_name(registry, consul_double, pki):
    double = consul_double(tls_cert=pki.server_cert, tls_key=pki.server_key)
    assert double.url.startswith("https://")
    double.register("web", 8001, service_id="web-1")
    double.register("web", 8002, service_id="web-2")

    namer = namer_from(registry, double.port, commonName="consul.test", trustCerts=[pki.ca])
    assert namer.state()["tls"] == {"verify": True, "name": "consul.test"}
    assert run(resolved(namer)) == {8001, 8002}
    # also .local (GET /v1/agent/self) and the bundle form, checked against the IP SAN
    namer = namer_from(registry, double.port, trustCertsBundle=pki.ca)
    assert namer.state()["tls"] == {"verify": True, "name": "127.0.0.1"}

    async def local() -> None:
        act, closer = await lookup(namer, "/.local/web")
        await eventually(lambda: isinstance(addr(act), AddrBound))
        closer.close()
        await namer.close()

    run(local())
    paths = {c["path"] for c in double.requests()}
    assert {"/v1/agent/self", "/v1/catalog/service/web"} <= paths


@pytest.mark.integration
def test_a_wrong_common_name_fails_verification(registry, consul_double, pki):
    double = consul_double(tls_cert=pki.server_cert, tls_key=pki.server_key)
    double.register("web", 8001)
    namer = namer_from(registry, double.port, commonName="wrong.test", trustCerts=[pki.ca])
    error = run(refused(namer))
    print("wrong commonName:", error)
    assert "CERTIFICATE_VERIFY_FAILED" in error and "wrong.test" in error
    # a CA that did not issue the agent's certificate: refused too
    namer = namer_from(registry, double.port, commonName="consul.test", trustCerts=[pki.other_ca])
    error = run(refused(namer))
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert double.requests() == []  # no request was ever sent to an unverified server


@pytest.mark.integration
def test_plain_http_to_a_tls_agent_and_tls_to_a_plain_agent_fail(registry, consul_double, pki):
    tls_double = consul_double(tls_cert=pki.server_cert, tls_key=pki.server_key)
    plain_double = consul_double()
    for d in (tls_double, plain_double):
        d.register("web", 8001)
    plain = ConsulNamer(PREFIX, host="127.0.0.1", port=tls_double.port, wait=10.0)
    plain.backoff = lambda: iter(lambda: 0.05, None)
    print("HTTP to an HTTPS agent:", run(refused(plain)))
    tls = namer_from(registry, plain_double.port, commonName="consul.test", trustCerts=[pki.ca])
    error = run(refused(tls))
    print("HTTPS to an HTTP agent:", error)
    assert "ssl" in error.lower()


@pytest.mark.integration
def test_disable_validation_accepts_a_self_signed_certificate(registry, consul_double, pki):
    double = consul_double(tls_cert=pki.self_signed_cert, tls_key=pki.self_signed_key)
    double.register("web", 8001)
    # validated against the system CAs (no trustCerts): refused
    error = run(refused(namer_from(registry, double.port, commonName="consul.test")))
    assert "CERTIFICATE_VERIFY_FAILED" in error and "self-signed" in error
    namer = namer_from(registry, double.port, disableValidation="true", commonName="any.name")
    assert namer.state()["tls"] == {"verify": False, "name": None}
    assert run(resolved(namer)) == {8001}


@pytest.mark.integration
def test_client_auth_presents_the_client_certificate(registry, consul_double, pki):
    double = consul_double(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca, acl_token="t"
    )
    double.register("web", 8001)
    auth = {"certPath": pki.client_cert, "keyPath": pki.client_key}
    namer = namer_from(
        registry, double.port, commonName="consul.test", trustCerts=[pki.ca], clientAuth=auth
    )
    namer.token = "t"
    assert run(resolved(namer)) == {8001}
    calls = double.requests()
    assert calls and {c["client_cert"] for c in calls} == {"turnout-client"}
    assert {c["status"] for c in calls} - {None} == {200}

    # without clientAuth the double refuses the handshake: no request reaches the API
    double.clear_requests()
    namer = namer_from(registry, double.port, commonName="consul.test", trustCerts=[pki.ca])
    namer.token = "t"
    error = run(refused(namer))
    print("no client certificate:", error)
    assert double.requests() == []
    # the double's own check: a TLS client without a certificate gets no answer either
    context = ssl.create_default_context(cafile=str(pki.ca))
    import urllib.error
    import urllib.request

    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(
            f"https://127.0.0.1:{double.port}/v1/agent/self", context=context, timeout=10
        ).read()


@pytest.mark.integration
def test_client_auth_with_disable_validation_and_an_intermediate_file(
    registry, consul_double, pki, tmp_path
):
    double = consul_double(
        tls_cert=pki.self_signed_cert, tls_key=pki.self_signed_key, tls_client_ca=pki.ca
    )
    double.register("web", 8001)
    empty = tmp_path / "intermediates.pem"
    empty.write_text("")  # no intermediate: the chain is the certificate alone
    auth = {
        "certPath": pki.client_cert,
        "keyPath": pki.client_key,
        "intermediateCertsPath": empty,
    }
    namer = namer_from(registry, double.port, disableValidation="true", clientAuth=auth)
    assert run(resolved(namer)) == {8001}
    assert {c["client_cert"] for c in double.requests()} == {"turnout-client"}


@pytest.mark.integration
def test_enabled_false_is_plain_http(registry, consul_double, pki):
    double = consul_double()
    double.register("web", 8001)
    namer = namer_from(registry, double.port, enabled="false", trustCerts=["/nonexistent.pem"])
    assert namer.ssl_context is None and namer.state()["tls"] is None
    assert run(resolved(namer)) == {8001}


# -- configuration ---------------------------------------------------------------------------------


def test_tls_is_accepted_without_a_warning(registry, pki):
    source, problems = read_text(
        tls_yaml(
            commonName="consul.test",
            trustCertsBundle=pki.ca,
            clientAuth={"certPath": pki.client_cert, "keyPath": pki.client_key},
            protocols=["TLSv1.2", "TLSv1.3"],
        ),
        "namer.yaml",
        environ={},
    )
    validator = Validator(source, registry)
    config = validator.build(NamerConfig, source.data)
    assert problems == [] and validator.problems == [] and validator.warnings == []
    assert isinstance(config, ConsulNamerConfig)
    tls = config.tls
    assert tls.common_name == "consul.test" and tls.trust_certs_bundle == str(pki.ca)
    assert tls.client_auth.cert_path == str(pki.client_cert)
    assert tls.disable_validation is False and tls.enabled is True
    assert config.to_dict()["tls"]["clientAuth"]["keyPath"] == str(pki.client_key)


def test_missing_and_unusable_files_are_reported_at_their_keys(registry, pki, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    _, problems = read_namer(
        registry,
        tls_yaml(
            commonName="consul.test",
            trustCerts=[pki.ca, missing],
            trustCertsBundle=tmp_path,
            clientAuth={"certPath": tmp_path / "nope.pem", "keyPath": pki.client_key},
        ),
    )
    print("\n".join(problems))
    assert problems == [
        f"tls.trustCerts[1]: CA certificate file '{missing}' does not exist; fix the path or "
        "create the file",
        f"tls.trustCertsBundle: '{tmp_path}' is a directory; give the path of the CA "
        "certificate bundle file",
        f"tls.clientAuth.certPath: client certificate file '{tmp_path / 'nope.pem'}' does not "
        "exist; fix the path or create the file",
    ]

    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"trustCertsBundle": tmp_path}, "tls.trustCertsBundle", "is a directory"),
        ({"trustCertsBundle": garbage}, "tls.trustCertsBundle", "holds no usable CA"),
        (
            {"clientAuth": {"certPath": missing, "keyPath": pki.client_key}},
            "tls.clientAuth.certPath",
            "client certificate file",
        ),
        (
            {"clientAuth": {"certPath": pki.client_cert, "keyPath": missing}},
            "tls.clientAuth.keyPath",
            "client key file",
        ),
        (
            {
                "clientAuth": {
                    "certPath": pki.client_cert,
                    "keyPath": pki.client_key,
                    "intermediateCertsPath": missing,
                }
            },
            "tls.clientAuth.intermediateCertsPath",
            "intermediate certificates file",
        ),
        (
            {"clientAuth": {"certPath": pki.client_cert, "keyPath": pki.server_key}},
            "tls.clientAuth",
            "the key matching the certificate",
        ),
        (
            {"clientAuth": {"certPath": pki.client_cert}},
            "tls.clientAuth",
            "missing required key 'keyPath'",
        ),
        ({"clientAuth": {"certpath": pki.client_cert}}, "tls.clientAuth", "did you mean"),
        ({"protocols": ["TLSv1.2", "SSLv3"]}, "tls.protocols[1]", "unknown TLS protocol"),
        ({"commonName": '""'}, "tls.commonName", "must not be empty"),
    ]
    for tls, where, message in cases:
        config, problems = read_namer(registry, tls_yaml(**tls))
        assert config is None, tls
        assert any(p.startswith(where) and message in p for p in problems), (tls, problems)
    # with disableValidation the CA files are not used, so not checked (as Linkerd)
    config, problems = read_namer(
        registry, tls_yaml(disableValidation="true", trustCerts=[missing])
    )
    assert problems == [] and config is not None


def test_an_encrypted_client_key_is_reported_not_prompted_for(registry, pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    _, problems = read_namer(
        registry, tls_yaml(clientAuth={"certPath": pki.client_cert, "keyPath": encrypted})
    )
    assert len(problems) == 1 and problems[0].startswith("tls.clientAuth.keyPath: "), problems
    assert "encrypted" in problems[0]


@pytest.mark.skipif(os.getuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_reported(registry, pki, tmp_path):
    secret = tmp_path / "ca.pem"
    secret.write_bytes(pki.ca.read_bytes())
    secret.chmod(0)
    _, problems = read_namer(registry, tls_yaml(trustCertsBundle=secret))
    assert any("is not readable by this process" in p for p in problems), problems


def config_file(consul_port: int, tls: str) -> str:
    return (
        "admin: {port: 0}\n"
        "namers:\n"
        "- kind: io.l5d.consul\n"
        f"  port: {consul_port}\n"
        f"  tls:\n{textwrap.indent(tls, '    ')}"
        "routers:\n"
        "- protocol: http\n"
        "  dtab: /svc => /#/io.l5d.consul/dc1;\n"
        "  servers: [{port: 0}]\n"
    )


def test_turnout_check_reports_missing_files(pki, tmp_path):
    text = config_file(
        8500,
        f"commonName: consul.test\ntrustCerts: [{tmp_path}/ca.pem]\n"
        f"clientAuth: {{certPath: {pki.client_cert}, keyPath: {tmp_path}/key.pem}}\n",
    )
    # the loader of `turnout check` and `turnout run`: every problem, with its line
    with pytest.raises(ConfigError) as caught:
        load_text(text, "l5d.yaml", registry=load_plugins().registry)
    problems = [str(p) for p in caught.value.problems]
    key_column = text.splitlines()[7].index(f"{tmp_path}/key.pem") + 1
    assert problems == [
        f"l5d.yaml:7:18: namers[0].tls.trustCerts[0]: CA certificate file '{tmp_path}/ca.pem' "
        "does not exist; fix the path or create the file",
        f"l5d.yaml:8:{key_column}: namers[0].tls.clientAuth.keyPath: client key file "
        f"'{tmp_path}/key.pem' does not exist; fix the path or create the file",
    ], problems

    # the command itself (the installed plugin)
    path = tmp_path / "l5d.yaml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"l5d.yaml:7:18: namers[0].tls.trustCerts[0]: CA certificate file '{tmp_path}" in out
    assert "namers[0].tls.clientAuth.keyPath: client key file" in out
    # fixed: OK, and no "not implemented" warning for tls any more
    path.write_text(config_file(8500, f"commonName: consul.test\ntrustCertsBundle: {pki.ca}\n"))
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "OK" in out and "warning" not in out, out


def test_new_namer_reports_a_file_gone_since_the_check(registry, pki, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca.read_bytes())
    config, problems = read_namer(registry, tls_yaml(commonName="consul.test", trustCerts=[ca]))
    assert problems == []
    ca.unlink()
    with pytest.raises(TurnoutError, match=r"io.l5d.consul namer: tls.trustCerts\[0\]: .*does not"):
        config.new_namer(build_context())


def test_relative_paths_name_the_working_directory(registry, pki, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, problems = read_namer(registry, tls_yaml(trustCertsBundle="certs/ca.pem"))
    assert (
        problems
        and f"'certs/ca.pem' (relative to the working directory {tmp_path})" in (problems[0])
    )
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(pki.ca.read_bytes())
    config, problems = read_namer(registry, tls_yaml(trustCertsBundle="certs/ca.pem"))
    assert problems == [] and config is not None
    assert FsPath(config.tls.trust_certs_bundle) == FsPath("certs/ca.pem")
