"""The module named by the ``turnout`` entry point: it registers ``protocol: thrift``.

Cheap to import (turnout imports it at every start): the runtime is imported by
``ThriftRouterConfig.new_router`` only.
"""

from __future__ import annotations

from ._turnout import RouterConfig, hookimpl
from .config import ThriftRouterConfig


@hookimpl
def turnout_register_protocols() -> list[type[RouterConfig]]:
    return [ThriftRouterConfig]
