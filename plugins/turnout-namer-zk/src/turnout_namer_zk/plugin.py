"""The module named by the ``turnout`` entry point: it registers the two namer kinds.

Importing it is cheap: kazoo is imported only when a configuration uses one of the kinds.
"""

from __future__ import annotations

import turnout
from turnout.config import NamerConfig

from .config import ServersetsConfig, ZkLeaderConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[NamerConfig]]:
    return [ServersetsConfig, ZkLeaderConfig]
