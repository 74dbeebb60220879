"""The admin server of a real turnout process: index, health, logging.json, security
categories, process gauges, telemeter routes (recentRequests), shutdown."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import yaml
from turnout.testing import free_port
from turnout.testing.pytest_plugin import turnout_process  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def config(**admin: object) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port(), **admin},
            "telemetry": [{"kind": "io.l5d.recentRequests", "sampleRate": 1.0}],
            "routers": [{"protocol": "http", "servers": [{"port": free_port()}]}],
        }
    )


def get(proc, path: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(proc.admin_url + path, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_index_health_and_process_gauges(turnout_process):  # noqa: F811
    proc = turnout_process(config())
    status, index = get(proc, "/admin")
    assert status == 200
    for path in ("/admin/ping", "/logging.json", "/requests", "/client_state.json"):
        assert path in index.splitlines()
    assert get(proc, "/admin/index.txt")[1] == index
    assert get(proc, "/admin/ping") == (200, "pong")
    assert get(proc, "/admin/ready") == (200, "ready")
    metrics = json.loads(get(proc, "/admin/metrics.json")[1])
    assert metrics["process/rss_bytes"] > 10_000_000
    assert metrics["process/uptime_ms"] > 0
    assert metrics["process/open_fds"] > 3
    assert metrics["process/threads"] >= 1
    assert 0 <= metrics["process/loop_lag_ms"] < 5000  # milliseconds (a loaded box lags)
    assert metrics["process/gc/collections"] >= 0
    assert metrics["process/asyncio_tasks"] >= 1  # (at least ProcessStats.run itself)


def test_logging_json_lists_and_changes_levels(turnout_process):  # noqa: F811
    proc = turnout_process(config())
    status, body = get(proc, "/logging.json")
    assert status == 200
    levels = {e["logger"]: e["level"] for e in json.loads(body)}
    assert levels["root"] in ("INFO", "WARNING")
    status, body = get(proc, "/logging.json?logger=turnout.http&level=debug", data=b"")
    assert status == 200
    assert {"logger": "turnout.http", "level": "DEBUG"} in json.loads(body)
    status, body = get(
        proc,
        "/logging.json",
        data=json.dumps({"logger": "root", "level": "ERROR"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200 and {"logger": "root", "level": "ERROR"} in json.loads(body)
    assert get(proc, "/logging.json?logger=x", data=b"")[0] == 400
    status, body = get(proc, "/logging.json?logger=turnout.http&level=WARN", data=b"")
    assert status == 200 and {"logger": "turnout.http", "level": "WARNING"} in json.loads(body)
    status, body = get(proc, "/logging.json?logger=x&level=LOUD", data=b"")
    assert status == 400 and "LOUD" in body


def test_security_categories(turnout_process):  # noqa: F811
    proc = turnout_process(
        config(
            security={
                "controlEnabled": False,
                "diagnosticsEnabled": False,
                "pathWhitelist": ["^/admin/ping$"],
                "pathBlacklist": ["^/config.json$"],
            }
        )
    )
    assert get(proc, "/admin/ping") == (200, "pong")  # diagnostics, but whitelisted
    assert get(proc, "/client_state.json")[0] == 404  # diagnostics: off
    assert get(proc, "/logging.json")[0] == 404  # control: off
    assert get(proc, "/admin/shutdown", data=b"")[0] == 404
    assert get(proc, "/config.json")[0] == 404  # ui, but blacklisted
    assert get(proc, "/admin/metrics.json")[0] == 200  # ui
    # a telemeter's route keeps the category it declares: /requests shows clients'
    # addresses and paths, so it is diagnostics (as /requests.json), off here
    assert get(proc, "/requests")[0] == 404


def test_security_patterns_match_whole_paths(turnout_process):  # noqa: F811
    """Linkerd's SecurityFilter: ``pattern.matcher(path).matches()``, not a search."""
    proc = turnout_process(
        config(
            security={
                "diagnosticsEnabled": False,
                "pathWhitelist": ["/admin/ping"],
                "pathBlacklist": ["/admin/metrics"],
            }
        )
    )
    assert get(proc, "/admin/metrics.json")[0] == 200  # not /admin/metrics itself
    assert get(proc, "/admin/ping") == (200, "pong")
    assert get(proc, "/namer_state/x/admin/ping.json")[0] == 404  # contains it, not it


def test_control_endpoints_refuse_cross_site_browser_requests(turnout_process):  # noqa: F811
    proc = turnout_process(config())
    here = f"127.0.0.1:{proc.admin_port}"
    change = "/logging.json?logger=turnout.admin&level=DEBUG"
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"https://{here}"},  # another scheme is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        # DNS rebinding: the attacker's name resolves to 127.0.0.1, Host and Origin agree
        {
            "Host": f"rebind.example:{proc.admin_port}",
            "Origin": f"http://rebind.example:{proc.admin_port}",
        },
    ):
        status, body = get(proc, change, data=b"", headers=headers)
        assert status == 403 and "cross-site request refused" in body, headers
    levels = {e["logger"]: e["level"] for e in json.loads(get(proc, "/logging.json")[1])}
    assert "turnout.admin" not in levels  # nothing changed
    # the admin's own pages (same origin) and clients that are not browsers are served
    same = {"Origin": f"http://{here}", "Sec-Fetch-Site": "same-origin"}
    assert get(proc, change, data=b"", headers=same)[0] == 200
    localhost = {
        "Host": f"localhost:{proc.admin_port}",
        "Origin": f"http://localhost:{proc.admin_port}",
    }
    assert get(proc, change, data=b"", headers=localhost)[0] == 200
    assert get(proc, change, data=b"")[0] == 200  # curl


def test_shutdown_refuses_cross_origin_and_get(turnout_process):  # noqa: F811
    proc = turnout_process(config())
    assert get(proc, "/admin/shutdown")[0] == 405
    status, _ = get(proc, "/admin/shutdown", data=b"", headers={"Origin": "http://evil.example"})
    assert status == 403
    assert get(proc, "/admin/ping") == (200, "pong")  # still running
    status, _ = get(proc, "/admin/shutdown", data=b"")
    assert status == 200
    assert proc.wait(10) == 0
