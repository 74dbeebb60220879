"""The module named by the ``turnout`` entry point: it registers ``protocol: h2``, its
identifiers and its response classifiers.

Cheap to import (turnout imports it at every start): the codec and the runtime are imported
by ``H2RouterConfig.new_router`` only.
"""

from __future__ import annotations

from turnout.api import IdentifierConfig, ResponseClassifierConfig, RouterConfig, hookimpl

from .config import CLASSIFIERS, IDENTIFIERS, H2RouterConfig


@hookimpl
def turnout_register_protocols() -> list[type[RouterConfig]]:
    return [H2RouterConfig]


@hookimpl
def turnout_register_identifiers() -> list[type[IdentifierConfig]]:
    return list(IDENTIFIERS)


@hookimpl
def turnout_register_response_classifiers() -> list[type[ResponseClassifierConfig]]:
    return list(CLASSIFIERS)
