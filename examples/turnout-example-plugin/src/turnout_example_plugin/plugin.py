"""The plugin module named by the ``turnout`` entry point: it only registers config classes.

Keep this module cheap to import: it is imported every time turnout starts, even when no
configuration uses its kinds.
"""

from __future__ import annotations

import turnout

from .namer import StaticNamerConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[StaticNamerConfig]]:
    return [StaticNamerConfig]
