"""The module named by the ``turnout`` entry point: it registers ``io.l5d.k8s.external``.

Cheap to import: aiohttp and the namer are imported when a configuration builds the namer.
"""

from __future__ import annotations

import turnout
from turnout.api import NamerConfig

from .config import K8sExternalConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[NamerConfig]]:
    return [K8sExternalConfig]
