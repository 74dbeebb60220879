"""Configuration of the ``io.l5d.zk`` dtab store (Linkerd's ``ZkConfig`` of
``namerd/storage/zk``): ``zkAddrs``, ``pathPrefix``, ``sessionTimeoutMs``, ``authInfo``,
``acls``. kazoo is imported only when the store is built."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from turnout.api import ConfigObject, DtabStoreConfig, NamerdContext, option

from .config import ZkAddrConfig

if TYPE_CHECKING:
    from .dtab_store import ZkDtabStore

_PERMS = re.compile(r"[crwda]+")
_PREFIX = re.compile(r"(/[^/]+)+")


class ZkAuthInfoConfig(ConfigObject):
    """Credentials sent to ZooKeeper on every connection (``addAuthInfo``)."""

    scheme: str = option(doc="The ZooKeeper auth scheme, e.g. digest.")
    auth: str = option(doc="The auth value, e.g. user:password for digest.")

    def check(self) -> Iterable[tuple[Any, str]]:
        if not self.scheme:
            yield "scheme", "give the ZooKeeper auth scheme (e.g. digest)"


class ZkAclConfig(ConfigObject):
    """One ACL entry set on every dtab znode created: ``{scheme, id, perms}``."""

    scheme: str = option(doc="The ACL scheme: world, digest, ip, auth, sasl...")
    id: str = option(doc="The ACL id (anyone for world; user:base64(sha1) for digest).")
    perms: str = option(doc='A subset of "crwda": create, read, write, delete, admin.')

    def check(self) -> Iterable[tuple[Any, str]]:
        if not _PERMS.fullmatch(self.perms) or len(set(self.perms)) != len(self.perms):
            yield (
                "perms",
                f"{self.perms!r} is not a valid permission string: use each of the letters "
                "c, r, w, d, a at most once (create, read, write, delete, admin)",
            )


def _anyone_unsafe() -> list[ZkAclConfig]:
    return [ZkAclConfig(scheme="world", id="anyone", perms="crwda")]


class ZkDtabStoreConfig(DtabStoreConfig):
    """Dtabs in ZooKeeper: each namespace is the persistent znode ``<pathPrefix>/<ns>``
    holding the dtab's text (UTF-8); its version is the znode's data version. Watched: a
    write through any namerd sharing the ensemble reaches every namerd's watchers."""

    kind = "io.l5d.zk"

    zk_addrs: list[ZkAddrConfig] = option(
        doc="The ZooKeeper ensemble: a list of {host, port} (port defaults to 2181)."
    )
    path_prefix: str = option("/dtabs", doc="The znode under which dtabs are stored.")
    session_timeout_ms: int = option(
        10_000, min=1000, max=600_000, doc="ZooKeeper session timeout asked for (ms)."
    )
    auth_info: ZkAuthInfoConfig | None = option(
        None, doc="{scheme, auth}: credentials added to every ZooKeeper session."
    )
    acls: list[ZkAclConfig] = option(
        default_factory=_anyone_unsafe,
        doc="ACLs set on every dtab znode created (default: world:anyone:crwda, as Linkerd).",
    )

    def check(self) -> Iterable[tuple[Any, str]]:
        if not self.zk_addrs:
            yield "zkAddrs", "give at least one ZooKeeper server ({host, port})"
        parts = self.path_prefix.split("/")[1:]
        if not _PREFIX.fullmatch(self.path_prefix) or any(p in (".", "..") for p in parts):
            yield (
                "pathPrefix",
                f"{self.path_prefix!r} is not a usable znode path: give an absolute path "
                "without a trailing slash, e.g. /dtabs",
            )
        if not self.acls:
            yield "acls", "give at least one ACL ({scheme, id, perms}), or leave acls out"

    @property
    def connect_string(self) -> str:
        return ",".join(addr.connect for addr in self.zk_addrs)

    def new_store(self, ctx: NamerdContext) -> ZkDtabStore:
        from .dtab_store import ZkDtabStore

        auth = None if self.auth_info is None else (self.auth_info.scheme, self.auth_info.auth)
        return ZkDtabStore(
            self.connect_string,
            path_prefix=self.path_prefix,
            session_timeout=self.session_timeout_ms / 1000,
            auth_info=auth,
            acls=[(a.scheme, a.id, a.perms) for a in self.acls],
        )


__all__ = ["ZkAclConfig", "ZkAuthInfoConfig", "ZkDtabStoreConfig"]
