"""TLS to the Consul agent: the :class:`ssl.SSLContext` of Linkerd's consul ``tls`` block.

Linkerd 1's consul namer reads Finagle's ``TlsClientConfig`` (``enabled``, ``disableValidation``,
``commonName``, ``trustCerts``, ``trustCertsBundle``, ``clientAuth``, ``protocols``):

- ``disableValidation: true``: any certificate is accepted (``CERT_NONE``, no name check);
- otherwise the agent's certificate must chain to the ``trustCerts`` / ``trustCertsBundle``
  CAs (only those: the system CAs are not used then) or, when neither is given, to the
  system CAs, and must be valid for ``commonName`` (the name matched and sent as SNI);
- ``clientAuth``: the certificate (``certPath``, followed by ``intermediateCertsPath``) and
  key (``keyPath``) presented to an agent that verifies incoming connections.

Every file is checked when the configuration is read (``turnout check``), each problem reported
at the key that names the file; the namer's context is built once, when the namer is built.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ClientAuthConfig, ConsulTlsConfig

__all__ = ["TLS_VERSIONS", "TlsSetupError", "file_problem", "files_of", "ssl_context_of"]

#: the ``protocols`` turnout accepts (Linkerd passes the names to the JDK)
TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}

Loc = tuple[str | int, ...]


class TlsSetupError(ValueError):
    """A file of the ``tls`` block cannot be used: ``loc`` is the key naming it (relative
    to the ``tls`` object, e.g. ``("trustCerts", 0)``)."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    def where(self) -> str:
        out = "tls"
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out


def _shown(path: str) -> str:
    if os.path.isabs(path):
        return f"'{path}'"
    return f"'{path}' (relative to the working directory {os.getcwd()})"


def file_problem(path: str, what: str) -> str | None:
    """Why the ``what`` file at ``path`` cannot be read (None when it can)."""
    p = FsPath(path)
    try:
        if p.is_dir():
            return f"{_shown(path)} is a directory; give the path of the {what} file"
        with p.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        return f"{what} file {_shown(path)} does not exist; fix the path or create the file"
    except PermissionError:
        return (
            f"{what} file {_shown(path)} is not readable by this process (uid {os.getuid()}); "
            "make it readable (chmod/chown) or fix the path"
        )
    except OSError as e:
        return f"cannot read the {what} file {_shown(path)}: {e.strerror or e}"
    return None


def files_of(tls: ConsulTlsConfig) -> Iterator[tuple[Loc, str, str]]:
    """``(loc, path, what)`` of every file the context will read."""
    if not tls.disable_validation:
        for i, ca in enumerate(tls.trust_certs or ()):
            yield ("trustCerts", i), ca, "CA certificate"
        if tls.trust_certs_bundle:
            yield ("trustCertsBundle",), tls.trust_certs_bundle, "CA certificate bundle"
    auth = tls.client_auth
    if auth is not None:
        yield ("clientAuth", "certPath"), auth.cert_path, "client certificate"
        if auth.intermediate_certs_path:
            yield (
                ("clientAuth", "intermediateCertsPath"),
                auth.intermediate_certs_path,
                "intermediate certificates",
            )
        yield ("clientAuth", "keyPath"), auth.key_path, "client key"


def _no_password() -> bytes:
    # without a callback OpenSSL would prompt on the terminal for an encrypted key
    raise TlsSetupError(
        ("clientAuth", "keyPath"),
        "the client key is encrypted and turnout cannot decrypt it; give an unencrypted "
        "PEM key (PKCS#8, as Linkerd requires)",
    )


def _load_cas(context: ssl.SSLContext, cas: Sequence[tuple[Loc, str]]) -> None:
    for loc, path in cas:
        try:
            context.load_verify_locations(cafile=path)
        except (ssl.SSLError, ValueError) as e:
            raise TlsSetupError(
                loc,
                f"{_shown(path)} holds no usable CA certificate ({e}); give a PEM file of "
                "one or more CA certificates",
            ) from None
        except OSError as e:
            raise TlsSetupError(loc, f"cannot read {_shown(path)}: {e.strerror or e}") from None


def _load_client_cert(context: ssl.SSLContext, auth: ClientAuthConfig) -> None:
    where: Loc = ("clientAuth",)
    try:
        if auth.intermediate_certs_path:
            # Python loads a chain only from one file: the certificate, then intermediates
            chain = FsPath(auth.cert_path).read_bytes().rstrip(b"\n") + b"\n"
            chain += FsPath(auth.intermediate_certs_path).read_bytes()
            with tempfile.TemporaryDirectory(prefix="turnout-consul-") as tmp:
                combined = FsPath(tmp) / "chain.pem"
                combined.write_bytes(chain)
                context.load_cert_chain(combined, auth.key_path, password=_no_password)
        else:
            context.load_cert_chain(auth.cert_path, auth.key_path, password=_no_password)
    except TlsSetupError:
        raise
    except ssl.SSLError as e:
        raise TlsSetupError(
            where,
            f"cannot use the client certificate {_shown(auth.cert_path)} with the key "
            f"{_shown(auth.key_path)} ({e}); give PEM files, the key matching the certificate",
        ) from None
    except OSError as e:
        raise TlsSetupError(where, f"cannot read the client certificate or key: {e}") from None


def ssl_context_of(tls: ConsulTlsConfig) -> ssl.SSLContext:
    """The client context of a ``tls`` block (TlsSetupError naming the key of a file that
    cannot be used). The name to verify (``commonName``) is given per connection
    (``server_hostname``), not here."""
    for loc, path, what in files_of(tls):
        problem = file_problem(path, what)
        if problem is not None:
            raise TlsSetupError(loc, problem)
    if tls.disable_validation:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        cas: list[tuple[Loc, str]] = [
            (("trustCerts", i), ca) for i, ca in enumerate(tls.trust_certs or ())
        ]
        if tls.trust_certs_bundle:
            cas.append((("trustCertsBundle",), tls.trust_certs_bundle))
        if cas:  # only these CAs, as Linkerd (Finagle's TrustCredentials.CertCollection)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            _load_cas(context, cas)
        else:
            context = ssl.create_default_context()
    if tls.client_auth is not None:
        _load_client_cert(context, tls.client_auth)
    if tls.protocols:
        versions = sorted(TLS_VERSIONS[p] for p in tls.protocols)
        context.minimum_version, context.maximum_version = versions[0], versions[-1]
    return context
