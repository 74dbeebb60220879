"""The plugin module named by the ``turnout`` entry point: registers
``io.l5d.consul.interpreter``, starts each such interpreter's watch when turnout starts, and
adds its state page, ``/<router label>/interpreter_state/io.l5d.consul.interpreter.json``
(Linkerd's path), to the admin server."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import turnout
from turnout.api import AdminRequest, AdminResponse, AdminRoute, InterpreterConfig, Linker

from .config import KIND, ConsulInterpreterConfig

if TYPE_CHECKING:
    from .interpreter import ConsulDtabInterpreter

#: the interpreters each linker built, by router label
_BUILT: weakref.WeakKeyDictionary[Linker, dict[str, ConsulDtabInterpreter]] = (
    weakref.WeakKeyDictionary()
)


def remember(linker: Linker, label: str, interpreter: ConsulDtabInterpreter) -> None:
    """Called by the config's ``new_interpreter`` inside a linker."""
    _BUILT.setdefault(linker, {})[label] = interpreter


def built(linker: Linker) -> dict[str, ConsulDtabInterpreter]:
    """The ``io.l5d.consul.interpreter`` interpreters of ``linker``, by router label."""
    return dict(_BUILT.get(linker, {}))


@turnout.hookimpl
def turnout_register_interpreters() -> list[type[InterpreterConfig]]:
    return [ConsulInterpreterConfig]


@turnout.hookimpl
def turnout_startup(linker: Linker) -> None:
    # read the dtab now rather than at the first request
    for interpreter in built(linker).values():
        interpreter.watch.start()


def _handler(interpreter: ConsulDtabInterpreter) -> Any:
    async def handle(request: AdminRequest) -> AdminResponse:
        return AdminResponse.json(interpreter.state())

    return handle


@turnout.hookimpl
def turnout_admin_routes(linker: Linker) -> list[AdminRoute]:
    return [
        AdminRoute("GET", f"/{label}/interpreter_state/{KIND}.json", _handler(interpreter))
        for label, interpreter in built(linker).items()
    ]
