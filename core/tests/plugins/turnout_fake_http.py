"""A stand-in protocol plugin for tests: ``protocol: http`` without the real HTTP plugin.

It registers a router config (kind ``http``, default port 4140) and an identifier family of
its own with one kind, which is all that configuration loading needs. It builds nothing, so
it can only be used by code that does not start routers (``check``, ``dtab``).

In-process: ``load_plugins(autoload=False, extra=[turnout_fake_http])``. In a subprocess:
put this directory on ``PYTHONPATH`` and set ``TURNOUT_PLUGIN_MODULES=turnout_fake_http``.
"""

from __future__ import annotations

import turnout
from turnout.config import IdentifierConfig, RouterConfig, option


class FakeHttpIdentifierConfig(IdentifierConfig):
    """Base of the fake protocol's identifiers (the family first-party hints know)."""

    family = "http identifier"
    default_kind = "io.l5d.header.token"


class HeaderTokenIdentifierConfig(FakeHttpIdentifierConfig):
    kind = "io.l5d.header.token"
    header: str = option("Host", doc="Header whose value names the service.")


class FakeHttpRouterConfig(RouterConfig):
    kind = "http"
    default_port = 4140
    identifier: FakeHttpIdentifierConfig | list[FakeHttpIdentifierConfig] | None = option(
        None, doc="Identifier, or identifiers tried in order."
    )


@turnout.hookimpl
def turnout_register_protocols():
    return [FakeHttpRouterConfig]


@turnout.hookimpl
def turnout_register_identifiers():
    return [HeaderTokenIdentifierConfig]


@turnout.hookimpl
def turnout_build_info():
    return "data path: fake (for the CLI tests)"
