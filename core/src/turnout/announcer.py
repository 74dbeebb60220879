"""Announcers (``router.announcers``): register a router's servers in service discovery.

A server lists names to announce (``servers[].announce: [/#/io.l5d.serversets/discovery/web]``).
Each announcer answers the names under ``/#/<prefix>`` (its ``prefix``, ``/<kind>`` by
default); every announcer of the router whose prefix matches gets the name *without* that
prefix (``/discovery/web``) and the server's address, as Linkerd's ``Main.announce`` does. A
server bound to ``0.0.0.0`` (or ``::``) is announced at each non-loopback address of the
host's interfaces that are up (Linkerd's rule), one announcement per address.

The linker announces once the servers listen, and withdraws every announcement as soon as
draining starts (before in-flight requests drain: the server leaves discovery while it still
answers), then closes the announcers after the routers.

An announcer plugin implements :class:`Announcer`: ``announce`` must return at once with an
:class:`Announcement` (registering, and registering again after a lost session, is the
announcer's own background work); ``withdraw`` removes it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .naming import Path

log = logging.getLogger("turnout.announcer")

#: the ``/#`` of configured namer (and announcer) prefixes
CONFIGURED = Path.of("#")
ANY_ADDRESSES = ("0.0.0.0", "::", "")


class Announcement:
    """One announced (address, name); :meth:`withdraw` removes it (idempotent)."""

    async def withdraw(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """What ``/admin/announcer.json`` shows about it."""
        return {}


class Announcer:
    """The runtime of one ``router.announcers`` entry (built by ``new_announcer``)."""

    #: what the logs call it (Linkerd's ``scheme``: ``zk-serversets``)
    scheme: str = "announcer"

    async def announce(self, host: str, port: int, name: Path) -> Announcement:
        """Start announcing ``host:port`` as ``name`` (the path after the announcer's prefix).
        Returns at once; registering is the announcer's background work."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the announcer's connections (after its announcements were withdrawn)."""


@dataclass
class ActiveAnnouncement:
    router: str
    name: Path
    host: str
    port: int
    scheme: str
    announcement: Announcement
    withdrawn: bool = field(default=False)


def matching(announcers: Iterable[tuple[Path, Any]], name: Path) -> list[tuple[Path, Any]]:
    """The announcers (``(/#/<prefix>, announcer)``) whose prefix ``name`` starts with."""
    return [(pfx, a) for pfx, a in announcers if name.starts_with(pfx)]


def announced_hosts(ip: str) -> list[str]:
    """The hosts a server bound to ``ip`` is announced at: ``ip`` itself, or for ``0.0.0.0``
    and ``::`` every non-loopback address of the interfaces that are up (IPv4 first)."""
    if ip not in ANY_ADDRESSES:
        return [ip]
    hosts = _interface_addresses()
    v4 = [h for h in hosts if ":" not in h]
    if ip == "0.0.0.0":
        hosts = v4
    if not hosts:
        log.warning("no non-loopback address found for %s; announcing 127.0.0.1", ip or "*")
        return ["127.0.0.1"]
    return sorted(set(v4)) + sorted({h for h in hosts if ":" in h})


def _interface_addresses() -> list[str]:
    """Non-loopback addresses of the interfaces that are up (Linux: SIOCGIFADDR per
    interface; elsewhere, what the host name resolves to)."""
    found: list[str] = []
    try:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, ifname in socket.if_nameindex():
                packed = struct.pack("256s", ifname.encode()[:15])
                try:
                    raw_flags = fcntl.ioctl(s.fileno(), 0x8913, packed)  # SIOCGIFFLAGS
                    (flags,) = struct.unpack("H", raw_flags[16:18])
                    if not flags & 0x1:  # IFF_UP
                        continue
                    raw = fcntl.ioctl(s.fileno(), 0x8915, packed)  # SIOCGIFADDR
                except OSError:
                    continue
                found.append(socket.inet_ntoa(raw[20:24]))
    except (ImportError, OSError, AttributeError):
        pass
    if not found:
        with contextlib.suppress(OSError):
            for info in socket.getaddrinfo(socket.gethostname(), None):
                found.append(str(info[4][0]))
    out = []
    for host in found:
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            continue
        if not addr.is_loopback and not addr.is_unspecified and host not in out:
            out.append(host)
    return out
