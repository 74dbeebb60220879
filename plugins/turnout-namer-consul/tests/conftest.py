"""Fixtures of the io.l5d.consul namer's tests: the Consul API double (in a thread, or as a
subprocess), turnout processes, recording backends, and throwaway certificates."""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("turnout_namer_consul") is None:  # a checkout without install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namer_consul.testing import ConsulDouble, ConsulDoubleProcess


@pytest.fixture
def consul_double() -> Iterator[Callable[..., ConsulDouble]]:
    """``consul_double(**ConsulServer options)``: a started :class:`ConsulDouble` (in a
    background thread); closed at teardown."""
    started: list[ConsulDouble] = []

    def factory(**kw: Any) -> ConsulDouble:
        double = ConsulDouble(**kw)
        started.append(double)
        return double.start()

    yield factory
    for double in started:
        double.close()


@pytest.fixture
def consul_process(tmp_path: Path) -> Iterator[Callable[..., ConsulDoubleProcess]]:
    """``consul_process(**options)``: a started :class:`ConsulDoubleProcess` with its state
    in a directory under ``tmp_path``; killed (by PID) at teardown."""
    started: list[ConsulDoubleProcess] = []

    def factory(**kw: Any) -> ConsulDoubleProcess:
        n = len(started)
        kw.setdefault("data_dir", tmp_path / f"consul-{n}")
        kw.setdefault("log_path", tmp_path / f"consul-{n}.log")
        proc = ConsulDoubleProcess(**kw)
        started.append(proc)
        return proc.start()

    yield factory
    for proc in started:
        proc.kill()


# -- certificates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Throwaway PEM files: a CA, a server certificate it issued (``consul.test`` and
    127.0.0.1), a client certificate it issued (CN ``turnout-client``), a self-signed server
    certificate, and a second CA that issued nothing the double serves."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    self_signed_cert: Path
    self_signed_key: Path
    other_ca: Path


def _pki(directory: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key: Any = None) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cert_path, key_path

    def issue(
        cn: str,
        issuer: tuple[x509.Name, Any] | None,
        *,
        ca: bool = False,
        sans: list[x509.GeneralName] | None = None,
        usage: Any = None,
    ) -> tuple[x509.Certificate, Any]:
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
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256()), key

    server_sans: list[x509.GeneralName] = [
        x509.DNSName("consul.test"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    ca_cert, ca_key = issue("turnout test CA", None, ca=True)
    issuer = (ca_cert.subject, ca_key)
    server = issue("consul.test", issuer, sans=server_sans, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = issue("turnout-client", issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    self_signed = issue("consul.test", None, sans=server_sans)
    other_ca, _ = issue("another CA", None, ca=True)
    ca_path, _ = write("ca", ca_cert)
    server_cert, server_key = write("server", *server)
    client_cert, client_key = write("client", *client)
    self_cert, self_key = write("self-signed", *self_signed)
    other_ca_path, _ = write("other-ca", other_ca)
    return Pki(
        directory,
        ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
        self_cert,
        self_key,
        other_ca_path,
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Throwaway certificates (:class:`Pki`), made once per test session."""
    return _pki(tmp_path_factory.mktemp("pki"))
