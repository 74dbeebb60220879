"""namerd's admin additions: ``/dtab/delegator.json`` (Linkerd's namerd delegator: the given
dtab evaluated against namerd's namers; ``namespace`` is ignored) and ``/dtabs.json``
(the namespaces and their dtabs, for a dashboard), and the namerd UI (:mod:`.ui`)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ..admin import read_delegation_request
from ..admin.http import AdminRequest, AdminResponse
from ..admin_routes import AdminRoute
from ..errors import BindingError
from ..naming import delegate
from .runtime import Namerd

if TYPE_CHECKING:  # (imported, with aiohttp, when such an interpreter is built)
    from .interpreter import NamerdHttpInterpreter


def _json(data: Any, status: int = 200) -> AdminResponse:
    return AdminResponse(text=json.dumps(data), status=status, content_type="application/json")


def namerd_admin_routes(namerd: Namerd) -> list[AdminRoute]:
    async def delegator(request: AdminRequest) -> AdminResponse:
        read = await read_delegation_request(request)
        if isinstance(read, AdminResponse):
            return read
        _, dtab, path = read
        assert namerd.namespaces is not None
        try:
            tree = await delegate(namerd.namespaces.namers_only, dtab, path, timeout=2.0)
        except TimeoutError:
            return AdminResponse(status=503, text="Request timed out.")
        except BindingError as e:
            return AdminResponse(status=400, text=str(e))
        return _json(tree.to_json())

    async def dtabs(request: AdminRequest) -> AdminResponse:
        assert namerd.store is not None
        out: dict[str, str] = {}
        for ns in await namerd.store.list():
            found = await namerd.store.get(ns)
            if found is not None:
                out[ns] = found[0].show
        return _json(out)

    from .ui import namerd_ui_routes

    return [
        AdminRoute("GET", "/dtab/delegator.json", delegator, "ui"),
        AdminRoute("POST", "/dtab/delegator.json", delegator, "ui"),
        AdminRoute("GET", "/dtabs.json", dtabs, "ui", nav="dtabs"),
        # (after /dtab/delegator.json: the UI's /dtab/{namespace} must not shadow it)
        *namerd_ui_routes(namerd),
    ]


def interpreter_state_routes(linker: Any) -> list[AdminRoute]:
    """``/<router>/interpreter_state/io.l5d.namerd.http/<namespace>.json`` for each router
    whose interpreter is io.l5d.namerd.http (Linkerd's ``interpreter_state`` pages)."""
    loaded = sys.modules.get(f"{__package__}.interpreter")
    if loaded is None:  # no io.l5d.namerd.http interpreter was built (nor aiohttp imported)
        return []
    kind: type[NamerdHttpInterpreter] = loaded.NamerdHttpInterpreter

    routes: list[AdminRoute] = []
    for label, interpreter in getattr(linker, "interpreters", {}).items():
        found = interpreter
        while not isinstance(found, kind) and hasattr(found, "underlying"):
            found = found.underlying
        if not isinstance(found, kind):
            continue

        def handler(interp: NamerdHttpInterpreter) -> Any:
            async def state(request: AdminRequest) -> AdminResponse:
                return _json(interp.state())

            return state

        path = f"/{label}/interpreter_state/io.l5d.namerd.http/{found.namespace}.json"
        routes.append(AdminRoute("GET", path, handler(found), "diagnostics"))
    return routes


__all__ = ["interpreter_state_routes", "namerd_admin_routes"]
