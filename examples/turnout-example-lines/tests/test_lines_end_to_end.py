"""``protocol: lines`` end to end: a real turnout in front of line backends written here.

The plugin implements only the protocol hooks of turnout's request stack; routing, retries,
deadlines, failure accrual, stats and spans seen here all come from the stack.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from turnout.testing import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

RETRIES = {"kind": "io.l5d.global", "retries": {"budget": {"minRetriesPerSec": 10}}}


def get_json(proxy: Any, path: str) -> Any:
    with urllib.request.urlopen(proxy.admin_url + path, timeout=10) as r:
        return json.load(r)


def metrics(proxy: Any) -> dict[str, Any]:
    values: dict[str, Any] = get_json(proxy, "/admin/metrics.json")
    return values


def at(backend: Any) -> tuple[str, int]:
    """A backend's line in an io.l5d.fs service file."""
    return ("127.0.0.1", backend.port)


def spans(proxy: Any) -> list[dict[str, Any]]:
    """The spans the io.l5d.tracelog telemeter wrote to turnout's log."""
    marker = "turnout.tracelog: "
    lines = [line for line in proxy.log().splitlines() if marker in line]
    return [json.loads(line.split(marker, 1)[1]) for line in lines]


def stops_cleanly(proxy: Any) -> None:
    """SIGTERM drains and exits 0, and nothing went wrong in the log."""
    assert proxy.stop() == 0, proxy.log()
    assert "Traceback" not in proxy.log() and " ERROR " not in proxy.log(), proxy.log()


# -- routing ---------------------------------------------------------------------------------


def test_lines_are_routed_by_service_name_through_the_dtab(
    lines_proxy, disco_dir, line_backend, line_client
):
    alpha = line_backend(lambda payload: f"OK alpha {payload}", "alpha")
    beta = line_backend(lambda payload: f"OK beta {payload}", "beta")
    disco_dir.write("alpha", at(alpha))
    disco_dir.write("beta", at(beta))
    proxy = lines_proxy(
        router={
            "dstPrefix": "/lines",
            "dtab": "/lines => /#/io.l5d.fs; /lines/gamma => /lines/beta;",
        }
    )
    client = line_client(proxy.port)
    assert client.ask("alpha hello world") == "OK alpha hello world"
    assert client.ask("beta x") == "OK beta x"
    assert client.ask("gamma y") == "OK beta y"  # (the dtab sends /lines/gamma to beta)
    assert client.ask("alpha again") == "OK alpha again"
    assert alpha.requests == ["hello world", "again"]
    assert beta.requests == ["x", "y"]
    # pooled: one connection to each endpoint carried its requests
    assert len(alpha.sockets) == len(beta.sockets) == 1

    unknown = client.ask("nowhere z")
    assert unknown.startswith("ERR 502 Unable to route request!"), unknown
    assert "/lines/nowhere" in unknown
    assert client.ask("").startswith("ERR 400 expected 'SERVICE PAYLOAD'")
    assert client.ask("alpha still served") == "OK alpha still served"  # (same connection)
    stops_cleanly(proxy)


# -- retries ---------------------------------------------------------------------------------


def test_a_retry_answer_is_sent_again_within_the_service_budget(
    lines_proxy, disco_dir, line_backend, line_client
):
    answers = iter(["RETRY busy", "OK done"])
    flaky = line_backend(lambda payload: next(answers), "flaky")
    disco_dir.write("flaky", at(flaky))
    proxy = lines_proxy(router={"service": RETRIES})
    assert line_client(proxy.port).ask("flaky job-1") == "OK done"
    assert flaky.requests == ["job-1", "job-1"]
    m = metrics(proxy)
    service = "rt/lines/service/svc/flaky"
    assert m[f"{service}/retries/total"] == 1
    assert [m[f"{service}/{k}"] for k in ("requests", "success", "failures")] == [1, 1, 0]
    # the client counts requests, not attempts; failure accrual saw both attempts
    assert m["rt/lines/client/#/io.l5d.fs/flaky/requests"] == 1


def test_without_retries_a_retry_answer_is_relayed(
    lines_proxy, disco_dir, line_backend, line_client
):
    flaky = line_backend(lambda payload: "RETRY busy", "flaky")
    disco_dir.write("flaky", at(flaky))
    proxy = lines_proxy()
    assert line_client(proxy.port).ask("flaky job-1") == "RETRY busy"
    assert flaky.requests == ["job-1"]
    m = metrics(proxy)
    assert m["rt/lines/service/svc/flaky/failures"] == 1
    assert m.get("rt/lines/service/svc/flaky/retries/total", 0) == 0


# -- requeues --------------------------------------------------------------------------------


def test_a_refused_connection_is_requeued_to_another_endpoint(
    lines_proxy, disco_dir, line_backend, line_client
):
    good = line_backend(lambda payload: "OK good", "good")
    disco_dir.write("mixed", at(good), ("127.0.0.1", free_port()))  # (nothing listens there)
    proxy = lines_proxy(
        router={"client": {"kind": "io.l5d.global", "loadBalancer": {"kind": "roundRobin"}}}
    )
    client = line_client(proxy.port)
    assert [client.ask(f"mixed {i}") for i in range(6)] == ["OK good"] * 6
    assert good.requests == [str(i) for i in range(6)]
    m = metrics(proxy)
    assert m["rt/lines/client/#/io.l5d.fs/mixed/retries/requeues"] >= 1
    assert m["rt/lines/service/svc/mixed/success"] == 6


# -- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("router", "answer", "failure"),
    [
        (
            {"service": {"kind": "io.l5d.global", "totalTimeoutMs": 500}},
            "ERR 503 exceeded totalTimeoutMs of 500 ms",
            "total_timeout",
        ),
        (
            {"client": {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 300}},
            "ERR 503 exceeded requestAttemptTimeoutMs of 300 ms",
            "attempt_timeout",
        ),
    ],
    ids=["totalTimeoutMs", "requestAttemptTimeoutMs"],
)
def test_a_backend_that_never_answers_meets_the_deadline(
    lines_proxy, disco_dir, line_backend, line_client, router, answer, failure
):
    silent = line_backend(lambda payload: None, "silent")
    disco_dir.write("silent", at(silent))
    proxy = lines_proxy(router=router)
    client = line_client(proxy.port)
    deadline = 0.5 if failure == "total_timeout" else 0.3
    started = time.monotonic()
    assert client.ask("silent anyone?") == answer  # (answered: the client waits 20 s at most)
    assert time.monotonic() - started >= deadline  # and never before the deadline
    assert silent.requests == ["anyone?"]
    m = metrics(proxy)
    assert m[f"rt/lines/service/svc/silent/failures/{failure}"] == 1
    assert m[f"rt/lines/server/127.0.0.1/{proxy.port}/status/503"] == 1
    # the connection stays usable for the next request
    silent.responder = lambda payload: "OK late"
    assert client.ask("silent again") == "OK late"
    stops_cleanly(proxy)


def test_an_attempt_deadline_does_not_fire_during_a_retry_backoff(
    lines_proxy, disco_dir, line_backend, line_client
):
    answers = iter(["RETRY busy"])
    backend = line_backend(lambda payload: next(answers, None), "slow")  # RETRY, then silence
    disco_dir.write("slow", at(backend))
    retries = {"budget": {"minRetriesPerSec": 10}, "backoff": {"kind": "constant", "ms": 400}}
    proxy = lines_proxy(
        router={
            "service": {"kind": "io.l5d.global", "retries": retries},
            "client": {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 200},
        }
    )
    started = time.monotonic()
    answer = line_client(proxy.port).ask("slow x")
    assert answer == "ERR 503 exceeded requestAttemptTimeoutMs of 200 ms"
    assert time.monotonic() - started >= 0.6  # the backoff, then the second attempt's deadline
    assert backend.requests == ["x", "x"]  # one retry, not a second one from a stale timer
    assert metrics(proxy)["rt/lines/service/svc/slow/retries/total"] == 1
    (state,) = get_json(proxy, "/client_state.json")["/#/io.l5d.fs/slow"]["endpoints"]
    assert state["load"] == 0


# -- failure accrual -------------------------------------------------------------------------


def test_consecutive_failures_eject_the_failing_endpoint(
    lines_proxy, disco_dir, line_backend, line_client
):
    good = line_backend(lambda payload: "OK good", "good")
    bad = line_backend(lambda payload: "ERR broken", "bad")
    disco_dir.write("pair", at(good), at(bad))
    accrual = {
        "kind": "io.l5d.consecutiveFailures",
        "failures": 3,
        "backoff": {"kind": "constant", "ms": 600_000},  # (no probe during the test)
    }
    proxy = lines_proxy(
        router={
            "client": {
                "kind": "io.l5d.global",
                "loadBalancer": {"kind": "roundRobin"},
                "failureAccrual": accrual,
            }
        }
    )
    client = line_client(proxy.port)
    before = []
    while bad.count < 3 and len(before) < 100:
        before.append(client.ask("pair x"))
    assert bad.count == 3
    assert before.count("ERR broken") == 3
    assert set(before) == {"OK good", "ERR broken"}

    after = [client.ask("pair x") for _ in range(20)]
    assert after == ["OK good"] * 20
    assert bad.count == 3  # it got nothing more

    state = get_json(proxy, "/client_state.json")["/#/io.l5d.fs/pair"]
    endpoints = {e["address"]: e for e in state["endpoints"]}
    assert endpoints[f"127.0.0.1:{bad.port}"]["state"] == "ejected"
    assert endpoints[f"127.0.0.1:{bad.port}"]["ejections"] == 1
    assert endpoints[f"127.0.0.1:{good.port}"]["state"] == "open"
    m = metrics(proxy)
    client_scope = "rt/lines/client/#/io.l5d.fs/pair"
    assert m[f"{client_scope}/failure_accrual/removals"] == 1
    assert m[f"{client_scope}/endpoint/127.0.0.1:{bad.port}/ejections"] == 1
    assert m[f"{client_scope}/available"] == 1


# -- stats -----------------------------------------------------------------------------------


def test_server_service_and_client_stats(lines_proxy, disco_dir, line_backend, line_client):
    web = line_backend(lambda payload: f"OK {payload}", "web")
    broken = line_backend(lambda payload: "ERR no", "broken")
    disco_dir.write("web", at(web))
    disco_dir.write("broken", at(broken))
    proxy = lines_proxy()
    client = line_client(proxy.port)
    assert [client.ask(f"web {i}") for i in range(5)] == [f"OK {i}" for i in range(5)]
    assert [client.ask("broken x") for _ in range(2)] == ["ERR no"] * 2
    assert client.ask("nope x").startswith("ERR 502 ")

    server = f"rt/lines/server/127.0.0.1/{proxy.port}"
    assert wait_until(lambda: metrics(proxy).get(f"{server}/requests") == 8, timeout=10)
    m = metrics(proxy)
    expected = {
        f"{server}/requests": 8,
        f"{server}/success": 5,
        f"{server}/failures": 3,
        f"{server}/status/200": 5,
        f"{server}/status/500": 2,
        f"{server}/status/502": 1,
        f"{server}/failures/no_route": 1,
        "rt/lines/service/svc/web/requests": 5,
        "rt/lines/service/svc/web/success": 5,
        "rt/lines/service/svc/web/failures": 0,
        "rt/lines/service/svc/broken/requests": 2,
        "rt/lines/service/svc/broken/failures": 2,
        "rt/lines/service/svc/nope/failures": 1,
        "rt/lines/client/#/io.l5d.fs/web/requests": 5,
        "rt/lines/client/#/io.l5d.fs/web/success": 5,
        "rt/lines/client/#/io.l5d.fs/web/connects": 1,
        "rt/lines/client/#/io.l5d.fs/broken/requests": 2,
        "rt/lines/client/#/io.l5d.fs/broken/failures": 2,
    }
    assert {k: m.get(k) for k in expected} == expected
    assert m[f"{server}/request_latency_ms.count"] == 8
    assert m[f"{server}/status/5XX"] == 3
    assert m["rt/lines/client/#/io.l5d.fs/web/request_latency_ms.count"] == 5
    assert m[f"{server}/connects"] >= 1  # (turnout's start-up probe connects too)


# -- spans -----------------------------------------------------------------------------------

TRACELOG = [{"kind": "io.l5d.tracelog", "sampleRate": 1.0, "level": "INFO"}]


def test_a_request_is_a_server_span_and_a_client_span(
    lines_proxy, disco_dir, line_backend, line_client
):
    web = line_backend(lambda payload: f"OK {payload}", "web")
    disco_dir.write("web", at(web))
    proxy = lines_proxy(telemetry=TRACELOG)
    assert line_client(proxy.port).ask("web traced") == "OK traced"
    assert wait_until(lambda: len(spans(proxy)) >= 2, timeout=10), proxy.log()
    by_kind = {span["kind"]: span for span in spans(proxy)}
    server, client = by_kind["SERVER"], by_kind["CLIENT"]
    assert len(spans(proxy)) == 2
    assert server["name"] == client["name"] == "lines"
    assert server["traceId"] == client["traceId"]
    assert client["parentId"] == server["id"]
    assert server["tags"]["l5d.router"] == "lines"
    assert server["tags"]["l5d.service"] == "/svc/web"
    assert server["tags"]["l5d.client"] == client["tags"]["l5d.client"] == "/#/io.l5d.fs/web"
    assert server["tags"]["l5d.status"] == client["tags"]["l5d.status"] == "200"
    assert server["remote"].startswith("127.0.0.1:")
    assert client["remote"] == f"127.0.0.1:{web.port}"
    assert server["error"] is None and client["error"] is None


def test_a_retry_is_a_second_client_span_of_the_same_server_span(
    lines_proxy, disco_dir, line_backend, line_client
):
    answers = iter(["RETRY busy", "OK done"])
    flaky = line_backend(lambda payload: next(answers), "flaky")
    disco_dir.write("flaky", at(flaky))
    proxy = lines_proxy(router={"service": RETRIES}, telemetry=TRACELOG)
    assert line_client(proxy.port).ask("flaky job") == "OK done"
    assert wait_until(lambda: len(spans(proxy)) >= 3, timeout=10), proxy.log()
    found = spans(proxy)
    (server,) = [s for s in found if s["kind"] == "SERVER"]
    clients = [s for s in found if s["kind"] == "CLIENT"]
    assert len(clients) == 2
    assert {c["parentId"] for c in clients} == {server["id"]}
    assert sorted(c["tags"]["l5d.status"] for c in clients) == ["200", "503"]
    assert server["tags"]["l5d.retries"] == "1"
    assert server["tags"]["l5d.service"] == "/svc/flaky"
    stops_cleanly(proxy)
