"""Bounded binding through the HTTP router and the admin (issue 10, items 2 and 3).

- An ``l5d-dtab`` of nested unions (360 bytes that describe a tree of 2**16 leaves) is
  answered at once with a 502 whose ``l5d-err`` names the limit, and a normal request sent
  meanwhile is not held up.
- A header dtab over ``MAX_REQUEST_DTAB_BYTES`` or ``MAX_REQUEST_DTAB_ENTRIES`` is a 400.
- ``POST /delegator.json`` with 40 nested alternatives answers with a truncated tree and a
  ``note``, and routing goes on meanwhile.
- A server with ``clearContext: true`` ignores the headers altogether.

Timings are generous (seconds): before the fix the requests took 6-20 s or never answered.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import unquote

import pytest
from turnout.naming import MAX_BIND_NODES, MAX_REQUEST_DTAB_BYTES, MAX_REQUEST_DTAB_ENTRIES
from turnout.testing import Response, http_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

#: generous: the attack took 6.5 s (15 levels) and 8.3 s (16 levels) before the fix
PROMPT = 3.0


def nested(levels: int, op: str, end: str, entry: str = "/svc/x") -> str:
    """The reports' dtabs: ``/s0 => /s1 & /s1; ...; /s<levels> => end; <entry> => /s0``."""
    entries = [f"/s{i} => /s{i + 1} {op} /s{i + 1}" for i in range(levels)]
    return "; ".join([*entries, f"/s{levels} => {end}", f"{entry} => /s0"])


def err(r: Response) -> str:
    return unquote(r.header("l5d-err") or "")


@pytest.fixture
def web(disco_dir: Any, recording_backend: Any) -> Any:
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    return backend


def test_nested_union_dtab_fails_fast_and_other_requests_go_on(http_proxy: Any, web: Any) -> None:
    proxy = http_proxy()
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    for levels in (15, 16):
        attack = {"Host": "x", "l5d-dtab": nested(levels, "&", "/svc/web")}
        assert len(attack["l5d-dtab"]) < 400
        results: dict[str, Any] = {}

        def send(headers: dict[str, str] = attack, results: dict[str, Any] = results) -> None:
            start = time.monotonic()
            results["attack"] = http_request(proxy.port, headers=headers, timeout=30)
            results["attack_s"] = time.monotonic() - start

        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(0.05)
        start = time.monotonic()
        normal = http_request(proxy.port, headers={"Host": "web"}, timeout=30)
        normal_s = time.monotonic() - start
        thread.join(30)
        assert normal.status == 200
        assert normal_s < PROMPT, normal_s
        r = results["attack"]
        assert results["attack_s"] < PROMPT, results["attack_s"]
        assert r.status == 502
        assert err(r) == (
            "Unable to route request! Name tree too large: the bound tree exceeds the limit "
            f"of {MAX_BIND_NODES} nodes"
        )
    assert web.request_count == 1 + 2
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200


def test_dtab_headers_over_the_limits_are_400(http_proxy: Any, web: Any) -> None:
    proxy = http_proxy()
    big = "/svc/web => /#/io.l5d.fs/web; #" + "x" * MAX_REQUEST_DTAB_BYTES  # (a comment)
    r = http_request(proxy.port, headers={"Host": "web", "l5d-dtab": big})
    assert r.status == 400
    assert err(r) == (f"dtab headers too large: {len(big)} bytes (limit {MAX_REQUEST_DTAB_BYTES})")
    # the limit is on every dtab header together
    half = "/svc/web => /#/io.l5d.fs/web; #" + "x" * (MAX_REQUEST_DTAB_BYTES // 2)
    r = http_request(
        proxy.port, headers=[("Host", "web"), ("l5d-dtab", half), ("l5d-ctx-dtab", half)]
    )
    assert r.status == 400 and err(r).startswith("dtab headers too large")
    many = ";".join(f"/a{i}=>/b" for i in range(MAX_REQUEST_DTAB_ENTRIES + 1))
    assert len(many) < MAX_REQUEST_DTAB_BYTES
    r = http_request(proxy.port, headers={"Host": "web", "l5d-dtab": many})
    assert r.status == 400
    assert err(r) == (
        f"dtab headers have too many dentries: {MAX_REQUEST_DTAB_ENTRIES + 1} "
        f"(limit {MAX_REQUEST_DTAB_ENTRIES})"
    )
    assert web.request_count == 0
    # at the limits: routed
    most = ";".join(f"/a{i}=>/b" for i in range(MAX_REQUEST_DTAB_ENTRIES - 1))
    r = http_request(
        proxy.port, headers={"Host": "web", "l5d-dtab": most + ";/svc/web=>/#/io.l5d.fs/web"}
    )
    assert r.status == 200
    assert web.request_count == 1


def test_delegator_json_answers_nested_alternatives_truncated(http_proxy: Any, web: Any) -> None:
    proxy = http_proxy()
    body = json.dumps(
        {
            "namespace": "http",
            "dtab": nested(40, "|", "/$/inet/127.1/1"),
            "path": "/svc/x",
        }
    ).encode()
    assert len(body) < 1500
    results: dict[str, Any] = {}

    def post() -> None:
        request = urllib.request.Request(
            proxy.admin_url + "/delegator.json",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        start = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as r:
            results["status"] = r.status
            results["json"] = json.loads(r.read())
        results["s"] = time.monotonic() - start

    thread = threading.Thread(target=post)
    thread.start()
    time.sleep(0.05)
    start = time.monotonic()
    normal = http_request(proxy.port, headers={"Host": "web"}, timeout=30)
    normal_s = time.monotonic() - start
    thread.join(30)
    assert normal.status == 200
    assert normal_s < PROMPT, normal_s
    assert results["status"] == 200
    assert results["s"] < PROMPT, results["s"]
    tree = results["json"]
    assert tree["type"] == "delegate" and tree["path"] == "/svc/x"
    assert tree["note"].startswith("Delegation truncated: the tree exceeds the limit of 1000 nodes")
    text = json.dumps(tree)
    assert '"type": "exception"' in text and "Delegation truncated: " in text
    assert '"id": "/$/inet/127.1/1"' in text


def test_clear_context_ignores_an_attack_dtab(http_proxy: Any, web: Any) -> None:
    # the attack rewrites /svc/web; with clearContext: true the header is not even read
    attack = nested(16, "&", "/$/inet/127.1/1", entry="/svc/web")
    proxy = http_proxy(server={"clearContext": True})
    for header in ("l5d-dtab", "l5d-ctx-dtab"):
        r = http_request(proxy.port, headers={"Host": "web", header: attack})
        assert r.status == 200
        assert not r.has_header("l5d-err")
    assert web.request_count == 2
    [*_, last] = web.requests
    assert last.header("l5d-dtab") is None and last.header("l5d-ctx-dtab") is None
