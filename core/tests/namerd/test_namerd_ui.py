"""namerd's admin UI (turnout.namerd.ui) on a real ``turnout namerd``: its JSON endpoints over
HTTP (namespaces, dtab with version, validation with the position of an error, saving with
If-Match semantics and conflicts, delete, the delegator through a namespace, metrics, the
cross-site refusal and admin.security), then the page in headless Chromium (the way
tests/test_admin_dashboard.py drives the linker's dashboard): edit a dtab, see a parse error
with its position, save, lose a race and see the conflict, delegate a path."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, free_port, http_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

V1, V2, V3 = "AAAAAAAAAAE=", "AAAAAAAAAAI=", "AAAAAAAAAAM="


def config(disco: Path, admin: int, api: int, **admin_options: Any) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": admin, **admin_options},
            "storage": {
                "kind": "io.l5d.inMemory",
                "namespaces": {"default": "/svc => /#/io.l5d.fs;"},
            },
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco)}],
            "interfaces": [{"kind": "io.l5d.httpController", "port": api}],
        }
    )


@pytest.fixture
def namerd(namerd_process, disco_dir: DiscoDir) -> Any:  # type: ignore[no-untyped-def]
    disco_dir.write("web", "127.0.0.1 8081")
    admin, api = free_port(), free_port()
    return namerd_process(config(disco_dir.root, admin, api), admin, api)


class Admin:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self, method: str, target: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        hdrs = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        return http_request(self.port, method, target, hdrs, data, timeout=10)

    def json(self, method: str, target: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        r = self.request(method, target, body, **kw)
        try:
            return r.status, json.loads(r.body)
        except ValueError:
            return r.status, r.text


def test_json_endpoints(namerd: Any) -> None:
    admin = Admin(namerd.admin_port)
    assert admin.json("GET", "/namerd/dtabs.json") == (
        200,
        [{"namespace": "default", "dtab": "/svc=>/#/io.l5d.fs", "version": V1}],
    )
    status, d = admin.json("GET", "/namerd/dtab.json?namespace=default")
    assert status == 200 and d["lines"] == ["/svc => /#/io.l5d.fs;"] and d["version"] == V1
    assert admin.json("GET", "/namerd/dtab.json?namespace=nope")[0] == 404
    assert admin.json("GET", "/namerd/dtab.json?namespace=..")[0] == 400

    # validation: the position of the first error, 1-based line and column
    status, v = admin.json("POST", "/namerd/validate.json", {"dtab": "/a=>/b;\n/c => ;"})
    assert status == 200 and v["valid"] is False
    assert (v["line"], v["column"], v["offset"]) == (2, 7, 14)
    assert "expected" in v["error"]
    assert admin.json("POST", "/namerd/validate.json", {"dtab": "/a=>/b;/c=>/d"})[1] == {
        "valid": True,
        "lines": ["/a => /b;", "/c => /d;"],
    }

    # saving: a bad dtab is 400 with its position and writes nothing
    status, e = admin.json(
        "POST", "/namerd/save.json", {"namespace": "default", "dtab": "/x=>", "version": V1}
    )
    assert status == 400 and e["line"] == 1 and e["column"] == 5
    new = "/svc => /#/io.l5d.fs; /svc/api => /svc/web"
    status, s = admin.json(
        "POST", "/namerd/save.json", {"namespace": "default", "dtab": new, "version": V1}
    )
    assert (status, s["version"]) == (200, V2)
    assert json.loads(namerd.request("GET", "/api/1/dtabs/default").body)[-1] == {
        "prefix": "/svc/api",
        "dst": "/svc/web",
    }
    # a stale version: 412 with the current dtab, nothing written
    status, c = admin.json(
        "POST", "/namerd/save.json", {"namespace": "default", "dtab": "/a=>/b", "version": V1}
    )
    assert status == 412 and c["version"] == V2 and c["lines"][-1] == "/svc/api => /svc/web;"
    assert "changed since you loaded it" in c["error"]
    assert namerd.request("HEAD", "/api/1/dtabs/default").header("etag") == V2
    # version null creates; again is 409
    body = {"namespace": "other", "dtab": "/a=>/b", "version": None}
    assert admin.json("POST", "/namerd/save.json", body)[0] == 200
    assert admin.json("POST", "/namerd/save.json", body)[0] == 409
    assert (
        admin.json("POST", "/namerd/delete.json", {"namespace": "other", "version": V3})[0] == 412
    )
    assert (
        admin.json("POST", "/namerd/delete.json", {"namespace": "other", "version": V1})[0] == 200
    )
    assert admin.json("POST", "/namerd/delete.json", {"namespace": "other"})[0] == 404
    assert admin.json("POST", "/namerd/save.json", {"namespace": "x"}, headers={})[0] == 400
    r = admin.request("POST", "/namerd/save.json", headers={"Content-Type": "text/plain"})
    assert r.status == 415

    # the delegator through the namespace's interpreter (what /api/1/delegate/<ns> answers)
    status, tree = admin.json("GET", "/namerd/delegate.json?namespace=default&path=/svc/api")
    assert status == 200
    api = json.loads(namerd.request("GET", "/api/1/delegate/default?path=/svc/api").body)
    assert tree == api
    assert tree["type"] == "alt"
    assert tree["alt"][0]["delegate"]["bound"]["id"] == "/#/io.l5d.fs/web"
    assert admin.json("GET", "/namerd/delegate.json?namespace=default&path=svc")[0] == 400

    status, metrics = admin.json("GET", "/namerd/metrics.json")
    assert status == 200 and isinstance(metrics, dict)
    assert all(k.startswith(("interface/", "dtabstore/")) for k in metrics)

    # pages, static files, and the delegator of Linkerd's namerd still answering
    page = admin.request("GET", "/dtab/default")
    assert page.status == 200 and "namerd.js" in page.text and 'href="/namerd"' in page.text
    assert "Content-Security-Policy" in {n for n, _ in page.headers}
    assert admin.request("GET", "/namerd").status == 200
    assert admin.request("GET", "/namerd/files/namerd.js").status == 200
    assert admin.request("GET", "/namerd/files/../ui.py").status == 404
    assert admin.request("GET", "/dtab/delegator.json?path=/a&dtab=/a=>/b").status == 200


def test_cross_site_saves_are_refused(namerd: Any) -> None:
    admin = Admin(namerd.admin_port)
    body = {"namespace": "default", "dtab": "/a=>/b", "version": V1}
    for headers in (
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": f"http://127.0.0.1:{namerd.admin_port}", "Sec-Fetch-Site": "same-site"},
    ):
        r = admin.request("POST", "/namerd/save.json", body, headers=headers)
        assert r.status == 403, (headers, r.text)
    assert namerd.request("HEAD", "/api/1/dtabs/default").header("etag") == V1
    same = {"Origin": f"http://127.0.0.1:{namerd.admin_port}", "Sec-Fetch-Site": "same-origin"}
    assert admin.request("POST", "/namerd/save.json", body, headers=same).status == 200


def test_control_disabled_makes_the_editor_read_only(
    namerd_process,
    disco_dir: DiscoDir,  # type: ignore[no-untyped-def]
) -> None:
    admin_port, api = free_port(), free_port()
    cfg = config(disco_dir.root, admin_port, api, security={"controlEnabled": False})
    proc = namerd_process(cfg, admin_port, api)
    admin = Admin(admin_port)
    body = {"namespace": "default", "dtab": "/a=>/b", "version": V1}
    assert admin.request("POST", "/namerd/save.json", body).status == 404
    assert admin.request("POST", "/namerd/delete.json", body).status == 404
    assert admin.request("GET", "/namerd").status == 200
    assert admin.json("GET", "/namerd/dtab.json?namespace=default")[0] == 200
    assert proc.request("HEAD", "/api/1/dtabs/default").header("etag") == V1


# ---------------------------------------------------------------------------------------------
# the page in a browser
# ---------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 20.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs chromium and chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(condition)
    except WebDriverException:
        console = "\n".join(str(e) for e in driver.get_log("browser"))
        pytest.fail(f"timed out waiting for {what}; browser console:\n{console}")


def by_id(driver: Any, name: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def test_the_page_in_a_browser(namerd: Any, browser: Any, tmp_path: Path) -> None:
    out = Path(os.environ.get("TURNOUT_ARTIFACTS", tmp_path)) / "namerd-ui"
    out.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{namerd.admin_port}"
    browser.get(base + "/namerd")
    wait_for(browser, lambda d: "default" in by_id(d, "namespaces").text, "the namespaces")
    assert by_id(browser, "detail").get_attribute("hidden") is not None

    browser.get(base + "/dtab/default")
    dtab = by_id(browser, "dtab")
    wait_for(browser, lambda d: dtab.get_attribute("value") == "/svc => /#/io.l5d.fs;", "dtab")
    wait_for(browser, lambda d: f"version {V1}" in by_id(d, "version").text, "the version")
    wait_for(browser, lambda d: by_id(d, "dtab-status").text.startswith("valid"), "valid")

    # a parse error is shown with its position as one types, and saving is refused
    dtab.send_keys("\n/svc/api => ;")
    wait_for(
        browser,
        lambda d: "line 2, column 13" in by_id(d, "dtab-status").text,
        "the parse error with its position",
    )
    by_id(browser, "save").click()
    wait_for(browser, lambda d: "Not saved: line 2" in by_id(d, "save-result").text, "refusal")
    assert namerd.request("HEAD", "/api/1/dtabs/default").header("etag") == V1
    browser.save_screenshot(str(out / "parse-error.png"))

    # fixed and saved (with the version it was loaded at)
    dtab.clear()
    dtab.send_keys("/svc => /#/io.l5d.fs;\n/svc/api => /svc/web;")
    by_id(browser, "save").click()
    wait_for(browser, lambda d: f"Saved (version {V2})" in by_id(d, "save-result").text, "saved")
    assert json.loads(namerd.request("GET", "/api/1/dtabs/default").body)[-1] == {
        "prefix": "/svc/api",
        "dst": "/svc/web",
    }

    # someone else writes meanwhile: the next save is a conflict showing their dtab
    assert namerd.put("default", "/svc => /#/io.l5d.fs; /svc/other => /svc/web").status == 204
    dtab.send_keys("\n/svc/mine => /svc/web;")
    by_id(browser, "save").click()
    wait_for(browser, lambda d: "Conflict" in by_id(d, "save-result").text, "the conflict")
    assert "/svc/other => /svc/web;" in by_id(browser, "current-dtab").text
    assert "/svc/mine" not in namerd.request("GET", "/api/1/dtabs/default").text
    browser.save_screenshot(str(out / "conflict.png"))
    by_id(browser, "load-current").click()
    wait_for(browser, lambda d: "/svc/other" in by_id(d, "dtab").get_attribute("value"), "reload")
    wait_for(browser, lambda d: f"version {V3}" in by_id(d, "version").text, "new version")

    # the delegator explains a path through the namespace, with the bound address
    path = by_id(browser, "path")
    path.clear()
    path.send_keys("/svc/other")
    by_id(browser, "delegate").click()
    wait_for(browser, lambda d: "127.0.0.1:8081" in by_id(d, "tree").text, "the delegation")
    assert "/#/io.l5d.fs/web" in by_id(browser, "tree").text
    browser.save_screenshot(str(out / "delegator.png"))

    errors = [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]
    assert errors == []


def _wired() -> bool:
    """Whether core counts namerd's metrics and lets namerd's page replace ``/`` (the
    changes to runtime.py, http_api.py, builtin.py and admin/__init__.py that this UI asks
    for; see docs/namerd.md)."""
    import inspect

    from turnout.admin import AdminServer
    from turnout.namerd.runtime import Namerd

    return "replaced" in inspect.getsource(AdminServer.__init__) and "CountingStore" in (
        inspect.getsource(Namerd)
    )


@pytest.mark.skipif(not _wired(), reason="core does not wire namerd's metrics and / yet")
def test_root_page_and_metrics_once_wired(namerd: Any) -> None:
    admin = Admin(namerd.admin_port)
    page = admin.request("GET", "/")
    assert page.status == 200 and "namerd.js" in page.text
    assert namerd.put("default", "/svc => /#/io.l5d.fs; /a => /b", "AAAAAAAAAAA=").status == 412
    assert namerd.put("default", "/svc => /#/io.l5d.fs; /a => /b", V1).status == 204
    namerd.request("GET", "/api/1/dtabs")
    assert namerd.request("GET", "/api/1/bind/default?path=/svc/web").status == 200
    status, metrics = admin.json("GET", "/namerd/metrics.json")
    assert status == 200
    iface = "interface/io.l5d.httpController"
    assert metrics[f"{iface}/dtabs/requests"] >= 3
    assert metrics[f"{iface}/status/412"] == 1
    assert metrics["dtabstore/io.l5d.inMemory/writes"] >= 2
    assert metrics["dtabstore/io.l5d.inMemory/conflicts"] == 1
    assert metrics[f"{iface}/bind/requests"] == 1
    assert metrics["dtabstore/io.l5d.inMemory/watches"] >= 1  # (the bind watched the dtab)
