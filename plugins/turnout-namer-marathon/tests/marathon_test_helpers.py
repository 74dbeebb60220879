"""Helpers shared by the io.l5d.marathon tests."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path as FsPath
from typing import Any

from turnout.metrics import MetricsTree
from turnout.naming import AddrBound, Leaf, NameBound, Ok, Path
from turnout.testing.config import build_context
from turnout_namer_marathon.config import MarathonConfig
from turnout_namer_marathon.namer import MarathonNamer


def run(coro: Coroutine[Any, Any, Any], timeout: float = 90.0) -> Any:
    """Run an async test body on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def eventually(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``predicate()`` on the loop until it is truthy; AssertionError after ``timeout``
    seconds (generous: the machine may be loaded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def make_namer(
    port: int, *, environ: Mapping[str, str] | None = None, **options: Any
) -> tuple[MarathonNamer, MetricsTree]:
    """An io.l5d.marathon namer on the double at ``port`` (ttl 100 ms unless given)."""
    options.setdefault("ttl_ms", 100)
    options.setdefault("jitter_ms", 10)
    ctx = build_context()
    config = MarathonConfig(host="127.0.0.1", port=port, **options)
    return config.new_namer_with(ctx, environ or {}), ctx.metrics


def bound_of(state: Any) -> NameBound | None:
    """The NameBound of an Ok(Leaf(...)) lookup state, or None."""
    if isinstance(state, Ok) and isinstance(state.value, Leaf):
        return state.value.value
    return None


def ports_of(activity: Any) -> list[int] | None:
    """The ports of a lookup's bound addresses now (None when not bound)."""
    bound = bound_of(activity.value)
    if bound is None or not isinstance(bound.addr.value, AddrBound):
        return None
    return sorted(a.port for a in bound.addr.value.addresses)


def path(text: str) -> Path:
    return Path.read(text)


def self_signed(directory: FsPath, name: str = "marathon.test") -> tuple[FsPath, FsPath]:
    """A self-signed certificate for ``name`` and 127.0.0.1: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def rsa_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair as PEM text: (private key, public key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
