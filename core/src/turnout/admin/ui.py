"""The admin web UI: the dashboard at ``/``, the dtab playground at ``/delegator`` and the
log-level page at ``/logging``, served from ``static/`` (no build step, no remote assets).

The pages are static HTML; the only server-side step is the navigation bar, rendered here
(escaped) so it lists the admin routes of plugins (``AdminRoute(nav=...)``) and hides links
to endpoints that ``admin.security`` blocks. Everything else is done in the browser from the
JSON endpoints (``/admin/metrics.json?tree=1``, ``/config.json``, ``/client_state.json``,
``/delegator.json``, ``/logging.json``).

Static files are served only from a fixed index of the files under ``static/``, so a name
with ``..``, a leading ``/``, a hidden file or anything not shipped is a 404.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..admin_routes import AdminRoute, category
from .http import AdminRequest, AdminResponse

if TYPE_CHECKING:
    # the admin server builds these routes and imports this module: its type only, here
    from . import AdminServer

STATIC = Path(__file__).with_name("static")

#: content types by file suffix; a file with another suffix is not served
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

#: the UI pages: route path -> (file under static/, navigation label)
PAGES = {
    "/": ("dashboard.html", "Dashboard"),
    "/delegator": ("delegator.html", "Dtab playground"),
    "/logging": ("logging.html", "Logging"),
}

#: raw JSON endpoints linked from the navigation bar: (label, href, path checked by security)
JSON_LINKS = (
    ("metrics.json", "/admin/metrics.json?pretty=1", "/admin/metrics.json"),
    ("metrics tree", "/admin/metrics.json?tree=1&pretty=1", "/admin/metrics.json"),
    ("config.json", "/config.json", "/config.json"),
    ("client_state.json", "/client_state.json", "/client_state.json"),
    ("bound-names.json", "/bound-names.json", "/bound-names.json"),
    ("logging.json", "/logging.json", "/logging.json"),
    ("all endpoints", "/admin", "/admin"),
)

#: headers of every UI response: the pages load nothing from elsewhere and run no inline
#: script or style, so a hostile router label or dtab can never execute
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

_NAV_MARK = "<!--nav-->"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")


@dataclass(frozen=True)
class _File:
    body: bytes
    etag: str
    content_type: str


class StaticFiles:
    """The files under ``root`` by relative name (``css/x.css``), read once and kept in
    memory with a content hash as ETag. :meth:`get` returns ``None`` for anything that is
    not one of them."""

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._files: dict[str, _File] = {}
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                name = path.relative_to(root).as_posix()
                ctype = CONTENT_TYPES.get(path.suffix)
                if path.is_file() and ctype and _SAFE_NAME.fullmatch(name):
                    body = path.read_bytes()
                    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                    self._files[name] = _File(body, etag, ctype)

    def names(self) -> list[str]:
        return sorted(self._files)

    def get(self, name: str) -> _File | None:
        return self._files.get(name)


class UI:
    """Handlers of the UI routes of one :class:`~turnout.admin.AdminServer`."""

    def __init__(self, admin: AdminServer, files: StaticFiles | None = None) -> None:
        self.admin = admin
        self.files = files if files is not None else StaticFiles()

    # -- handlers --------------------------------------------------------------------------
    def page(self, path: str) -> Callable[[AdminRequest], Awaitable[AdminResponse]]:
        """The handler of the page at ``path`` (one of :data:`PAGES`)."""
        name = PAGES[path][0]

        async def handler(request: AdminRequest) -> AdminResponse:
            return self._page(name, path)

        return handler

    def _page(self, name: str, path: str) -> AdminResponse:
        file = self.files.get(name)
        if file is None:  # a broken installation
            return AdminResponse(status=404, text=f"{name} is missing from the installation\n")
        text = file.body.decode("utf-8").replace(_NAV_MARK, self.nav_html(path), 1)
        return AdminResponse(
            text=text,
            content_type="text/html",
            charset="utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    async def static(self, request: AdminRequest) -> AdminResponse:
        file = self.files.get(request.match_info["name"])
        if file is None:
            return AdminResponse(status=404, text="no such file\n")
        headers = {
            **SECURITY_HEADERS,
            "ETag": file.etag,
            # revalidate every time (cheap: 304); a new turnout version never shows old JS
            "Cache-Control": "no-cache",
            "Content-Type": file.content_type,
        }
        if file.etag in request.headers.get("If-None-Match", ""):
            return AdminResponse(status=304, headers=headers)
        return AdminResponse(body=file.body, headers=headers)

    # -- navigation ------------------------------------------------------------------------
    def nav_html(self, current: str) -> str:
        """The navigation bar: pages, plugin pages (``AdminRoute.nav``), JSON endpoints."""
        esc = escape
        links = []
        pages = [(path, label) for path, (_, label) in PAGES.items()]
        for route in self.admin.routes:
            if route.nav and route.method == "GET" and "{" not in route.path:
                pages.append((route.path, route.nav))
        for path, label in pages:
            if not self.allowed(path):
                continue
            cur = ' aria-current="page"' if path == current else ""
            links.append(f'<a href="{esc(path)}"{cur}>{esc(label)}</a>')
        json_links = [
            f'<a href="{esc(href)}">{esc(label)}</a>'
            for label, href, path in JSON_LINKS
            if self.allowed(path)
        ]
        return (
            '<nav class="topnav" aria-label="Admin">'
            '<a class="brand" href="/"><img src="/files/favicon.svg" alt="" width="20" '
            'height="20">turnout</a>'
            f'<div class="navlinks">{"".join(links)}</div>'
            '<details class="navmenu"><summary>JSON</summary>'
            f'<div class="navmenu-items">{"".join(json_links)}</div></details>'
            '<div class="navstatus" id="status"></div>'
            "</nav>"
        )

    def allowed(self, path: str) -> bool:
        """Whether ``admin.security`` lets a request for ``path`` through: the admin
        server's own check when it has one, else the same rule (a route's declared
        category, or Linkerd's category of the path)."""
        check = getattr(self.admin, "allowed", None)
        if callable(check):
            return bool(check(path))
        declared = {r.path: r.category for r in self.admin.routes}
        sec = self.admin.config.security
        enabled = {"ui": sec.ui_enabled, "control": sec.control_enabled}.get(
            declared.get(path) or category(path), sec.diagnostics_enabled
        )
        if enabled:
            return not any(re.fullmatch(p, path) for p in sec.path_blacklist)
        return any(re.fullmatch(p, path) for p in sec.path_whitelist)


def escape(text: str) -> str:
    """``html.escape`` (quotes included), without importing ``html`` and its entity table
    into every turnout process."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def ui_routes(admin: AdminServer) -> list[AdminRoute]:
    """The UI's routes (pages and their static files)."""
    ui = UI(admin)
    routes = [AdminRoute("GET", path, ui.page(path), "ui") for path in PAGES]
    routes.append(AdminRoute("GET", "/files/{name:.+}", ui.static, "ui"))
    return routes
