"""``/delegator.json`` in-process: a dtab that describes a huge tree (issue 10, item 3) gets a
truncated tree with a ``note`` at once instead of wedging the event loop."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from turnout.admin import AdminServer
from turnout.naming import MAX_DELEGATE_NODES, GlobalNamer

pytestmark = pytest.mark.timeout(60)


def nested(levels: int, op: str, end: str = "/$/inet/127.1/1") -> str:
    entries = [f"/s{i} => /s{i + 1} {op} /s{i + 1}" for i in range(levels)]
    return "; ".join([*entries, f"/s{levels} => {end}", "/svc/x => /s0"])


def app() -> web.Application:
    """The handler of an AdminServer over a linker that only has a global namer."""
    admin: Any = SimpleNamespace(
        linker=SimpleNamespace(interpreters={}, global_namer=GlobalNamer())
    )
    admin._interpreter = lambda namespace: AdminServer._interpreter(admin, namespace)
    application = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return await AdminServer.delegator_json(admin, request)

    application.router.add_route("GET", "/delegator.json", handler)
    application.router.add_route("POST", "/delegator.json", handler)
    return application


def call(method: str, **kw: Any) -> tuple[int, Any]:
    async def run() -> tuple[int, Any]:
        async with (
            TestClient(TestServer(app())) as client,
            client.request(method, "/delegator.json", **kw) as r,
        ):
            body = await r.text()
            return r.status, json.loads(body) if r.status == 200 else body

    return asyncio.run(run())


def test_post_of_40_nested_alternatives_answers_truncated() -> None:
    body = {"dtab": nested(40, "|"), "path": "/svc/x"}
    assert len(json.dumps(body)) < 1500  # the report's 1.3 KB request
    status, tree = call("POST", json=body)
    assert status == 200
    assert tree["type"] == "delegate" and tree["path"] == "/svc/x"
    assert tree["note"] == (
        f"Delegation truncated: the tree exceeds the limit of {MAX_DELEGATE_NODES} nodes or "
        "100 nested alternatives/unions; the branches not explored are shown as exception nodes"
    )
    text = json.dumps(tree)
    assert text.count('"type": "exception"') >= 1
    assert f"Delegation truncated: the tree exceeds the limit of {MAX_DELEGATE_NODES}" in text
    assert text.count('"type": "leaf"') <= MAX_DELEGATE_NODES


def test_get_of_16_nested_unions_answers_truncated() -> None:
    status, tree = call("GET", params={"dtab": nested(16, "&"), "path": "/svc/x"})
    assert status == 200
    assert tree["note"].startswith("Delegation truncated: ")


def test_a_small_tree_has_no_note() -> None:
    status, tree = call("POST", json={"dtab": nested(3, "&"), "path": "/svc/x"})
    assert status == 200
    assert "note" not in tree
    assert json.dumps(tree).count('"type": "leaf"') == 2**3
