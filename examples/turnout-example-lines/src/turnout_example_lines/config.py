"""Configuration of ``protocol: lines`` (a ``routers:`` entry)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._turnout import RouterConfig, option

if TYPE_CHECKING:
    from ._turnout import BuildContext


class LinesRouterConfig(RouterConfig):
    """A line-based TCP router: a client sends ``SERVICE PAYLOAD`` lines; each is routed as
    ``<dstPrefix>/SERVICE``, ``PAYLOAD`` goes to an endpoint, and its one-line answer comes
    back (``OK ...``, ``ERR ...`` or ``RETRY ...``)."""

    kind = "lines"
    default_port = 4150

    max_line_bytes: int = option(
        65536, min=16, doc="Longest request or answer line; a longer request is answered ERR 400."
    )
    connect_timeout_ms: int = option(
        3000, min=1, doc="Longest wait for a connection to an endpoint (then requeued or ERR 502)."
    )

    def check(self) -> Iterable[tuple[tuple[str | int, ...], str]]:
        for i, server in enumerate(self.servers):
            if server.tls is not None:
                yield ("servers", i, "tls"), "protocol lines does not terminate TLS"

    def new_router(self, ctx: BuildContext) -> Any:
        from .runtime import LinesRouter  # (imported only when a lines router is built)

        return LinesRouter(self, ctx)
