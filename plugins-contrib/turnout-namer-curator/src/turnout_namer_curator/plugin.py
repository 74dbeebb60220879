"""The module named by the ``turnout`` entry point: it registers ``io.l5d.curator``.

Cheap to import: kazoo and the namer are imported when a configuration builds the namer.
"""

from __future__ import annotations

import turnout
from turnout.api import NamerConfig

from .config import CuratorConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[NamerConfig]]:
    return [CuratorConfig]
