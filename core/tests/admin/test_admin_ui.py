"""The admin UI's routes (turnout.admin.ui) in-process: pages with the navigation bar and
security headers, static files with their content types and ETags, and 404 for anything
that is not a shipped file (unknown names, ``..``, hidden files)."""

from __future__ import annotations

import asyncio
import importlib.resources
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from turnout.admin import category
from turnout.admin.http import AdminApp, AdminHttpServer, AdminRequest, AdminResponse
from turnout.admin.ui import CONTENT_TYPES, PAGES, STATIC, UI, StaticFiles, ui_routes
from turnout.admin_routes import AdminRoute
from yarl import URL


def fake_admin(**security: Any) -> SimpleNamespace:
    """What the UI reads from an AdminServer: its routes and ``admin.security``."""
    sec = {
        "ui_enabled": True,
        "control_enabled": True,
        "diagnostics_enabled": True,
        "path_whitelist": [],
        "path_blacklist": [],
        **security,
    }
    return SimpleNamespace(routes=[], config=SimpleNamespace(security=SimpleNamespace(**sec)))


def app_of(admin: SimpleNamespace) -> AdminApp:
    app = AdminApp()
    routes = ui_routes(admin)
    admin.routes.extend(routes)
    for route in routes:
        app.add_route(route.method, route.path, route.handler)
    return app


def get(app: AdminApp, *paths: str, headers: dict[str, str] | None = None) -> list[Any]:
    """GET each path (sent as is: no client-side normalisation of ``..``) from ``app``
    served by the admin's HTTP server; returns ``(status, headers, body)`` per path."""

    async def run() -> list[Any]:
        server = AdminHttpServer(app)
        port = await server.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as session:
                out = []
                for path in paths:
                    url = URL(f"http://127.0.0.1:{port}{path}", encoded=True)
                    async with session.get(url, headers=headers) as r:
                        out.append((r.status, r.headers, await r.read()))
                return out
        finally:
            await server.close()

    return asyncio.run(run())


def test_routes_are_in_the_ui_security_category():
    routes = ui_routes(fake_admin())
    assert {r.path for r in routes} == {"/", "/delegator", "/logging", "/files/{name:.+}"}
    assert all(r.category == "ui" and r.method == "GET" for r in routes)
    for path in ("/", "/delegator", "/logging", "/files/dashboard.js"):
        assert category(path) == "ui"


@pytest.mark.parametrize("path", list(PAGES))
def test_pages_are_html_with_the_navigation_bar(path):
    [(status, headers, body)] = get(app_of(fake_admin()), path)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    html = body.decode()
    assert "<!--nav-->" not in html
    assert f'<a href="{path}" aria-current="page">' in html
    assert html.count('aria-current="page"') == 1
    # every file a page refers to is shipped
    for name in re.findall(r'"/files/([^"]+)"', html):
        assert (STATIC / name).is_file(), name


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("turnout.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("dashboard.html", "text/html; charset=utf-8"),
    ],
)
def test_static_files_have_their_content_type(name, content_type):
    [(status, headers, body)] = get(app_of(fake_admin()), f"/files/{name}")
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == (STATIC / name).read_bytes()


def test_every_shipped_file_is_served_and_revalidated_with_an_etag():
    names = StaticFiles().names()
    assert {"dashboard.js", "delegator.js", "logging.js", "turnout.css"} <= set(names)
    answers = get(app_of(fake_admin()), *(f"/files/{n}" for n in names))
    etags = {}
    for (status, headers, _), name in zip(answers, names, strict=True):
        assert status == 200, name
        assert headers["Content-Type"] == CONTENT_TYPES[Path(name).suffix]
        assert headers["Cache-Control"] == "no-cache"
        etags[name] = headers["ETag"]
    for name, etag in etags.items():
        app = app_of(fake_admin())  # an aiohttp app serves from one event loop only
        [(again, _, body)] = get(app, f"/files/{name}", headers={"If-None-Match": etag})
        assert (again, body) == (304, b""), name


@pytest.mark.parametrize(
    "path",
    [
        "/files/nope.js",
        "/files/../ui.py",
        "/files/%2e%2e/ui.py",
        "/files/..%2fui.py",
        "/files/..%2F__init__.py",
        "/files/%2e%2e%2f%2e%2e%2fadmin_routes.py",
        "/files//etc/passwd",
        "/files/./dashboard.js/..",
        "/files/.hidden",
        "/files/DASHBOARD.JS",
        "/files/",
        "/files",
        "/index.html",
        "/dashboard.html",
    ],
)
def test_anything_else_is_404(path):
    [(status, _, body)] = get(app_of(fake_admin()), path)
    assert status == 404, body
    assert b"import" not in body  # no source text leaked


def test_javascript_modules_import_only_shipped_files():
    for js in STATIC.glob("*.js"):
        for target in re.findall(r'from "\./([^"]+)"', js.read_text()):
            assert (STATIC / target).is_file(), f"{js.name} imports {target}"


def test_static_files_ship_inside_the_package():
    # hatchling puts every file under src/turnout into the wheel; the UI finds them through
    # the package, wherever it is installed
    static = importlib.resources.files("turnout.admin") / "static"
    for name in ("dashboard.html", "delegator.html", "logging.html", "dashboard.js"):
        assert (static / name).is_file()


def test_static_index_skips_hidden_and_unknown_files(tmp_path):
    (tmp_path / "app.js").write_text("x")
    (tmp_path / ".secret.js").write_text("x")
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.css").write_text("x")
    files = StaticFiles(tmp_path)
    assert files.names() == ["app.js", "sub/deep.css"]
    assert files.get("../app.js") is None


def test_navigation_lists_plugin_pages_escaped_and_hides_blocked_endpoints():
    admin = fake_admin(diagnostics_enabled=False, path_blacklist=["/bound-names\\.json"])

    async def handler(request: AdminRequest) -> AdminResponse:
        return AdminResponse(text="ok")

    admin.routes.extend(
        [
            AdminRoute("GET", "/plugin/page", handler, "ui", nav="<b>Plugin</b>"),
            AdminRoute("GET", "/plugin/{x}.json", handler, "ui", nav="templated"),
            AdminRoute("POST", "/plugin/post", handler, "ui", nav="post only"),
        ]
    )
    [(status, _, body)] = get(app_of(admin), "/")
    html = body.decode()
    assert status == 200
    assert '<a href="/plugin/page">&lt;b&gt;Plugin&lt;/b&gt;</a>' in html
    assert "templated" not in html and "post only" not in html
    assert "/client_state.json" not in html  # a diagnostics endpoint, disabled
    assert "/bound-names.json" not in html  # blacklisted
    assert 'href="/config.json"' in html  # ui category: enabled


def test_a_missing_installation_file_is_a_404_not_a_crash(tmp_path):
    ui = UI(fake_admin(), StaticFiles(tmp_path))  # an empty static directory
    app = AdminApp()
    app.add_route("GET", "/", ui.page("/"))
    app.add_route("GET", "/files/{name:.+}", ui.static)
    assert [s for s, _, _ in get(app, "/", "/files/dashboard.js")] == [404, 404]
