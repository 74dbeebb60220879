"""The admin web UI in a real browser: headless Chromium (selenium + Debian's chromedriver)
against a real turnout process routing live traffic to recording backends.

Checks the dashboard (live request counts, client endpoints, no console errors), the dtab
playground (a delegation tree with the bound addresses, and a clear error for a bad dtab)
and the logging page (a level changed in the page is what ``/logging.json`` reports).
Screenshots of each page are written to ``$TURNOUT_ARTIFACTS`` (or the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from turnout.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 20.0  # seconds any one condition may take to show up in the page


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("TURNOUT_ARTIFACTS", tmp_path)) / "admin-dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs chromium and chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
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


@pytest.fixture
def mesh(turnout_process, recording_backend, disco_dir):
    """turnout with an ``edge`` HTTP router over the fs namer: ``web`` has two backends."""
    web = [recording_backend(name=f"web-{i}") for i in (1, 2)]
    disco_dir.write("web", *web)
    config = f"""
admin:
  port: {free_port()}
namers:
- kind: io.l5d.fs
  rootDir: {disco_dir.root}
routers:
- protocol: http
  label: edge
  dtab: |
    /svc => /#/io.l5d.fs;
  servers:
  - port: {free_port()}
"""
    return turnout_process(config), web


@pytest.fixture
def traffic(mesh) -> Iterator[threading.Event]:
    """Requests to ``web`` (and now and then to an unknown name) until the test ends."""
    proc, _ = mesh
    stop = threading.Event()

    def run() -> None:
        n = 0
        while not stop.is_set():
            host = "nowhere" if n % 25 == 24 else "web"
            request = urllib.request.Request(proc.url("/"), headers={"Host": host})
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    r.read()
            except (OSError, urllib.error.URLError):
                pass
            n += 1
            stop.wait(0.03)

    thread = threading.Thread(target=run, name="traffic", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(10)


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Wait until ``condition(driver)`` is truthy; fail with ``what`` and the console."""
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(condition)
    except WebDriverException:
        console = "\n".join(str(e) for e in driver.get_log("browser"))
        pytest.fail(f"timed out waiting for {what}; browser console:\n{console}")


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def text(driver: Any, css: str) -> str:
    elements = driver.find_elements(By.CSS_SELECTOR, css)
    return elements[0].text if elements else ""


def admin_json(proc: Any, path: str) -> Any:
    with urllib.request.urlopen(proc.admin_url + path, timeout=5) as r:
        return json.loads(r.read())


def test_dashboard_playground_and_logging(mesh, traffic, browser, artifacts):
    proc, web = mesh
    addresses = [f"127.0.0.1:{b.port}" for b in web]
    driver = browser

    # -- dashboard ---------------------------------------------------------------------
    driver.get(f"{proc.admin_url}/?router=edge")
    total = '[data-card="rps"]'

    def requests_total(d: Any) -> int | None:
        raw = d.find_element(By.CSS_SELECTOR, total).get_attribute("data-total")
        return int(raw) if raw else None

    first = wait_for(driver, requests_total, "the router's request count")
    wait_for(driver, lambda d: (requests_total(d) or 0) > first, "the request count to grow")
    rate = wait_for(
        driver,
        lambda d: text(d, f"{total} .value") not in ("", "—", "0") and text(d, f"{total} .value"),
        "a request rate",
    )
    assert float(rate.rstrip("k")) > 0
    assert driver.find_element(
        By.CSS_SELECTOR, '[role="tab"][aria-selected="true"]'
    ).text.startswith("edge")
    # the one client is expanded and lists both endpoints of /#/io.l5d.fs/web
    client = '[aria-label="Clients"] .entity[data-id="/#/io.l5d.fs/web"]'
    wait_for(
        driver,
        lambda d: all(a in text(d, f"{client} table.endpoints") for a in addresses),
        "the client's endpoints",
    )
    assert "2 / 2" in text(driver, f"{client} .erow")  # load balancer: available / size
    assert text(driver, '[aria-label="Services"] .entity[data-id="/svc/web"]')
    wait_for(driver, lambda d: text(d, '[data-card="p99"] .value') not in ("", "—"), "latency")
    time.sleep(1.5)  # a few more polls on screen, then no console errors at all
    driver.save_screenshot(str(artifacts / "dashboard.png"))
    assert console_errors(driver) == []

    # -- dtab playground ---------------------------------------------------------------
    driver.get(f"{proc.admin_url}/delegator?router=edge")
    dtab = driver.find_element(By.ID, "dtab")
    wait_for(driver, lambda d: "/#/io.l5d.fs" in dtab.get_attribute("value"), "the dtab")
    path = driver.find_element(By.ID, "path")
    path.clear()
    path.send_keys("/svc/web")
    driver.find_element(By.ID, "go").click()
    tree = wait_for(
        driver,
        lambda d: all(a in text(d, "#result") for a in addresses) and text(d, "#result"),
        "the delegation tree with the bound addresses",
    )
    assert "/svc => /#/io.l5d.fs" in tree  # the dentry that applied
    assert "/#/io.l5d.fs/web" in tree
    driver.save_screenshot(str(artifacts / "delegator.png"))
    assert console_errors(driver) == []

    dtab.clear()
    dtab.send_keys("/svc =>")
    driver.find_element(By.ID, "go").click()
    error = wait_for(driver, lambda d: text(d, "#result .error-box"), "the dtab error")
    assert "400" in error and "Invalid dtab" in error
    driver.save_screenshot(str(artifacts / "delegator-error.png"))
    # the browser itself logs the failed request; the page adds no error of its own
    assert all("delegator.json" in e and "400" in e for e in console_errors(driver))

    # -- logging -----------------------------------------------------------------------
    driver.get(f"{proc.admin_url}/logging")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-logger="root"]'), "root")
    driver.find_element(By.ID, "new-logger").send_keys("turnout.admin")
    Select(driver.find_element(By.ID, "new-level")).select_by_value("DEBUG")
    driver.find_element(By.CSS_SELECTOR, "#add button[type=submit]").click()
    wait_for(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-logger="turnout.admin"]'), "row"
    )
    root = Select(driver.find_element(By.CSS_SELECTOR, 'tr[data-logger="root"] select'))
    root.select_by_value("WARNING")
    wait_for(driver, lambda d: "set to WARNING" in text(d, 'tr[data-logger="root"]'), "saved")
    levels = {e["logger"]: e["level"] for e in admin_json(proc, "/logging.json")}
    assert levels["root"] == "WARNING"
    assert levels["turnout.admin"] == "DEBUG"
    driver.save_screenshot(str(artifacts / "logging.png"))
    assert console_errors(driver) == []
