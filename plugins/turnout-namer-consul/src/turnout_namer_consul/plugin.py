"""The plugin module named by the ``turnout`` entry point: registers ``io.l5d.consul`` (the
namer, the announcer and namerd's dtab store).

Cheap to import: the namer, python-consul2 and aiohttp are imported only when a
configuration uses the kind.
"""

from __future__ import annotations

import turnout
from turnout.api import DtabStoreConfig

from .config import ConsulAnnouncerConfig, ConsulNamerConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[ConsulNamerConfig]]:
    return [ConsulNamerConfig]


@turnout.hookimpl
def turnout_register_announcers() -> list[type[ConsulAnnouncerConfig]]:
    return [ConsulAnnouncerConfig]


@turnout.hookimpl
def turnout_register_dtab_stores() -> list[type[DtabStoreConfig]]:
    from .dtab_store import ConsulDtabStoreConfig

    return [ConsulDtabStoreConfig]
