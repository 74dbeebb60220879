"""The pure parts of the namer: path labels → SRV names, DNS answers → weighted addresses.

No I/O here, so that every rule is unit-tested on its own:

- :func:`srv_name`: the first path label is the SRV record's name. A name ending in ``.`` is
  absolute; any other name is relative to ``origin`` (the DNS root unless the ``domain``
  option is set), as Linkerd's ``Name.fromString(label, origin)``.
- :func:`srv_records` / :func:`additional_hosts`: the SRV records of an answer (a target of
  ``.`` means "no service here", RFC 2782, and is dropped) and the A/AAAA records of their
  targets that the server put in the additional section.
- :func:`priority_groups` / :func:`group_addresses`: RFC 2782 clients use the records of the
  lowest priority value; the namer uses the first group (lowest priority first) in which at
  least one target resolves. Within a group, SRV weights become endpoint weights
  (:data:`turnout.api.WEIGHT_KEY`); a target with several addresses shares its
  weight among them equally; when every weight of the group is 0, all count as 1 (RFC 2782:
  weight 0 only means "rarely chosen" next to records with a positive weight).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
from turnout.api import WEIGHT_KEY, Address


@dataclass(frozen=True)
class Srv:
    """One SRV record: where (``target:port``), in which group (``priority``, lower first)
    and with which share of that group's traffic (``weight``)."""

    priority: int
    weight: int
    port: int
    target: dns.name.Name


def srv_name(label: str | bytes, origin: dns.name.Name = dns.name.root) -> dns.name.Name | None:
    """The DNS name a path label stands for, or None when it is not a valid name (the
    lookup is then ``Neg``). ``_http._tcp.web.example.org`` and ``..example.org.`` are
    absolute; ``web`` is ``web.<origin>``."""
    if isinstance(label, bytes):
        try:
            label = label.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not label or label == ".":
        return None
    try:
        name = dns.name.from_text(label, origin=origin)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None
    if not name.is_absolute() or name == dns.name.root:
        return None
    return name


def srv_records(rrset: Iterable[object] | None) -> list[Srv]:
    """The SRV records of an answer's RRset (None: no records), without ``.`` targets."""
    out = []
    for rdata in rrset or ():
        if getattr(rdata, "rdtype", None) != dns.rdatatype.SRV:
            continue
        srv: Any = rdata  # an SRV rdata (checked above): dnspython types rdata by rdtype only
        target = srv.target
        if target == dns.name.root:
            continue  # RFC 2782: "the service is decidedly not available at this domain"
        out.append(Srv(int(srv.priority), int(srv.weight), int(srv.port), target))
    return out


def additional_hosts(response: dns.message.Message) -> dict[dns.name.Name, list[str]]:
    """Addresses per name from the additional section (IPv4 first, then IPv6)."""
    hosts: dict[dns.name.Name, dict[str, None]] = {}
    for family in (dns.rdatatype.A, dns.rdatatype.AAAA):
        for rrset in response.additional:
            if rrset.rdtype != family or rrset.rdclass != dns.rdataclass.IN:
                continue
            seen = hosts.setdefault(rrset.name, {})
            for rdata in rrset:
                seen.setdefault(str(rdata.address), None)
    return {name: list(addrs) for name, addrs in hosts.items() if addrs}


def priority_groups(records: Iterable[Srv]) -> list[list[Srv]]:
    """The records grouped by priority, lowest priority value first."""
    groups: dict[int, list[Srv]] = {}
    for record in records:
        groups.setdefault(record.priority, []).append(record)
    return [groups[p] for p in sorted(groups)]


def group_addresses(
    group: Sequence[Srv], hosts: Mapping[dns.name.Name, Sequence[str]]
) -> list[Address]:
    """The weighted endpoints of one priority group; targets absent from ``hosts`` (or with
    no address) are left out. Two records reaching the same ``ip:port`` add their weights."""
    all_zero = all(r.weight == 0 for r in group)
    weights: dict[tuple[str, int], float] = {}
    for record in group:
        ips = hosts.get(record.target) or ()
        if not ips:
            continue
        share = (1.0 if all_zero else float(record.weight)) / len(ips)
        for ip in ips:
            key = (ip, record.port)
            weights[key] = weights.get(key, 0.0) + share
    return [Address(ip, port, {WEIGHT_KEY: w}) for (ip, port), w in weights.items()]


def missing_targets(
    group: Iterable[Srv], hosts: Mapping[dns.name.Name, Sequence[str]]
) -> list[dns.name.Name]:
    """Targets of ``group`` whose addresses are not known yet, each once, in order."""
    out: dict[dns.name.Name, None] = {}
    for record in group:
        if record.target not in hosts:
            out.setdefault(record.target, None)
    return list(out)
