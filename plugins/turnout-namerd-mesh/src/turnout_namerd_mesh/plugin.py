"""The plugin module named by the ``turnout`` entry point: registers the ``io.l5d.mesh``
namerd interface and the ``io.l5d.mesh`` interpreter, and adds each such interpreter's pages
to the linker's admin server:

- ``/<router>/interpreter_state/io.l5d.mesh/<namespace>.json``: the streams to namerd
  (Linkerd's ``/interpreter_state/io.l5d.mesh/<root>.json``, under the router's label as
  core's ``io.l5d.namerd.http`` page is);
- ``/<router>/interpreter_state/io.l5d.mesh/<namespace>/delegate.json?path=&dtab=``: namerd's
  delegate tree of a path (``Delegator.GetDelegateTree``), in the ``/delegator.json`` form.
"""

from __future__ import annotations

import sys
from typing import Any

import turnout
from turnout.api import (
    AdminResponse,
    AdminRoute,
    Dtab,
    InterpreterConfig,
    Linker,
    NamerdInterfaceConfig,
    ParseError,
    Path,
)

from .config import KIND, MeshInterfaceConfig, MeshInterpreterConfig


@turnout.hookimpl
def turnout_register_namerd_interfaces() -> list[type[NamerdInterfaceConfig]]:
    return [MeshInterfaceConfig]


@turnout.hookimpl
def turnout_register_interpreters() -> list[type[InterpreterConfig]]:
    return [MeshInterpreterConfig]


def _json(data: Any, status: int = 200) -> AdminResponse:
    return AdminResponse.json(data, status=status)


def _state(interpreter: Any) -> Any:
    async def handle(request: Any) -> Any:
        return _json(interpreter.state())

    return handle


def _delegate(interpreter: Any) -> Any:
    async def handle(request: Any) -> Any:
        import grpc  # type: ignore[import-untyped]

        from .delegate_json import delegate_tree_json

        try:
            path = Path.read(request.query.get("path", ""))
            dtab = Dtab.read(request.query.get("dtab", ""))
        except ParseError as e:
            return _json({"error": str(e)}, 400)
        try:
            tree = await interpreter.delegate(dtab, path)
        except grpc.aio.AioRpcError as e:
            return _json({"error": f"namerd: {e.code().name}: {e.details()}"}, 502)
        except Exception as e:
            return _json({"error": f"namerd: {e}"}, 502)
        return _json(delegate_tree_json(tree))

    return handle


@turnout.hookimpl
def turnout_admin_routes(linker: Linker) -> list[AdminRoute]:
    # grpc and the generated code cost about 10 MB: a linker without an io.l5d.mesh
    # interpreter never imports them (the interpreter module is imported by building one)
    module = sys.modules.get(f"{__package__}.interpreter")
    if module is None:
        return []
    MeshInterpreter = module.MeshInterpreter

    routes: list[AdminRoute] = []
    for label, interpreter in getattr(linker, "interpreters", {}).items():
        found = interpreter
        while not isinstance(found, MeshInterpreter) and hasattr(found, "underlying"):
            found = found.underlying
        if not isinstance(found, MeshInterpreter):
            continue
        base = f"/{label}/interpreter_state/{KIND}{found.root.show}"
        routes.append(AdminRoute("GET", f"{base}.json", _state(found)))
        routes.append(AdminRoute("GET", f"{base}/delegate.json", _delegate(found)))
    return routes
