"""Access log (httpAccessLog, combined and JSON) and metrics (/admin/metrics.json)."""

from __future__ import annotations

import json
import re
import signal
import urllib.request

import pytest
import turnout_protocol_http
from turnout.testing import http_request, raw_request, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

COMBINED = re.compile(
    r'^(?P<host>\S+) (?P<client>\S+) - - \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$'
)


def read_lines(path, n: int) -> list[str]:
    """The access log's lines once it has ``n`` of them (it is written once a second)."""
    assert wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= n, 5)
    return path.read_text().splitlines()


def test_combined_access_log(http_proxy, disco_dir, recording_backend, tmp_path):
    disco_dir.write("web", recording_backend())
    log = tmp_path / "access.log"
    proxy = http_proxy(router={"httpAccessLog": str(log)})
    headers = {"Host": "web", "User-Agent": "tester/1.0", "Referer": "http://r/"}
    http_request(proxy.port, "GET", "/a/b?c=d", headers)
    http_request(proxy.port, "POST", "/nowhere", {"Host": "nothere"}, b"xyz")
    first, second = read_lines(log, 2)
    m = COMBINED.match(first)
    assert m, first
    assert m["host"] == "web"
    assert m["client"] == "127.0.0.1"
    assert m["request"] == "GET /a/b?c=d HTTP/1.1"
    assert m["status"] == "200"
    assert m["referer"] == "http://r/"
    assert m["agent"] == "tester/1.0"
    assert re.fullmatch(r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}", m["time"])
    m = COMBINED.match(second)
    assert m, second
    assert (m["host"], m["request"], m["status"]) == ("nothere", "POST /nowhere HTTP/1.1", "502")


def test_json_access_log(http_proxy, disco_dir, recording_backend, tmp_path):
    disco_dir.write("web", recording_backend())
    log = tmp_path / "access.jsonl"
    proxy = http_proxy(router={"httpAccessLog": str(log), "httpAccessLogFormat": "json"})
    http_request(proxy.port, "PUT", "/x?y=1", {"Host": "web"}, b"12345")
    [line] = read_lines(log, 1)
    entry = json.loads(line)
    assert entry["status"] == 200
    assert entry["target"] == "/x?y=1"
    assert entry["method"] == "PUT"
    assert entry["host"] == "web"
    assert entry["service"] == "/svc/web"
    assert entry["requestBytes"] == 5


def test_access_log_is_flushed_at_shutdown(http_proxy, disco_dir, recording_backend, tmp_path):
    disco_dir.write("web", recording_backend())
    log = tmp_path / "access.log"
    proxy = http_proxy(router={"httpAccessLog": str(log)})
    http_request(proxy.port, "GET", "/", {"Host": "web"})
    assert proxy.stop(signal.SIGTERM) == 0
    assert len(log.read_text().splitlines()) == 1


def metrics(proxy) -> dict:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=5) as r:
        return json.load(r)


def test_router_server_service_and_client_stats(http_proxy, disco_dir, recording_backend):
    disco_dir.write("web", recording_backend())
    proxy = http_proxy(router={"label": "edge"})
    for _ in range(3):
        assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert http_request(proxy.port, headers={"Host": "nothere"}).status == 502
    assert raw_request("127.0.0.1", proxy.port, b"GET / HTTP/1.1\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )
    m = metrics(proxy)
    server = f"rt/edge/server/127.0.0.1/{proxy.port}"
    assert m[f"{server}/requests"] == 5
    assert m[f"{server}/success"] == 3
    assert m[f"{server}/failures"] == 2
    assert m[f"{server}/status/200"] == 3
    assert m[f"{server}/status/502"] == 1
    assert m[f"{server}/status/400"] == 1
    assert m[f"{server}/status/2XX"] == 3
    assert m[f"{server}/status/5XX"] == 1
    assert m["rt/edge/service/svc/web/requests"] == 3
    assert m["rt/edge/service/svc/web/success"] == 3
    assert m["rt/edge/service/svc/nothere/failures"] == 1
    assert m["rt/edge/client/#/io.l5d.fs/web/requests"] == 3
    assert m["rt/edge/client/#/io.l5d.fs/web/success"] == 3
    assert m["rt/edge/client/#/io.l5d.fs/web/connects"] == 1
    assert m["rt/edge/client/#/io.l5d.fs/web/request_latency_ms.count"] == 3


def test_stats_under_the_default_label(http_proxy, disco_dir, recording_backend):
    disco_dir.write("web", recording_backend())
    proxy = http_proxy()
    http_request(proxy.port, headers={"Host": "web"})
    m = metrics(proxy)
    assert m[f"rt/http/server/127.0.0.1/{proxy.port}/requests"] == 1
    assert m["rt/http/service/svc/web/requests"] == 1
    assert m["rt/http/client/#/io.l5d.fs/web/requests"] == 1


def test_compiled_data_path_is_in_use_when_expected():
    """./dev test runs this suite a second time against the mypyc build; make sure it is."""
    import importlib
    import os

    # (setup.py's DATA_PATH: the modules the mypyc build compiles)
    names = [
        "_stack",
        "exchange",
        "downstream",
        "upstream",
        "heads",
        "routecache",
        "servers",
        "answers",
        "runtime",
    ]
    modules = [importlib.import_module(f"turnout_protocol_http.{name}") for name in names]
    compiled = {m.__name__: m.__file__.endswith(".so") for m in modules}
    if os.environ.get("TURNOUT_EXPECT_COMPILED") == "1":
        assert all(compiled.values()), compiled
        assert turnout_protocol_http.data_path() == "compiled"
    else:
        assert not any(compiled.values()), f"a compiled build shadows the source: {compiled}"
        assert turnout_protocol_http.data_path() == "pure Python"
