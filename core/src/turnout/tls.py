"""TLS for turnout: one place that turns TLS options into :class:`ssl.SSLContext` objects.

Servers (``servers[].tls``, ``admin.tls``), clients (``client.tls``) and namer back-ends all
build their contexts here, and ``turnout check`` validates the same options with the same
code (:func:`check_server`, :func:`check_client`): a missing or unreadable file, a key that
does not match its certificate, a certificate that expired (or is not valid yet), an
intermediate that did not issue the certificate before it, an unknown protocol name or a cipher
string OpenSSL rejects are configuration errors, reported with the file and line of the option.
Asking for TLS never silently yields plain text.

Certificates are inspected with the ``cryptography`` package (validity dates, key match,
issuer signatures); :mod:`ssl` itself loads them into the contexts.

Rotation: :class:`FileWatcher` polls the certificate and key files (modification time, size,
inode) and rebuilds a context when they change; a new pair that does not load keeps the old
context (see ``docs/tls.md``).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .metrics import Counter

if TYPE_CHECKING:
    from cryptography import x509

    # the config classes' check() call into this module (imported lazily: cryptography is slow
    # to import); their types only, here
    from .config.model import ClientTlsConfig, LinkerConfig, TlsServerConfig

log = logging.getLogger("turnout.tls")

#: protocol names accepted in ``protocols`` (Linkerd's / the JDK's spelling)
PROTOCOL_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
#: what turnout's HTTP/1.1 servers and clients advertise with ALPN
ALPN_HTTP1 = ["http/1.1"]
#: how often :class:`FileWatcher` looks at certificate files (seconds)
WATCH_INTERVAL = 5.0

_VAR = re.compile(r"\{([^{}]+)\}")


class TlsError(ValueError):
    """A TLS option that cannot be used: ``key`` is the option (a YAML key, or the argument of
    :func:`client_ssl_context`) at fault; ``index`` its position when it is a list (``ca``)."""

    def __init__(self, key: str, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.index = index


def resolve(path: str) -> str:
    """A configured path as opened (``~`` expanded; relative paths from the working directory,
    as Linkerd did)."""
    return os.path.abspath(os.path.expanduser(path))


# ---------------------------------------------------------------------------------------------
# Inspecting files
# ---------------------------------------------------------------------------------------------


def _read(key: str, path: str) -> bytes:
    try:
        with open(resolve(path), "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TlsError(key, f"no such file: {path}") from None
    except IsADirectoryError:
        raise TlsError(key, f"{path} is a directory, not a PEM file") from None
    except OSError as e:
        raise TlsError(key, f"cannot read {path}: {e.strerror or e}") from None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def load_certs(key: str, path: str) -> list[x509.Certificate]:
    """The PEM certificates in ``path`` (at least one), or :class:`TlsError`."""
    # (cryptography is imported where certificates are read, not with this module: it holds
    # about 8 MB of a process's memory, which a linker without TLS does not need)
    from cryptography import x509

    data = _read(key, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise TlsError(key, f"{path} holds no PEM certificate")
    return certs


def _check_dates(key: str, path: str, cert: x509.Certificate, now: datetime.datetime) -> None:
    if cert.not_valid_after_utc < now:
        raise TlsError(
            key,
            f"the certificate {_subject(cert)} in {path} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
        )
    if cert.not_valid_before_utc > now:
        raise TlsError(
            key,
            f"the certificate {_subject(cert)} in {path} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC",
        )


def _load_key(key: str, path: str) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read(key, path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsError(key, f"{path}: encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise TlsError(
            key, f"{path} holds no usable PEM private key (PKCS#8 or PKCS#1): {e}"
        ) from None


def _public_der(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _check_issued(key: str, path: str, chain: list[x509.Certificate]) -> None:
    """Each certificate of ``chain`` must be signed by the next one."""
    from cryptography.exceptions import InvalidSignature

    for cert, issuer in itertools.pairwise(chain):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise TlsError(
                key,
                f"the chain does not verify: {_subject(cert)} is not issued by "
                f"{_subject(issuer)} (from {path})",
            ) from None


def check_key_pair(
    cert_key: str,
    cert_path: str,
    key_key: str,
    key_path: str,
    intermediates_key: str | None = None,
    intermediates_path: str | None = None,
    *,
    now: datetime.datetime | None = None,
) -> list[x509.Certificate]:
    """Check a certificate chain and its key: readable, in date, matching, each certificate
    issued by the next. Returns the chain (leaf first)."""
    now = now or datetime.datetime.now(datetime.UTC)
    chain = load_certs(cert_key, cert_path)
    for cert in chain:
        _check_dates(cert_key, cert_path, cert, now)
    if intermediates_path is not None and intermediates_key is not None:
        extra = load_certs(intermediates_key, intermediates_path)
        for cert in extra:
            _check_dates(intermediates_key, intermediates_path, cert, now)
        _check_issued(intermediates_key, intermediates_path, chain + extra)
        chain = chain + extra
    else:
        _check_issued(cert_key, cert_path, chain)
    private = _load_key(key_key, key_path)
    if _public_der(private.public_key()) != _public_der(chain[0].public_key()):
        raise TlsError(
            key_key,
            f"the key in {key_path} does not match the certificate in {cert_path} "
            f"({_subject(chain[0])})",
        )
    return chain


def check_ca(key: str, path: str, *, now: datetime.datetime | None = None) -> None:
    """A CA file: at least one certificate, and at least one of them in date."""
    now = now or datetime.datetime.now(datetime.UTC)
    certs = load_certs(key, path)
    valid = [c for c in certs if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    if not valid:
        if len(certs) == 1:
            _check_dates(key, path, certs[0], now)
        raise TlsError(key, f"every certificate in {path} is expired or not valid yet")


def versions(key: str, protocols: list[str] | None) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """``protocols`` as the (minimum, maximum) version; default TLSv1.2 to TLSv1.3."""
    if not protocols:
        return ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED
    found: list[ssl.TLSVersion] = []
    for name in protocols:
        v = PROTOCOL_VERSIONS.get(name)
        if v is None:
            raise TlsError(
                key,
                f"unknown TLS protocol {name!r}; known: {', '.join(PROTOCOL_VERSIONS)}",
            )
        found.append(v)
    return min(found), max(found)


def _set_versions(ctx: ssl.SSLContext, key: str, protocols: list[str] | None) -> None:
    lo, hi = versions(key, protocols)
    try:
        ctx.minimum_version = lo
        ctx.maximum_version = hi
    except (ValueError, ssl.SSLError) as e:
        raise TlsError(key, f"this OpenSSL cannot use {protocols}: {e}") from None


def _set_ciphers(ctx: ssl.SSLContext, ciphers: list[str] | None) -> None:
    if not ciphers:
        return
    spec = ":".join(ciphers)
    try:
        ctx.set_ciphers(spec)
    except ssl.SSLError:
        raise TlsError("ciphers", f"OpenSSL accepts none of the ciphers {spec!r}") from None


def _load_chain(
    ctx: ssl.SSLContext,
    keys: tuple[str, str, str],
    cert_path: str,
    key_path: str | None,
    intermediates_path: str | None,
) -> None:
    """``load_cert_chain``, with the intermediates appended to the certificate file. The key
    ``None``: it is in the certificate file. An encrypted key is an error (never prompted for
    on the terminal)."""

    def no_password() -> bytes:
        raise TlsError(
            keys[1],
            f"the key {key_path or cert_path} is encrypted and turnout cannot decrypt it; "
            "give an unencrypted PEM key (PKCS#8 or PKCS#1)",
        )

    key_file = resolve(key_path) if key_path is not None else None
    try:
        if intermediates_path is None:
            ctx.load_cert_chain(resolve(cert_path), key_file, password=no_password)
            return
        pem = _read(keys[0], cert_path).rstrip(b"\n") + b"\n" + _read(keys[2], intermediates_path)
        import tempfile  # (shutil, bz2, lzma: only for this)

        with tempfile.TemporaryDirectory(prefix="turnout-tls-") as tmp:
            combined = os.path.join(tmp, "chain.pem")
            with open(combined, "wb") as f:
                f.write(pem)
            ctx.load_cert_chain(combined, key_file, password=no_password)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            raise TlsError(
                keys[1],
                f"the key in {key_path} does not match the certificate in {cert_path}; give "
                "PEM files, the key matching the certificate",
            ) from None
        raise TlsError(
            keys[0],
            f"cannot load {cert_path} with {key_path}: {e}; give PEM files, the key matching "
            "the certificate",
        ) from None
    except OSError as e:
        raise TlsError(keys[0], f"cannot load {cert_path} with {key_path}: {e}") from None


def _load_ca(ctx: ssl.SSLContext, key: str, path: str, index: int | None = None) -> None:
    try:
        ctx.load_verify_locations(cafile=resolve(path))
    except (ssl.SSLError, ValueError) as e:
        raise TlsError(
            key,
            f"cannot load the CA certificates in {path}: it holds no usable CA certificate "
            f"({e}); give a PEM file of one or more CA certificates",
            index=index,
        ) from None
    except OSError as e:
        raise TlsError(
            key, f"cannot load the CA certificates in {path}: {e.strerror or e}", index=index
        ) from None


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

_SERVER_KEYS = ("certPath", "keyPath", "intermediateCertsPath")


def server_context(cfg: TlsServerConfig, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server context: the certificate chain and key, client certificates verified against
    ``caCertPath`` (required with ``requireClientAuth``, optional otherwise), the protocol
    versions and ciphers, ALPN ``alpn`` (``http/1.1`` by default). Raises :class:`TlsError`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_versions(ctx, "protocols", cfg.protocols)
    _set_ciphers(ctx, cfg.ciphers)
    _load_chain(ctx, _SERVER_KEYS, cfg.cert_path, cfg.key_path, cfg.intermediate_certs_path)
    if cfg.ca_cert_path is not None:
        _load_ca(ctx, "caCertPath", cfg.ca_cert_path)
        ctx.verify_mode = ssl.CERT_REQUIRED if cfg.require_client_auth else ssl.CERT_OPTIONAL
    elif cfg.require_client_auth:
        raise TlsError("requireClientAuth", "requireClientAuth needs caCertPath")
    ctx.set_alpn_protocols(ALPN_HTTP1 if alpn is None else alpn)
    return ctx


def load_chain_into(ctx: ssl.SSLContext, cfg: TlsServerConfig) -> None:
    """Load ``cfg``'s certificate chain and key into ``ctx`` again (rotation of a context
    that cannot be swapped, such as the admin server's)."""
    _load_chain(ctx, _SERVER_KEYS, cfg.cert_path, cfg.key_path, cfg.intermediate_certs_path)


def check_server(cfg: TlsServerConfig) -> Iterator[tuple[str, str]]:
    """Problems of a server's ``tls`` options, as ``(key, message)`` (empty when usable)."""
    try:
        versions("protocols", cfg.protocols)
        check_key_pair(
            "certPath",
            cfg.cert_path,
            "keyPath",
            cfg.key_path,
            "intermediateCertsPath",
            cfg.intermediate_certs_path,
        )
        if cfg.ca_cert_path is not None:
            check_ca("caCertPath", cfg.ca_cert_path)
        server_context(cfg)
    except TlsError as e:
        yield e.key, e.message


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------


class ClientTls:
    """How to open TLS to an endpoint: ``loop.create_connection(ssl=context,
    server_hostname=server_hostname)`` (:meth:`kwargs`, asked for each new connection).

    Made from a config (``cfg``), it follows its files: at most every ``WATCH_INTERVAL``
    seconds, :meth:`kwargs` compares the modification time, size and inode of the trusted CAs
    and the ``clientAuth`` certificate and key with the last look, and on a change builds a
    new context for the connections opened from then on (connections already open keep
    theirs). A new set of files that does not load keeps the old context and says why in the
    log; ``reloads`` and ``reload_failures`` count both."""

    def __init__(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        cfg: ClientTlsConfig | None = None,
        alpn: list[str] | None = None,
    ) -> None:
        self.context = context
        #: the ALPN protocols offered (None: http/1.1), kept for a context rebuilt on rotation
        self.alpn = alpn
        #: SNI and the name the certificate must carry (``commonName``); None: no SNI
        self.server_hostname = server_hostname
        self.cfg = cfg
        self.paths: list[str] = []
        if cfg is not None:
            self.paths = [path for _, path in _trust_files(cfg)]
            auth = _client_auth(cfg)
            if auth is not None:
                self.paths += [p for p in auth if p is not None]
        self.seen = _signature(self.paths)
        self.checked = time.monotonic()
        self.reloads = 0
        self.reload_failures = 0

    def kwargs(self) -> dict[str, Any]:
        if self.paths:
            self._follow_files()
        out: dict[str, Any] = {"ssl": self.context}
        if self.server_hostname is not None:
            out["server_hostname"] = self.server_hostname
        return out

    def _follow_files(self, interval: float | None = None) -> None:
        now = time.monotonic()
        if now - self.checked < (WATCH_INTERVAL if interval is None else interval):
            return
        self.checked = now
        seen = _signature(self.paths)
        if seen == self.seen or self.cfg is None:
            return
        self.seen = seen  # (a bad new pair is reported once, not at every connection)
        what = f"client tls ({self.server_hostname or 'no commonName'})"
        try:
            self.context = new_client_context(self.cfg, alpn=self.alpn)
        except (TlsError, ssl.SSLError, OSError) as e:
            self.reload_failures += 1
            CLIENT_RELOADS[1] += 1
            log.error("%s: the changed files do not load, keeping the old ones: %s", what, e)
            return
        self.reloads += 1
        CLIENT_RELOADS[0] += 1
        log.info("%s: loaded the changed certificate files (%s)", what, ", ".join(self.paths))


def render_common_name(template: str, captures: Mapping[str, str]) -> str:
    """``commonName`` with ``{var}`` replaced by the client prefix's captures (an unknown
    variable stays as written, so that validation fails rather than matching anything)."""
    return _VAR.sub(lambda m: captures.get(m.group(1), m.group(0)), template)


def _client_auth(cfg: ClientTlsConfig) -> tuple[str, str, str | None] | None:
    auth = cfg.client_auth
    if auth is None:
        return None
    unknown = sorted(set(auth) - {"certPath", "keyPath", "intermediateCertsPath"})
    if unknown:
        raise TlsError(
            "clientAuth",
            f"unknown key(s) {', '.join(unknown)}; allowed: certPath, keyPath, "
            "intermediateCertsPath",
        )
    if "certPath" not in auth or "keyPath" not in auth:
        raise TlsError("clientAuth", "clientAuth needs both certPath and keyPath")
    return auth["certPath"], auth["keyPath"], auth.get("intermediateCertsPath")


def _trust_files(cfg: ClientTlsConfig) -> list[tuple[str, str]]:
    files = [("trustCertsBundle", cfg.trust_certs_bundle)] if cfg.trust_certs_bundle else []
    files += [("trustCerts", p) for p in cfg.trust_certs or ()]
    return files


def client_ssl_context(
    *,
    ca: Sequence[str] = (),
    cert: str | None = None,
    key: str | None = None,
    intermediates: str | None = None,
    verify: bool = True,
    protocols: Sequence[str] | None = None,
    alpn: Sequence[str] | None = None,
) -> ssl.SSLContext:
    """A client :class:`ssl.SSLContext`: the one builder of the contexts turnout opens TLS
    with, to endpoints (``client.tls``) and to discovery back-ends (namers, announcers).

    :param ca: PEM files of the CAs to trust, and only those; none: the system's CAs.
    :param cert: PEM client certificate presented to servers that ask for one (mutual TLS).
    :param key: its PEM private key (None: in the ``cert`` file). An encrypted key is an
        error, never prompted for.
    :param intermediates: PEM intermediate certificates sent after ``cert``.
    :param verify: False accepts any server certificate, without checking its issuer or name
        (unsafe; ``ca`` is not read then).
    :param protocols: TLS versions to allow (``TLSv1`` ... ``TLSv1.3``); default 1.2 and 1.3.
    :param alpn: ALPN protocol names to offer (none by default).

    The name the server's certificate must carry is given per connection
    (``server_hostname=``), not here. Raises :class:`TlsError` whose ``key`` is the argument
    at fault (``"ca"`` with its ``index``, ``"cert"``, ``"key"``, ``"intermediates"``,
    ``"protocols"``).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _set_versions(ctx, "protocols", list(protocols) if protocols is not None else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        for i, path in enumerate(ca):
            _load_ca(ctx, "ca", path, i)
        if not ca:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None:
        _load_chain(ctx, ("cert", "key", "intermediates"), cert, key, intermediates)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def new_client_context(cfg: ClientTlsConfig, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context for ``cfg`` (which must be enabled). Raises :class:`TlsError` naming
    the option at fault."""
    trust = _trust_files(cfg)
    auth = _client_auth(cfg)
    try:
        return client_ssl_context(
            ca=[path for _, path in trust],
            cert=auth[0] if auth is not None else None,
            key=auth[1] if auth is not None else None,
            intermediates=auth[2] if auth is not None else None,
            verify=not cfg.disable_validation,
            protocols=cfg.protocols,
            alpn=ALPN_HTTP1 if alpn is None else alpn,
        )
    except TlsError as e:
        if e.key == "ca" and e.index is not None:
            raise TlsError(trust[e.index][0], e.message) from None
        if e.key in ("cert", "key", "intermediates"):
            raise TlsError("clientAuth", e.message) from None
        raise


def check_client(cfg: ClientTlsConfig) -> Iterator[tuple[str, str]]:
    """Problems of a client's ``tls`` options, as ``(key, message)``."""
    if not cfg.enabled:
        return
    try:
        versions("protocols", cfg.protocols)
        if cfg.disable_validation and cfg.client_auth is not None:
            raise TlsError("disableValidation", "disableValidation is incompatible with clientAuth")
        if not cfg.disable_validation and not cfg.common_name:
            raise TlsError(
                "commonName",
                "commonName is required (the name the endpoints' certificates must carry) "
                "unless disableValidation is true",
            )
        for key, path in _trust_files(cfg):
            check_ca(key, path)
        auth = _client_auth(cfg)
        if auth is not None:
            check_key_pair("clientAuth", auth[0], "clientAuth", auth[1], "clientAuth", auth[2])
        new_client_context(cfg)
    except TlsError as e:
        yield e.key, e.message


#: client contexts reloaded, and changed files that did not load, in this process (exported
#: as ``tls/client/reloads`` and ``tls/client/reload_failures`` by the linker)
CLIENT_RELOADS = [0, 0]

#: client contexts by (config object identity, rendered commonName): one context per client
#: configuration, shared by all its clients and endpoints (the config object is kept alive by
#: the entry, so its id is not reused)
_client_cache: dict[tuple[int, str | None, tuple[str, ...] | None], tuple[Any, ClientTls]] = {}


def client_tls(
    cfg: ClientTlsConfig | None,
    captures: Mapping[str, str],
    *,
    alpn: Sequence[str] | None = None,
) -> ClientTls | None:
    """The TLS of one client (None: plain text, ``tls`` absent or ``enabled: false``).
    ``alpn``: the protocols offered (default ``http/1.1``; the h2 router offers ``h2``)."""
    if cfg is None or not cfg.enabled:
        return None
    name = render_common_name(cfg.common_name, captures) if cfg.common_name else None
    protocols = tuple(alpn) if alpn is not None else None
    key = (id(cfg), name, protocols)
    hit = _client_cache.get(key)
    if hit is not None:
        return hit[1]
    offered = list(protocols) if protocols is not None else None
    made = ClientTls(new_client_context(cfg, alpn=offered), name, cfg, alpn=offered)
    if len(_client_cache) > 10_000:
        _client_cache.clear()
    _client_cache[key] = (cfg, made)
    return made


def insecure_warnings(config: LinkerConfig) -> list[str]:
    """Loud warnings about TLS options that weaken security on purpose (``disableValidation``);
    :meth:`turnout.config.LinkerConfig.insecure_tls_warnings`."""
    return config.insecure_tls_warnings()


# ---------------------------------------------------------------------------------------------
# Rotation
# ---------------------------------------------------------------------------------------------


def _signature(paths: Iterable[str]) -> tuple[tuple[float, int, int] | None, ...]:
    out: list[tuple[float, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(resolve(p))
            out.append((st.st_mtime, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class FileWatcher:
    """Rebuild something when files change: every ``interval`` seconds, the files'
    modification time, size and inode are compared with the last look; on a change
    ``build()`` runs (it raises :class:`TlsError` or :class:`ssl.SSLError` for a bad new
    pair, which is logged and counted in ``failures`` while the old value stays in use) and
    ``install(new)`` takes the result (counted in ``reloads``)."""

    def __init__(
        self,
        what: str,
        paths: list[str],
        build: Callable[[], Any],
        install: Callable[[Any], None],
        reloads: Counter,
        failures: Counter,
        interval: float = WATCH_INTERVAL,
        also: Sequence[str] = (),
    ) -> None:
        self.what = what
        #: the certificate, key and (optional) intermediates, checked as a pair on a change
        self.paths = paths
        #: every file watched: the pair and ``also`` (a CA file, rebuilt with it)
        self.watched = [*paths, *also]
        self.build = build
        self.install = install
        self.reloads = reloads
        self.failures = failures
        self.interval = interval
        self.seen = _signature(self.watched)
        self._failed_at: tuple[tuple[float, int, int] | None, ...] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.poll()

    def poll(self) -> bool:
        """Look at the files once; True when a new value was installed."""
        now = _signature(self.watched)
        if now == self.seen or now == self._failed_at:
            return False
        try:
            if any(s is None for s in now):
                missing = [p for p, s in zip(self.watched, now, strict=True) if s is None]
                raise TlsError("", f"cannot read {', '.join(missing)}")
            extra = self.paths[2] if len(self.paths) > 2 else None
            check_key_pair("", self.paths[0], "", self.paths[1], "", extra)
            new = self.build()
        except (TlsError, ssl.SSLError, OSError) as e:
            self._failed_at = now
            self.failures.value += 1
            log.error("%s: new certificate not loaded, keeping the old one: %s", self.what, e)
            return False
        self.seen = now
        self._failed_at = None
        self.install(new)
        self.reloads.value += 1
        log.info("%s: loaded the new certificate from %s", self.what, self.paths[0])
        return True
