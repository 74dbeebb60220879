"""The plugin module named by the ``turnout`` entry point: registers the ``io.l5d.etcd``
dtab store."""

from __future__ import annotations

import turnout
from turnout.api import DtabStoreConfig


@turnout.hookimpl
def turnout_register_dtab_stores() -> list[type[DtabStoreConfig]]:
    from .config import EtcdDtabStoreConfig

    return [EtcdDtabStoreConfig]
