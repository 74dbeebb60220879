"""Every name this plugin takes from turnout, in one place: all from the public plugin API
(:mod:`turnout.api`)."""

from __future__ import annotations

from turnout.api import (
    Address,
    BuildContext,
    Call,
    Client,
    Dtab,
    Endpoint,
    Path,
    RequestStack,
    RouterConfig,
    ServerConfig,
    ServerStats,
    core_router,
    hookimpl,
    option,
    tracing_of,
)

__all__ = [
    "Address",
    "BuildContext",
    "Call",
    "Client",
    "Dtab",
    "Endpoint",
    "Path",
    "RequestStack",
    "RouterConfig",
    "ServerConfig",
    "ServerStats",
    "core_router",
    "hookimpl",
    "option",
    "tracing_of",
]
