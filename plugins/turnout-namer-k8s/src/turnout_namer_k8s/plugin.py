"""The module named by the ``turnout`` entry point: it only registers the config classes.

Kept cheap to import (turnout imports it at every start): aiohttp and the namer are only
imported when a configuration builds one of these namers.
"""

from __future__ import annotations

import turnout
import turnout.api

from .config import K8sNamerConfig, K8sNsNamerConfig
from .transformers import DaemonSetTransformerConfig, LocalNodeTransformerConfig


@turnout.hookimpl
def turnout_register_namers() -> list[type[K8sNamerConfig]]:
    return [K8sNamerConfig, K8sNsNamerConfig]


@turnout.hookimpl
def turnout_register_transformers() -> list[type[turnout.TransformerConfig]]:
    return [LocalNodeTransformerConfig, DaemonSetTransformerConfig]


@turnout.hookimpl
def turnout_register_dtab_stores() -> list[type[turnout.api.DtabStoreConfig]]:
    """namerd's io.l5d.k8s dtab store (DTab custom resources)."""
    from .dtab_store import K8sDtabStoreConfig

    return [K8sDtabStoreConfig]
