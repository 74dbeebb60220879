"""What the ZooKeeper namers read: names (paths), ServerSet members and leader-group data.

Pure functions, no ZooKeeper: the namers (:mod:`turnout_namer_zk.namer`) call them on what
they read, and the unit tests call them directly.

**ServerSet members** (Twitter's format, written by ``com.twitter.common.zookeeper.ServerSet``
and by Finagle's announcer) are children of the serverset's znode named ``member_<seq>``, each
holding JSON like::

    {"serviceEndpoint": {"host": "10.0.0.1", "port": 8080},
     "additionalEndpoints": {"admin": {"host": "10.0.0.1", "port": 9990}},
     "status": "ALIVE", "shard": 0}

The rules follow Finagle's ``com.twitter.finagle.serverset2`` (``Entry.parseJson``,
``Endpoint.parseJson`` and ``Zk2Resolver``):

- only children whose name starts with ``member_`` are members (others, such as
  ``vector_`` weight nodes, are ignored);
- an endpoint is an object with a string ``host`` and an integer ``port``; a malformed
  endpoint is left out, the member's other endpoints still count;
- ``status`` must be exactly ``"ALIVE"``: a missing or other status (``STARTING``,
  ``STOPPING``, ``DEAD``, ``WARNING``, ``UNKNOWN``...) keeps the member out;
- when no member offers the requested endpoint, the name is negative (``AddrNeg``), as in
  Finagle, so the next dtab alternative is tried.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from turnout.api import Addr, AddrBound, Address, AddrNeg, Path

#: the prefix of ServerSet member nodes (Finagle's ``Entry.EndpointPrefix``)
MEMBER_PREFIX = "member_"
#: the only status that makes a member eligible (Finagle's ``Endpoint.Status.Alive``)
ALIVE = "ALIVE"

#: ZooKeeper appends a 10-digit, zero-padded counter to sequential nodes
_SEQUENCE = re.compile(r"(\d{10})$")


class BadData(ValueError):
    """A znode's data cannot be used (not JSON, not an object, no address...)."""


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


def _segment(label: bytes) -> str | None:
    """A path label as one znode name, or None when it cannot be one."""
    try:
        name = label.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        return None
    return name


def zk_path(path: Path) -> str | None:
    """``/a/b/c`` → the znode path ``"/a/b/c"``; None for the empty path or a label that
    cannot name a znode (``.``, ``..``, invalid UTF-8)."""
    if len(path) == 0:
        return None
    segments: list[str] = []
    for label in path:
        segment = _segment(label)
        if segment is None:
            return None
        segments.append(segment)
    return "/" + "/".join(segments)


def serverset_key(path: Path) -> tuple[str, str | None] | None:
    """``/discovery/prod/web:http`` → ``("/discovery/prod/web", "http")``; without a colon
    in the last label the endpoint is None (the ``serviceEndpoint``).

    The whole path names the serverset (Linkerd's ``ServersetNamer``: the last label is split
    at its first ``:``). None when the path cannot name one: empty, a bad label, or an empty
    znode name or endpoint name around the colon (``/web:``, ``/:http``).
    """
    if len(path) == 0:
        return None
    last = path[len(path) - 1]
    endpoint: str | None = None
    if b":" in last:
        name, _, ep = last.partition(b":")
        try:
            endpoint = ep.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not name or not endpoint:
            return None
        path = path.take(len(path) - 1) + Path(name)
    znode = zk_path(path)
    if znode is None:
        return None
    return znode, endpoint


def show_key(key: tuple[str, str | None]) -> str:
    """``("/a/web", "http")`` → ``"/a/web:http"`` (how a serverset appears in state and logs)."""
    znode, endpoint = key
    return znode if endpoint is None else f"{znode}:{endpoint}"


# ---------------------------------------------------------------------------------------------
# ServerSet members
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One parsed ServerSet member: its endpoints by name (None: ``serviceEndpoint``)."""

    endpoints: dict[str | None, tuple[str, int]] = field(default_factory=dict)
    status: str | None = None
    shard: int | None = None

    @property
    def alive(self) -> bool:
        return self.status == ALIVE

    def address(self, endpoint: str | None) -> Address | None:
        """The address of ``endpoint`` (None: the service endpoint) if the member is ALIVE and
        has it, else None."""
        if not self.alive:
            return None
        hostport = self.endpoints.get(endpoint)
        return None if hostport is None else Address(*hostport)


def _endpoint(value: object) -> tuple[str, int] | None:
    if not isinstance(value, dict):
        return None
    host, port = value.get("host"), value.get("port")
    if not isinstance(host, str) or not host:
        return None
    # an integer port, as Finagle requires (JSON true/false are not ports)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 65535:
        return None
    return host, port


def parse_member(data: bytes) -> Member:
    """Parse one member node's data; :class:`BadData` when it is not a JSON object.

    Malformed endpoints are left out of the member (see the module docstring)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadData(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadData(f"not a JSON object but {type(doc).__name__}")
    endpoints: dict[str | None, tuple[str, int]] = {}
    service = _endpoint(doc.get("serviceEndpoint"))
    if service is not None:
        endpoints[None] = service
    additional = doc.get("additionalEndpoints")
    if isinstance(additional, dict):
        for name, value in additional.items():
            hostport = _endpoint(value)
            if hostport is not None:
                endpoints[name] = hostport
    status = doc.get("status")
    shard = doc.get("shard")
    return Member(
        endpoints,
        status if isinstance(status, str) else None,
        shard if isinstance(shard, int) and not isinstance(shard, bool) else None,
    )


def is_member(child: str) -> bool:
    """Whether a child of a serverset znode is a member (``member_...``)."""
    return child.startswith(MEMBER_PREFIX)


def serverset_addr(members: Iterable[Member | None], endpoint: str | None) -> Addr:
    """The address set of ``endpoint`` over ``members`` (None entries: unreadable members):
    ALIVE members that have it; ``AddrNeg`` when there are none (Finagle)."""
    addresses: dict[tuple[str, int], Address] = {}
    for member in members:
        if member is None:
            continue
        address = member.address(endpoint)
        if address is not None:
            addresses.setdefault((address.host, address.port), address)
    if not addresses:
        return AddrNeg
    return AddrBound(addresses.values())


# ---------------------------------------------------------------------------------------------
# Leader groups
# ---------------------------------------------------------------------------------------------


def sequence_of(child: str) -> int | None:
    """The sequence number ZooKeeper appended to a sequential node's name, or None."""
    match = _SEQUENCE.search(child)
    return int(match.group(1)) if match else None


def leader_of(children: Iterable[str]) -> str | None:
    """The leader of a group: the child with the lowest sequence number (Twitter commons'
    ``CandidateImpl`` judge; also kazoo's ``Election`` and Curator's ``LeaderLatch``).
    Children without a sequence number are not candidates. None when there is none."""
    best: tuple[int, str] | None = None
    for child in children:
        seq = sequence_of(child)
        if seq is not None and (best is None or (seq, child) < best):
            best = (seq, child)
    return None if best is None else best[1]


def _hostport(text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as e:
        raise BadData(str(e)) from None


def parse_leader_data(data: bytes) -> list[Address]:
    """The address(es) a group leader published: ``host:port`` (several separated by commas
    or spaces, as Linkerd's ``InetSocketAddressUtil.parseHosts`` reads them), or a ServerSet
    member's JSON (its ``serviceEndpoint``). :class:`BadData` otherwise."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadData("not UTF-8 text") from None
    if text.startswith("{"):
        member = parse_member(text.encode())
        hostport = member.endpoints.get(None)
        if hostport is None:
            raise BadData("JSON without a valid serviceEndpoint")
        return [Address(*hostport)]
    items = [item for item in re.split(r"[\s,]+", text) if item]
    if not items:
        raise BadData("empty")
    return [_hostport(item) for item in items]
