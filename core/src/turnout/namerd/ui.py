"""namerd's admin UI: the namespaces, a dtab editor per namespace, the delegator and namerd's
metrics, on namerd's admin server.

Pages (static HTML and JS under ``ui_static/``, in the linker admin UI's style: its
``/files/turnout.css`` and ``/files/common.js``, the same security headers, no inline script):

- ``/namerd`` (and ``/``, once the admin server lets a plugin's route replace a built-in
  one): the namespaces list, and ``/dtab/<ns>`` (Linkerd's namerd page) the editor of
  one namespace. The same page does both; it reads the namespace from its URL.

JSON endpoints the pages use (all answer JSON; errors are ``{"error": ...}``):

- ``GET /namerd/dtabs.json`` → ``[{"namespace", "dtab", "version"}]``
- ``GET /namerd/dtab.json?namespace=ns`` → ``{"namespace", "dtab", "lines", "version"}``; 404
- ``POST /namerd/validate.json`` ``{"dtab"}`` → ``{"valid": true, "lines"}`` or
  ``{"valid": false, "error", "line", "column", "offset"}`` (200 either way)
- ``POST /namerd/save.json`` ``{"namespace", "dtab", "version"}`` (``version`` null creates
  the namespace) → 200 ``{"version"}``; 400 a dtab that does not parse (with its position);
  412 the dtab changed since ``version`` was read (``{"error", "dtab", "version"}`` carry the
  current one; nothing was written); 404 missing; 409 exists. Category ``control``: with
  ``admin.security.controlEnabled: false`` the editor is read-only.
- ``POST /namerd/delete.json`` ``{"namespace", "version"}`` → 200; 404; 412 (control).
- ``GET /namerd/delegate.json?namespace=&path=&dtab=`` → the delegate tree of ``path`` through
  the namespace's interpreter, exactly what ``/api/1/delegate/<ns>`` answers.
- ``GET /namerd/metrics.json`` → the ``interface/...`` and ``dtabstore/...`` metrics.

State-changing requests (the POSTs) from another site are refused by the admin server's
security middleware (``Origin``/``Sec-Fetch-Site``), as for every admin POST.
"""

from __future__ import annotations

import json
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

from ..admin.http import AdminError, AdminRequest, AdminResponse
from ..admin.ui import SECURITY_HEADERS, UI, StaticFiles
from ..admin_routes import AdminRoute
from ..errors import BindingError, ParseError
from ..naming import Dtab, Path, delegate
from .client import position
from .store import (
    InvalidNamespace,
    NamespaceExists,
    NamespaceNotFound,
    VersionMismatch,
    check_namespace,
    parse_version,
    version_string,
)

if TYPE_CHECKING:
    from .runtime import Namerd

STATIC = FilePath(__file__).with_name("ui_static")
PAGE = "namerd.html"
_NAV_MARK = "<!--nav-->"


def _json(data: Any, status: int = 200) -> AdminResponse:
    return AdminResponse(
        text=json.dumps(data),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, message: str, **extra: Any) -> AdminResponse:
    return _json({"error": message, **extra}, status)


def dtab_lines(dtab: Dtab) -> list[str]:
    return [f"{d.prefix.show} => {d.dst.show};" for d in dtab]


def parse_problem(text: str) -> dict[str, Any] | None:
    """The position and message of a parse error of ``text``, or None when it parses."""
    try:
        Dtab.read(text)
    except ParseError as e:
        line, column = position(text, e.offset)
        return {"error": str(e), "line": line, "column": column, "offset": e.offset}
    return None


class NamerdUI:
    """Handlers of namerd's UI routes."""

    def __init__(self, namerd: Namerd, files: StaticFiles | None = None) -> None:
        self.namerd = namerd
        self.files = files if files is not None else StaticFiles(STATIC)

    @property
    def store(self) -> Any:
        assert self.namerd.store is not None
        return self.namerd.store

    # -- pages -----------------------------------------------------------------------------
    async def page(self, request: AdminRequest) -> AdminResponse:
        file = self.files.get(PAGE)
        if file is None:
            raise AdminError(404, f"{PAGE} is missing from the installation\n")
        nav = ""
        if self.namerd.admin is not None:
            nav = UI(self.namerd.admin).nav_html("/namerd")
        text = file.body.decode("utf-8").replace(_NAV_MARK, nav, 1)
        return AdminResponse(
            text=text,
            content_type="text/html",
            charset="utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    async def static(self, request: AdminRequest) -> AdminResponse:
        file = self.files.get(request.match_info["name"])
        if file is None:
            raise AdminError(404, "no such file\n")
        headers = {
            **SECURITY_HEADERS,
            "ETag": file.etag,
            "Cache-Control": "no-cache",
            "Content-Type": file.content_type,
        }
        if file.etag in request.headers.get("If-None-Match", ""):
            return AdminResponse(status=304, headers=headers)
        return AdminResponse(body=file.body, headers=headers)

    # -- JSON ------------------------------------------------------------------------------
    async def _body(self, request: AdminRequest) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise AdminError(415, "Content-Type must be application/json\n")
        try:
            body = json.loads(await request.text())
        except ValueError:
            raise AdminError(400, "the body is not JSON\n") from None
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object\n")
        return body

    @staticmethod
    def _namespace(raw: Any) -> str:
        if not isinstance(raw, str):
            raise AdminError(400, "'namespace' is required\n")
        try:
            return check_namespace(raw)
        except InvalidNamespace as e:
            raise AdminError(400, f"{e}\n") from None

    async def dtabs(self, request: AdminRequest) -> AdminResponse:
        out = []
        for ns in await self.store.list():
            found = await self.store.get(ns)
            if found is not None:
                out.append(
                    {"namespace": ns, "dtab": found[0].show, "version": version_string(found[1])}
                )
        return _json(out)

    async def get_dtab(self, request: AdminRequest) -> AdminResponse:
        ns = self._namespace(request.query.get("namespace"))
        found = await self.store.get(ns)
        if found is None:
            return _error(404, f"namespace {ns} does not exist")
        dtab, version = found
        return _json(
            {
                "namespace": ns,
                "dtab": dtab.show,
                "lines": dtab_lines(dtab),
                "version": version_string(version),
            }
        )

    async def validate(self, request: AdminRequest) -> AdminResponse:
        body = await self._body(request)
        text = body.get("dtab")
        if not isinstance(text, str):
            raise AdminError(400, "'dtab' (a string) is required\n")
        problem = parse_problem(text)
        if problem is not None:
            return _json({"valid": False, **problem})
        return _json({"valid": True, "lines": dtab_lines(Dtab.read(text))})

    async def save(self, request: AdminRequest) -> AdminResponse:
        body = await self._body(request)
        ns = self._namespace(body.get("namespace"))
        text, version = body.get("dtab"), body.get("version")
        if not isinstance(text, str):
            raise AdminError(400, "'dtab' (a string) is required\n")
        problem = parse_problem(text)
        if problem is not None:
            return _json({**problem, "error": f"Invalid dtab: {problem['error']}"}, 400)
        dtab = Dtab.read(text)
        try:
            if version is None:
                new = await self.store.create(ns, dtab)
            else:
                expected = parse_version(str(version))
                if expected is None:
                    return await self._conflict(ns)
                new = await self.store.put(ns, dtab, expected)
        except NamespaceExists:
            return _error(409, f"namespace {ns} already exists")
        except NamespaceNotFound:
            return _error(404, f"namespace {ns} does not exist (deleted meanwhile?)")
        except VersionMismatch:
            return await self._conflict(ns)
        return _json({"namespace": ns, "version": version_string(new)})

    async def _conflict(self, ns: str) -> AdminResponse:
        found = await self.store.get(ns)
        current = (
            {
                "dtab": found[0].show,
                "lines": dtab_lines(found[0]),
                "version": version_string(found[1]),
            }
            if found is not None
            else {"dtab": None, "lines": [], "version": None}
        )
        return _error(
            412,
            f"the dtab of {ns} changed since you loaded it; nothing was saved. Review the "
            "current dtab and save again",
            **current,
        )

    async def delete(self, request: AdminRequest) -> AdminResponse:
        body = await self._body(request)
        ns = self._namespace(body.get("namespace"))
        version = body.get("version")
        found = await self.store.get(ns)
        if found is None:
            return _error(404, f"namespace {ns} does not exist")
        if version is not None and parse_version(str(version)) != found[1]:
            return await self._conflict(ns)
        try:
            await self.store.delete(ns)
        except NamespaceNotFound:
            return _error(404, f"namespace {ns} does not exist")
        return _json({"namespace": ns, "deleted": True})

    async def delegate(self, request: AdminRequest) -> AdminResponse:
        ns = self._namespace(request.query.get("namespace"))
        try:
            path = Path.read(request.query.get("path", ""))
        except ParseError as e:
            return _error(400, f"Invalid path: {e}")
        try:
            extra = Dtab.read(request.query.get("dtab", ""))
        except ParseError as e:
            return _error(400, f"Invalid dtab: {e}")
        assert self.namerd.namespaces is not None
        interpreter = self.namerd.namespaces.interpreter(ns)
        try:
            tree = await delegate(interpreter, extra, path, timeout=2.0)
        except TimeoutError:
            return _error(503, "Request timed out.")
        except BindingError as e:
            return _error(400, str(e))
        return _json(tree.to_json())

    async def metrics(self, request: AdminRequest) -> AdminResponse:
        flat = self.namerd.metrics.flat()
        keep = ("interface/", "dtabstore/")
        return _json({k: v for k, v in sorted(flat.items()) if k.startswith(keep)})


def namerd_ui_routes(namerd: Namerd) -> list[AdminRoute]:
    """The UI's routes (see the module docstring); ``/namerd`` is in the navigation bar."""
    ui = NamerdUI(namerd)
    r = AdminRoute
    return [
        # "/" is namerd's page once the admin server lets a plugin's route replace a built-in
        # one; until then the linker dashboard (registered first) answers "/"
        r("GET", "/", ui.page, "ui"),
        r("GET", "/namerd", ui.page, "ui", nav="namerd"),
        r("GET", "/dtab/{namespace}", ui.page, "ui"),
        r("GET", "/namerd/files/{name:.+}", ui.static, "ui"),
        r("GET", "/namerd/dtabs.json", ui.dtabs, "ui"),
        r("GET", "/namerd/dtab.json", ui.get_dtab, "ui"),
        r("POST", "/namerd/validate.json", ui.validate, "ui"),
        r("GET", "/namerd/delegate.json", ui.delegate, "ui"),
        r("GET", "/namerd/metrics.json", ui.metrics, "ui"),
        r("POST", "/namerd/save.json", ui.save, "control"),
        r("POST", "/namerd/delete.json", ui.delete, "control"),
    ]


__all__ = ["NamerdUI", "namerd_ui_routes", "parse_problem"]
