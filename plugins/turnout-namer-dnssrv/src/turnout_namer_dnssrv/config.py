"""``kind: io.l5d.dnssrv``: Linkerd's DNS SRV namer configuration, plus turnout extensions.

Imported at every turnout start (through the plugin module), so it does not import
dnspython: the namer module does, when a namer is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from turnout.api import Address, BuildContext, NamerConfig, Path, option

if TYPE_CHECKING:
    from .namer import DnsSrvNamer

DEFAULT_DNS_PORT = 53


def parse_dns_host(text: str) -> tuple[str, int]:
    """A ``dnsHosts`` entry → ``(host, port)``: ``ns1.example.org`` and ``10.0.0.2`` (port
    53, as Linkerd), ``10.0.0.2:5353``, ``::1`` and ``[::1]:5353``. ValueError otherwise."""
    address = Address.parse(text.strip(), default_port=DEFAULT_DNS_PORT)
    return address.host, address.port


class DnsSrvNamerConfig(NamerConfig):
    """Service discovery from DNS SRV records: ``/#/io.l5d.dnssrv/<srv name>`` binds to the
    targets of the SRV records of ``<srv name>`` (``_http._tcp.web.example.org``), looked
    up again every ``refreshIntervalSeconds``. NXDOMAIN or no SRV record: ``Neg``. When the
    DNS servers fail, the last good set keeps serving. Experimental, as in Linkerd."""

    kind = "io.l5d.dnssrv"
    experimental_required = True

    refresh_interval_seconds: float = option(
        5,
        min=0.05,
        max=86_400,
        doc="How often each SRV name in use is looked up again (fractions: turnout extension).",
    )
    dns_hosts: list[str] = option(
        default_factory=list,
        doc="DNS servers to query, each 'host' (port 53) or 'host:port' ('[ipv6]:port'). "
        "Empty: the nameservers of /etc/resolv.conf.",
    )
    domain: str | None = option(
        None,
        doc="Names not ending in '.' are relative to this domain (turnout extension; "
        "default: the DNS root, so every name is absolute).",
    )
    timeout_ms: int = option(
        5000,
        min=10,
        max=60_000,
        doc="How long one DNS query may take, every server and retry included (turnout extension).",
    )
    resolve_inet: bool = option(
        False,
        doc="Also resolve /$/inet host names with these DNS servers, again when their TTL "
        "runs out (turnout extension).",
    )

    def check(self) -> Iterable[tuple[tuple[str | int, ...] | str, str]]:
        for i, entry in enumerate(self.dns_hosts):
            try:
                parse_dns_host(entry)
            except ValueError as e:
                yield ("dnsHosts", i), str(e)
        if self.domain is not None:
            from .srv import srv_name  # dnspython: only when the option is used

            if srv_name(self.domain) is None:
                yield "domain", f"not a valid domain name: {self.domain!r}"

    def new_namer(self, ctx: BuildContext) -> DnsSrvNamer:
        from .namer import DnsSrvNamer

        return DnsSrvNamer.from_config(
            self,
            Path.of("#") + self.effective_prefix,
            metrics=ctx.metrics,
        )
