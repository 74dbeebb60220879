"""The module named by the ``turnout`` entry point: it registers the two namer kinds, the
``io.l5d.serversets`` announcer, the global namer ``/$/io.buoyant.namer.zk.leader`` and
namerd's ``io.l5d.zk`` dtab store.

Importing it is cheap: kazoo is imported only when a configuration uses one of the kinds (or a
name under ``/$/io.buoyant.namer.zk.leader`` is looked up).
"""

from __future__ import annotations

import asyncio

import turnout
from turnout.api import AnnouncerConfig, DtabStoreConfig, Linker, Namer, NamerConfig

from .config import ServersetsAnnouncerConfig, ServersetsConfig, ZkLeaderConfig
from .dtab_store_config import ZkDtabStoreConfig
from .leader_global import GLOBAL_LEADER_NAMER, GLOBAL_NAME


@turnout.hookimpl
def turnout_register_namers() -> list[type[NamerConfig]]:
    return [ServersetsConfig, ZkLeaderConfig]


@turnout.hookimpl
def turnout_register_announcers() -> list[type[AnnouncerConfig]]:
    return [ServersetsAnnouncerConfig]


@turnout.hookimpl
def turnout_register_global_namers() -> dict[str, Namer]:
    return {GLOBAL_NAME: GLOBAL_LEADER_NAMER}


@turnout.hookimpl
def turnout_register_dtab_stores() -> list[type[DtabStoreConfig]]:
    return [ZkDtabStoreConfig]


@turnout.hookimpl
async def turnout_shutdown(linker: Linker) -> None:
    # the global namer lives as long as the process; its ZooKeeper sessions end with the linker
    await GLOBAL_LEADER_NAMER.close_loop(asyncio.get_running_loop())
