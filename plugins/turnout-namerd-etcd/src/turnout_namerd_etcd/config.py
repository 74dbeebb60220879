"""``io.l5d.etcd``'s configuration, imported by every turnout process that loads the plugin:
the store (and aiohttp) is imported when a namerd builds it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from turnout.api import (
    BackoffConfig,
    ClientTlsConfig,
    DtabStoreConfig,
    NamerdContext,
    Path,
    client_tls,
    option,
)

if TYPE_CHECKING:
    from .store import EtcdDtabStore


class EtcdDtabStoreConfig(DtabStoreConfig):
    """Dtabs in etcd (its v3 API): one key per namespace under ``pathPrefix``, versioned by
    the key's mod revision, written in transactions (compare-and-set), followed with watch
    streams."""

    kind = "io.l5d.etcd"
    host: str = option("localhost", doc="etcd host (a member's client address).")
    port: int = option(2379, min=1, max=65535, doc="etcd client port.")
    path_prefix: Path = option(
        default_factory=lambda: Path.read("/namerd/dtabs"),
        doc="The key prefix under which each namespace is a key (/namerd/dtabs/default).",
    )
    tls: ClientTlsConfig | None = option(
        None,
        doc="Talk HTTPS to etcd: commonName (required unless disableValidation), "
        "trustCertsBundle, trustCerts, clientAuth {certPath, keyPath} (etcd's "
        "--client-cert-auth), protocols.",
    )
    backoff: BackoffConfig | None = option(
        None,
        doc="Delays between a failed watch's retries: {kind: constant, ms} or {kind: jittered, "
        "minMs, maxMs}; default: jittered from 1 ms to 1 min.",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.host:
            yield "host", "must not be empty"
        if len(self.path_prefix) == 0:
            yield "pathPrefix", "must not be empty (the default is /namerd/dtabs)"

    def new_store(self, ctx: NamerdContext) -> EtcdDtabStore:
        from .store import EtcdDtabStore

        tls = client_tls(self.tls, {}) if self.tls is not None else None
        scheme = "https" if tls is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return EtcdDtabStore(
            f"{scheme}://{host}:{self.port}",
            self.path_prefix.show,
            tls=tls.kwargs if tls is not None else None,
            backoff=self.backoff.new_backoff() if self.backoff is not None else None,
        )
