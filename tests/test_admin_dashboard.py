"""The admin web UI in a real browser: headless Chromium (selenium + Debian's chromedriver)
against a real turnout process routing live traffic to recording backends.

Checks the dashboard (live request counts, client endpoints, no console errors), the dtab
playground (a delegation tree with the bound addresses, and a clear error for a bad dtab)
and the logging page (a level changed in the page is what ``/logging.json`` reports).
A second test routes to 200 names (issue 6): the Clients list shows 25 of 200 rows, all
folded, and stays usable: filter, "Show all", sorting by name and by requests, one row
expanded to its endpoints, a list folded by its heading, polling on, no console errors.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from turnout.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
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


def send(proc: Any, host: str) -> int | None:
    """One GET / to the router with ``Host: host``: the status (None if it failed)."""
    request = urllib.request.Request(proc.url("/"), headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.close()  # (it holds the response's socket: closed now, not by the collector)
        return e.code
    except (OSError, urllib.error.URLError):
        return None


@contextmanager
def background_traffic(proc: Any, hosts: Callable[[int], str]) -> Iterator[None]:
    """Requests with ``Host: hosts(n)`` (n = 0, 1, ...) about 30 a second until the block ends."""
    stop = threading.Event()

    def run() -> None:
        n = 0
        while not stop.is_set():
            send(proc, hosts(n))
            n += 1
            stop.wait(0.03)

    thread = threading.Thread(target=run, name="traffic", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.fixture
def traffic(mesh) -> Iterator[None]:
    """Requests to ``web`` (and now and then to an unknown name) until the test ends."""
    proc, _ = mesh
    with background_traffic(proc, lambda n: "nowhere" if n % 25 == 24 else "web"):
        yield


SERVICES = [f"svc{i:03d}" for i in range(200)]
HOT = ("svc042", "svc123", "svc188")  # the names that keep getting traffic


def client_id(service: str) -> str:
    return f"/#/io.l5d.fs/{service}"


@pytest.fixture
def big_mesh(turnout_process, recording_backend, disco_dir):
    """turnout whose ``edge`` router has routed one request to each of 200 names
    (``svc000``..``svc199``, all bound to the same two backends): 200 services, 200 clients."""
    backends = [recording_backend(name=f"backend-{i}") for i in (1, 2)]
    for service in SERVICES:
        disco_dir.write(service, *backends)
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
    proc = turnout_process(config)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda service: send(proc, service), SERVICES))
    assert statuses == [200] * len(SERVICES)
    return proc, backends


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


def requests_total(driver: Any) -> int | None:
    """The router's request count since start (the Requests / s card)."""
    raw = driver.find_element(By.CSS_SELECTOR, '[data-card="rps"]').get_attribute("data-total")
    return int(raw) if raw else None


_SHOWN_ROWS = """
const rows = document.querySelectorAll(`section[aria-label="${arguments[0]}"] .entity`);
return [...rows].filter((row) => !row.hidden).map((row) => row.dataset.id);
"""


def click(driver: Any, element: Any) -> None:
    """Click ``element`` once it is scrolled to the middle (clear of the sticky top bar)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def shown_rows(driver: Any, section: str) -> list[str]:
    """The ids of the rows a list shows, in page order (one script, not one call per row)."""
    return driver.execute_script(_SHOWN_ROWS, section)


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
    # where the router's names bind, with a link to explain one
    assert text(driver, ".dtab-source").startswith(
        "Names bind with the 1 dentry in the router's dtab, through this turnout's namers."
    )
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


def test_dashboard_says_a_routers_names_bind_in_namerd(turnout_process, browser):
    """A router on io.l5d.namerd.http: the dashboard names namerd, its address and the
    namespace, as the source of the router's dtab (namerd need not answer for this)."""
    namerd = free_port()
    proc = turnout_process(
        f"""
admin:
  port: {free_port()}
routers:
- protocol: http
  label: via-namerd
  dtab: /svc/a => /svc/b; /svc/c => /svc/d
  interpreter:
    kind: io.l5d.namerd.http
    experimental: true
    dst: /$/inet/127.0.0.1/{namerd}
    namespace: prod
  servers:
  - port: {free_port()}
"""
    )
    browser.get(f"{proc.admin_url}/?router=via-namerd")
    source = wait_for(browser, lambda d: text(d, ".dtab-source"), "the dtab source line")
    assert source.startswith(
        f"Names bind in namerd (io.l5d.namerd.http at /$/inet/127.0.0.1/{namerd}): "
        "namespace prod's dtab, followed by the 2 dentries in the router's dtab."
    ), source
    link = browser.find_element(By.CSS_SELECTOR, ".dtab-source a")
    assert link.get_attribute("href").endswith("/delegator?router=via-namerd")
    assert console_errors(browser) == []


@pytest.mark.timeout(120)
def test_dashboard_with_200_clients(big_mesh, browser, artifacts):
    """Issue 6: with 200 clients the lists stay usable: limited, collapsed, filterable,
    sortable, and a row still expands to its endpoints."""
    proc, backends = big_mesh
    addresses = [f"127.0.0.1:{b.port}" for b in backends]
    clients = [client_id(s) for s in SERVICES]
    hot = {client_id(s) for s in HOT}
    idle = [c for c in clients if c not in hot]  # in name order
    driver = browser
    section = '[aria-label="Clients"]'
    count = f"{section} .section-head .count"

    def sort_by(key: str) -> None:
        heading = f'{section} .ehead [data-key="{key}"] button'
        click(driver, driver.find_element(By.CSS_SELECTOR, heading))

    def aria_sort(key: str) -> str:
        cell = driver.find_element(By.CSS_SELECTOR, f'{section} .ehead [data-key="{key}"]')
        return cell.get_attribute("aria-sort")

    with background_traffic(proc, lambda n: HOT[n % len(HOT)]):
        driver.get(f"{proc.admin_url}/?router=edge")
        first = wait_for(driver, requests_total, "the router's request count")

        # -- all 200 listed, the first 25 shown, every row collapsed ----------------------
        wait_for(driver, lambda d: text(d, count) == "25 of 200 shown", "25 of the 200 clients")
        assert text(driver, '[aria-label="Services"] .section-head .count') == "25 of 200 shown"
        assert len(shown_rows(driver, "Clients")) == 25
        more = driver.find_element(By.CSS_SELECTOR, f"{section} .more button")
        assert more.text == "Show all 200 (175 more)"
        expanded = f'{section} .entity.open, {section} .toggle[aria-expanded="true"]'
        assert len(driver.find_elements(By.CSS_SELECTOR, expanded)) == 0  # more than 4: folded
        assert driver.find_elements(By.CSS_SELECTOR, f"{section} table.endpoints") == []

        # -- sorted by requests per second: the three busy clients first, then by name ----
        assert aria_sort("rps") == "descending"
        wait_for(
            driver,
            lambda d: set(shown_rows(d, "Clients")[:3]) == hot,
            "the busy clients at the top",
        )
        assert shown_rows(driver, "Clients")[3:] == idle[:22]

        # -- a whole list folds with its heading ------------------------------------------
        services = '[aria-label="Services"]'
        fold = driver.find_element(By.CSS_SELECTOR, f"{services} .section-toggle")
        click(driver, fold)
        assert fold.get_attribute("aria-expanded") == "false"
        assert not driver.find_element(By.CSS_SELECTOR, f"{services} .etable").is_displayed()
        wait_for(driver, lambda d: text(d, f"{services} .count") == "200", "the folded count")
        click(driver, fold)
        wait_for(
            driver,
            lambda d: text(d, f"{services} .count") == "25 of 200 shown",
            "the services again",
        )

        # -- filter: "/" focuses it; rows whose name contains every word ------------------
        ActionChains(driver).send_keys("/").perform()
        search = driver.switch_to.active_element
        assert search.get_attribute("aria-label") == "Filter clients by name"
        search.send_keys("svc17")
        svc17 = [client_id(f"svc17{i}") for i in range(10)]  # not svc017: a substring match
        wait_for(driver, lambda d: shown_rows(d, "Clients") == svc17, "svc170..svc179 only")
        assert text(driver, count) == "10 of 200 shown"
        assert not more.is_displayed()

        search.send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)
        search.send_keys("FS 8 svc1")  # case-insensitive, every word must match
        eights = {c for c in clients if "/svc1" in c and "8" in c}
        assert len(eights) == 19  # svc108, svc118, ..., svc180..svc189, svc198
        wait_for(driver, lambda d: set(shown_rows(d, "Clients")) == eights, "the svc1*8* clients")
        assert shown_rows(driver, "Clients")[0] == client_id("svc188")  # the busy one first
        assert text(driver, count) == "19 of 200 shown"

        search.send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)
        wait_for(driver, lambda d: text(d, count) == "25 of 200 shown", "the unfiltered list")

        # -- show all -----------------------------------------------------------------------
        click(driver, more)
        wait_for(driver, lambda d: text(d, count) == "200", "all 200 clients")
        rows = shown_rows(driver, "Clients")
        assert len(rows) == 200 and set(rows) == set(clients)
        assert more.text == "Show the first 25 only"

        # -- sorting by the column headings -------------------------------------------------
        sort_by("name")
        assert aria_sort("name") == "ascending" and aria_sort("rps") == "none"
        assert shown_rows(driver, "Clients") == clients
        sort_by("name")
        assert aria_sort("name") == "descending"
        assert shown_rows(driver, "Clients") == clients[::-1]
        sort_by("rps")  # a number column starts descending
        assert aria_sort("rps") == "descending"
        rows = shown_rows(driver, "Clients")
        assert set(rows[:3]) == hot and rows[3:] == idle
        sort_by("rps")
        assert aria_sort("rps") == "ascending"
        rows = shown_rows(driver, "Clients")
        assert rows[:197] == idle and set(rows[197:]) == hot
        sort_by("rps")
        assert set(shown_rows(driver, "Clients")[:3]) == hot

        # -- one row expands to its endpoints; the others stay collapsed ---------------------
        busy = f'{section} .entity[data-id="{client_id(HOT[0])}"]'
        toggle = driver.find_element(By.CSS_SELECTOR, f"{busy} .toggle")
        click(driver, toggle)
        assert toggle.get_attribute("aria-expanded") == "true"
        wait_for(
            driver,
            lambda d: all(a in text(d, f"{busy} table.endpoints") for a in addresses),
            "the busy client's endpoints",
        )
        assert "2 / 2" in text(driver, f"{busy} .erow")  # load balancer: available / size
        # an expanded client makes the page read /client_state.json: binding, endpoint states
        wait_for(
            driver,
            lambda d: (
                "bound" in text(d, f"{busy} .kv")
                and text(d, f"{busy} table.endpoints").count("open") == 2
            ),
            "the busy client's state from /client_state.json",
        )
        assert len(driver.find_elements(By.CSS_SELECTOR, f"{section} .entity.open")) == 1

        # -- still polling, and no console errors -------------------------------------------
        wait_for(driver, lambda d: (requests_total(d) or 0) > first + 10, "the count to grow")
        clients_list = driver.find_element(By.CSS_SELECTOR, section)
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", clients_list)
        driver.execute_script("window.scrollBy(0, -60)")  # clear of the sticky top bar
        driver.save_screenshot(str(artifacts / "dashboard-200-clients.png"))
        assert console_errors(driver) == []


def test_dashboard_shows_an_h2_router(turnout_process, nginx_backend, browser, artifacts):
    """An h2 router's streams are counted on the dashboard like HTTP/1.1 requests: its tab,
    its request total, its client."""
    import subprocess

    web = nginx_backend("web", http2=True)
    port = free_port()
    proc = turnout_process(
        f"""
admin:
  port: {free_port()}
routers:
- protocol: h2
  dtab: /svc => /$/inet/127.0.0.1/{web.port}
  servers:
  - port: {port}
"""
    )
    done = subprocess.run(
        ["h2load", "-n", "300", "-c", "2", "-m", "4", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "300 succeeded" in done.stdout, done.stdout
    browser.get(f"{proc.admin_url}/?router=h2")
    wait_for(browser, lambda d: (requests_total(d) or 0) >= 300, "300 h2 requests counted")
    assert "h2" in text(browser, '[role="tablist"]')
    client = f"$/inet/127.0.0.1/{web.port}"
    wait_for(browser, lambda d: client in d.find_element(By.TAG_NAME, "body").text, "the client")
    browser.save_screenshot(str(artifacts / "dashboard-h2.png"))
    assert console_errors(browser) == []
