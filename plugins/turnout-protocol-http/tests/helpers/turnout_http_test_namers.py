"""Namers for the HTTP end-to-end tests, loaded into turnout with
``TURNOUT_PLUGIN_MODULES=turnout_http_test_namers`` (this directory on ``PYTHONPATH``).

- ``test.pending``: every lookup stays ``Activity.pending()`` forever (binding timeouts).
- ``test.pendingAddr``: every name binds, but its address set stays pending.
"""

from __future__ import annotations

from typing import Any

import turnout
from turnout.config import NamerConfig
from turnout.naming import Activity, Leaf, NameBound, Namer, Path, Var
from turnout.naming.addr import AddrPending


class PendingNamer(Namer):
    def lookup(self, path: Path) -> Any:
        return Activity.pending()


class PendingAddrNamer(Namer):
    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.addr: Any = Var(AddrPending)

    def lookup(self, path: Path) -> Any:
        if not len(path):
            return Activity.pending()
        return Activity.of(Leaf(NameBound(self.prefix + path.take(1), self.addr, path.drop(1))))


class PendingNamerConfig(NamerConfig):
    """Lookups never complete."""

    kind = "test.pending"

    def new_namer(self, ctx: Any) -> Namer:
        return PendingNamer()


class PendingAddrNamerConfig(NamerConfig):
    """Names bind to an address set that never leaves pending."""

    kind = "test.pendingAddr"

    def new_namer(self, ctx: Any) -> Namer:
        return PendingAddrNamer(Path.of("#") + self.effective_prefix)


@turnout.hookimpl
def turnout_register_namers() -> list[type[NamerConfig]]:
    return [PendingNamerConfig, PendingAddrNamerConfig]
