"""The plugin module named by the ``turnout`` entry point: it only registers the config class.

Cheap to import: the namer, its HTTP client and aiohttp are imported when a configuration
builds an ``io.l5d.marathon`` namer.
"""

from __future__ import annotations

import turnout

from .config import MarathonConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[MarathonConfig]]:
    return [MarathonConfig]
