"""The module named by the ``turnout`` entry point: it registers the two namer kinds and the
``io.l5d.serversets`` announcer.

Importing it is cheap: kazoo is imported only when a configuration uses one of the kinds.
"""

from __future__ import annotations

import turnout
from turnout.api import AnnouncerConfig, NamerConfig

from .config import ServersetsAnnouncerConfig, ServersetsConfig, ZkLeaderConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[NamerConfig]]:
    return [ServersetsConfig, ZkLeaderConfig]


@turnout.hookimpl
def turnout_register_announcers() -> list[type[AnnouncerConfig]]:
    return [ServersetsAnnouncerConfig]
