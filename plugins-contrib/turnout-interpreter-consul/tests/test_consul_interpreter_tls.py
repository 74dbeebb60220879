"""``tls``: the interpreter reads its dtab over HTTPS from the Consul API double serving a
certificate of a throwaway CA (trusted through ``trustCertsBundle``, name checked through
``commonName``); an agent whose certificate does not chain to the trusted CA is an error,
never a silent fallback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path as FsPath

import pytest
from turnout.api import Dtab, Failed, InterpreterConfig, Ok
from turnout.testing.config import build_context, plugin_registry, read_entry
from turnout_interpreter_consul import plugin
from turnout_namer_consul.testing import ConsulServer

KEY = "namerd/dtabs/default"


def make_pki(directory: FsPath) -> dict[str, FsPath]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(cn, issuer, *, ca=False, sans=None):
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_name, issuer_key = issuer if issuer is not None else (name(cn), key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256()), key

    def write(stem, cert, key=None):
        out = {stem: directory / f"{stem}.pem"}
        out[stem].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            out[f"{stem}-key"] = directory / f"{stem}-key.pem"
            out[f"{stem}-key"].write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return out

    ca_cert, ca_key = issue("interpreter test CA", None, ca=True)
    sans = [x509.DNSName("consul.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_cert, server_key = issue("consul.test", (ca_cert.subject, ca_key), sans=sans)
    other_ca, _ = issue("another CA", None, ca=True)
    return {**write("ca", ca_cert), **write("server", server_cert, server_key)} | write(
        "other-ca", other_ca
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run_against(registry, pki, bundle: str) -> tuple[object, dict, list]:
    async def main() -> tuple[object, dict, list]:
        server = await ConsulServer(
            jitter=False, tls_cert=pki["server"], tls_key=pki["server-key"]
        ).start()
        server.state.kv_put(KEY, b"/svc => /$/inet/127.0.0.1")
        text = (
            "kind: io.l5d.consul.interpreter\n"
            f"host: 127.0.0.1\nport: {server.port}\n"
            "backoff: {kind: constant, ms: 50}\n"
            f"tls: {{commonName: consul.test, trustCertsBundle: {pki[bundle]}}}\n"
        )
        config, problems = read_entry(registry, InterpreterConfig, text)
        assert problems == []
        interpreter = config.new_interpreter(build_context())
        try:
            interpreter.watch.start()
            await until(lambda: interpreter.watch.updates >= 1 or interpreter.watch.errors >= 1)
            return interpreter.stored_dtab(), interpreter.state()["default"], server.calls
        finally:
            await interpreter.close()
            await server.stop()

    return asyncio.run(main())


def test_https_with_a_trusted_ca(registry, pki):
    stored, state, calls = run_against(registry, pki, "ca")
    assert stored == Ok(Dtab.read("/svc=>/$/inet/127.0.0.1"))
    assert state["poll"]["error"] is None
    assert calls and calls[0].path == f"/v1/kv/{KEY}"


def test_https_with_another_ca_is_refused(registry, pki):
    stored, state, calls = run_against(registry, pki, "other-ca")
    assert isinstance(stored, Failed)
    assert "certificate" in state["poll"]["error"].lower(), state["poll"]["error"]
    assert not calls  # the handshake failed: no request reached the double
