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
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

from turnout.api import TlsError, client_ssl_context

if TYPE_CHECKING:
    from .config import ConsulTlsConfig

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


def ssl_context_of(tls: ConsulTlsConfig) -> ssl.SSLContext:
    """The client context of a ``tls`` block (TlsSetupError naming the key of a file that
    cannot be used), built by turnout's shared :func:`~turnout.api.client_ssl_context`. The
    name to verify (``commonName``) is given per connection (``server_hostname``), not here."""
    for loc, path, what in files_of(tls):
        problem = file_problem(path, what)
        if problem is not None:
            raise TlsSetupError(loc, problem)
    cas: list[tuple[Loc, str]] = [
        (("trustCerts", i), ca) for i, ca in enumerate(tls.trust_certs or ())
    ]
    if tls.trust_certs_bundle:
        cas.append((("trustCertsBundle",), tls.trust_certs_bundle))
    auth = tls.client_auth
    try:
        # only these CAs when any is given, as Linkerd (Finagle's TrustCredentials.CertCollection)
        return client_ssl_context(
            ca=[path for _, path in cas],
            cert=auth.cert_path if auth is not None else None,
            key=auth.key_path if auth is not None else None,
            intermediates=auth.intermediate_certs_path if auth is not None else None,
            verify=not tls.disable_validation,
            protocols=tls.protocols or None,
        )
    except TlsError as e:
        if e.key == "ca" and e.index is not None:
            raise TlsSetupError(cas[e.index][0], e.message) from None
        raise TlsSetupError(_AT.get(e.key, ("clientAuth",)), e.message) from None


#: where the keys of the ``tls`` block name the arguments of client_ssl_context
_AT: dict[str, Loc] = {
    "cert": ("clientAuth", "certPath"),
    "key": ("clientAuth", "keyPath"),
    "intermediates": ("clientAuth", "intermediateCertsPath"),
    "protocols": ("protocols",),
}
