"""``/delegator.json`` in-process: a dtab that describes a huge tree (issue 10, item 3) gets a
truncated tree with a ``note`` at once instead of wedging the event loop; a router whose
interpreter binds elsewhere (namerd) is delegated there (``remote_delegate``)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from turnout.admin import AdminServer
from turnout.admin.http import AdminApp, AdminHttpServer, AdminRequest, AdminResponse
from turnout.naming import MAX_DELEGATE_NODES, Dtab, GlobalNamer, NameInterpreter, Path
from turnout.naming.transformer import TransformingInterpreter

pytestmark = pytest.mark.timeout(60)


def nested(levels: int, op: str, end: str = "/$/inet/127.1/1") -> str:
    entries = [f"/s{i} => /s{i + 1} {op} /s{i + 1}" for i in range(levels)]
    return "; ".join([*entries, f"/s{levels} => {end}", "/svc/x => /s0"])


def app(interpreters: dict[str, Any] | None = None) -> AdminApp:
    """The handler of an AdminServer over a linker that only has a global namer (and
    ``interpreters``)."""
    admin: Any = SimpleNamespace(
        linker=SimpleNamespace(interpreters=interpreters or {}, global_namer=GlobalNamer())
    )
    admin._interpreter = lambda namespace: AdminServer._interpreter(admin, namespace)
    application = AdminApp()

    async def handler(request: AdminRequest) -> AdminResponse:
        return await AdminServer.delegator_json(admin, request)

    application.add_route("GET", "/delegator.json", handler)
    application.add_route("POST", "/delegator.json", handler)
    return application


def call(method: str, interpreters: dict[str, Any] | None = None, **kw: Any) -> tuple[int, Any]:
    async def run() -> tuple[int, Any]:
        server = AdminHttpServer(app(interpreters))
        port = await server.start("127.0.0.1", 0)
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.request(method, f"http://127.0.0.1:{port}/delegator.json", **kw) as r,
            ):
                body = await r.text()
                return r.status, json.loads(body) if r.status == 200 else body
        finally:
            await server.close()

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


class Remote(NameInterpreter):
    """Binds elsewhere: delegation is asked of the remote side, which answers ``answer`` (or
    raises it)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []

    @property
    def can_delegate(self) -> bool:
        return False

    async def remote_delegate(self, dtab: Dtab, path: Path) -> Any:
        self.asked.append((dtab.show, path.show))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_remote_interpreter_is_asked_with_the_requests_dtab() -> None:
    tree = {"type": "delegate", "path": "/svc/web", "delegate": {"type": "neg"}}
    remote = Remote(tree)
    query = {"namespace": "r", "path": "/svc/web", "dtab": "/svc => /#/io.l5d.fs"}
    status, answer = call("GET", {"r": TransformingInterpreter(remote, [])}, params=query)
    assert (status, answer) == (200, tree)
    assert remote.asked == [("/svc=>/#/io.l5d.fs", "/svc/web")]


@pytest.mark.parametrize(
    ("answer", "status", "text"),
    [
        (ValueError("namerd: bad dtab"), 400, "namerd: bad dtab"),
        (ConnectionRefusedError("connection refused"), 502, "Delegation failed: connection"),
        (None, 501, "Name Interpreter for r cannot show delegations"),
    ],
)
def test_a_remote_refusal_failure_or_no_support(answer: Any, status: int, text: str) -> None:
    query = {"namespace": "r", "path": "/svc/web", "dtab": ""}
    got, body = call("GET", {"r": Remote(answer)}, params=query)
    assert got == status and text in body, (got, body)
