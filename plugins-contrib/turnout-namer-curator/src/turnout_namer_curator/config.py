"""Configuration of ``io.l5d.curator`` (Linkerd's ``CuratorConfig``: ``zkAddrs``, ``basePath``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from turnout.api import BuildContext, NamerConfig, Path, option
from turnout_namer_zk.config import ZkAddrConfig

if TYPE_CHECKING:  # kazoo is imported only when a namer is built
    from .namer import CuratorNamer


def normalize_base_path(text: str) -> str:
    """``/curator/`` → ``/curator``; ``/`` stays ``/``. :class:`ValueError` for a path that
    is not an absolute znode path (Curator's ``ZKPaths`` would refuse it too)."""
    if not text.startswith("/"):
        raise ValueError(f"basePath {text!r} must be an absolute znode path, like /curator")
    stripped = text.rstrip("/")
    if not stripped:
        return "/"
    for segment in stripped[1:].split("/"):
        if segment in ("", ".", "..") or "\0" in segment:
            raise ValueError(
                f"basePath {text!r}: {segment or 'an empty name'!r} cannot be a znode name"
            )
    return stripped


class CuratorConfig(NamerConfig):
    """Apache Curator service discovery: ``/#/io.l5d.curator/<serviceName>[/<residual>]``
    binds to the instances Curator's ``ServiceDiscovery`` registered under
    ``<basePath>/<serviceName>``: each child znode's ``ServiceInstance`` JSON gives
    ``address`` and ``sslPort`` (when set) or ``port``. Watched: instances registering,
    leaving or changing take effect at once. Experimental, as in Linkerd."""

    kind = "io.l5d.curator"
    experimental_required = True

    zk_addrs: list[ZkAddrConfig] = option(
        doc="The ZooKeeper ensemble: a list of {host, port} (port defaults to 2181)."
    )
    base_path: str = option(
        "/", doc="The znode under which Curator registers services (ServiceDiscovery basePath)."
    )
    session_timeout_ms: int = option(
        10_000,
        min=1000,
        max=60_000,
        doc="ZooKeeper session timeout asked for (turnout extension; the server bounds it).",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.zk_addrs:
            yield "zkAddrs", "give at least one ZooKeeper server ({host, port})"
        try:
            normalize_base_path(self.base_path)
        except ValueError as e:
            yield "basePath", str(e)

    @property
    def connect_string(self) -> str:
        """The kazoo connect string of ``zkAddrs``: ``"h1:2181,h2:2181"``."""
        return ",".join(addr.connect for addr in self.zk_addrs)

    def new_namer(self, ctx: BuildContext) -> CuratorNamer:
        from .namer import CuratorNamer

        return CuratorNamer(
            Path.of("#") + self.effective_prefix,
            self.connect_string,
            normalize_base_path(self.base_path),
            session_timeout=self.session_timeout_ms / 1000,
            metrics=ctx.metrics,
        )
