"""The module named by the ``turnout`` entry point: it only registers the config class.

Kept cheap to import (dnspython is imported only when a namer is built).
"""

from __future__ import annotations

import turnout

from .config import DnsSrvNamerConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[DnsSrvNamerConfig]]:
    return [DnsSrvNamerConfig]
