"""turnout plugin entry point: registers the ``http`` protocol, its identifiers and
response classifiers. Hook implementations only; the rest is imported lazily."""

from __future__ import annotations

from turnout import hookimpl
from turnout.api import IdentifierConfig, ResponseClassifierConfig, RouterConfig

from .config import CLASSIFIERS, IDENTIFIERS, HttpRouterConfig


@hookimpl
def turnout_register_protocols() -> list[type[RouterConfig]]:
    return [HttpRouterConfig]


@hookimpl
def turnout_register_identifiers() -> list[type[IdentifierConfig]]:
    return list(IDENTIFIERS)


@hookimpl
def turnout_register_response_classifiers() -> list[type[ResponseClassifierConfig]]:
    return list(CLASSIFIERS)
