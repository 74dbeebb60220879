"""A plugin module registering a dtab store and an interface kind, as a pip-installed plugin
would (loaded by the tests through TURNOUT_PLUGIN_MODULES)."""

from __future__ import annotations

import turnout
from turnout.api import DtabStore, DtabStoreConfig, NamerdContext, option
from turnout.namerd import InMemoryDtabStore


class ExampleStoreConfig(DtabStoreConfig):
    kind = "com.example.store"
    greeting: str = option("hello", doc="An option, to show it is validated.")

    def new_store(self, ctx: NamerdContext) -> DtabStore:
        return InMemoryDtabStore()


@turnout.hookimpl
def turnout_register_dtab_stores() -> list[type[DtabStoreConfig]]:
    return [ExampleStoreConfig]
