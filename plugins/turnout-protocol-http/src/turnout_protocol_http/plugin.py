"""turnout plugin entry point: registers the ``http`` protocol, its identifiers and
response classifiers. Hook implementations only; the rest is imported lazily."""

from __future__ import annotations

from turnout import hookimpl
from turnout.api import IdentifierConfig, ResponseClassifierConfig, RouterConfig

from . import data_path
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


@hookimpl
def turnout_build_info() -> str:
    built = data_path()
    if built == "compiled":
        return "data path: compiled (mypyc)"
    return (
        "data path: pure Python (about 25% fewer requests per core than compiled; reinstall "
        "(not editable) with a C compiler present to compile it)"
    )
