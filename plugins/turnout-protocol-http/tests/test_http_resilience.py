"""Failure accrual, retries, timeouts, requeues, pool limits and per-prefix policy, end to end:
a real turnout process in front of recording backends that fail, stall or go away."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from collections import Counter

import pytest
from turnout.testing import http_request, wait_until
from turnout.testing.backend import http_response

pytestmark = [pytest.mark.integration]

CLIENT = "rt/http/client/#/io.l5d.fs/web"
SERVICE = "rt/http/service/svc/web"


def metrics(proxy) -> dict:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=5) as r:
        return json.load(r)


def ep(backend) -> str:
    """How turnout names a backend's endpoint in stats and client state."""
    return f"127.0.0.1:{backend.port}"


def client_state(proxy) -> dict:
    with urllib.request.urlopen(proxy.admin_url + "/client_state.json", timeout=5) as r:
        return json.load(r)


class Flaky:
    """A responder that answers ``status`` while ``failing`` is set, else 200 (and counts)."""

    def __init__(self, name: str, status: int = 500, *, failing: bool = True, headers=()):
        self.name = name
        self.status = status
        self.failing = failing
        self.headers = list(headers)
        self.served = Counter()
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, req) -> bytes:
        with self.lock:
            status = self.status if self.failing else 200
            self.served[status] += 1
            self.bodies.append(req.body)
        return http_response(status, f"{self.name} {status}\n".encode(), self.headers)


class Every:
    """Fail every ``n``-th request with ``status`` (a deterministic ``fraction`` of 1/n)."""

    def __init__(self, name: str, n: int, status: int = 503) -> None:
        self.name, self.n, self.status = name, n, status
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, req) -> bytes:
        with self.lock:
            self.count += 1
            fail = self.count % self.n == 0
        status = self.status if fail else 200
        return http_response(status, f"{self.name} {status}\n".encode())


def send(port: int, n: int, host: str = "web", method: str = "GET", body: bytes | None = None):
    """``n`` sequential requests on one keep-alive connection: the statuses, and bodies."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out: list[tuple[int, bytes]] = []
    try:
        for _ in range(n):
            conn.request(method, "/", body=body, headers={"Host": host})
            r = conn.getresponse()
            out.append((r.status, r.read()))
            if r.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    finally:
        conn.close()
    return out


def policy(client: dict | None = None, service: dict | None = None) -> dict:
    router: dict = {}
    if client is not None:
        router["client"] = {"kind": "io.l5d.global", **client}
    if service is not None:
        router["service"] = {"kind": "io.l5d.global", **service}
    return router


# -- failure accrual ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_failing_endpoint_is_ejected_probed_and_restored(http_proxy, disco_dir, recording_backend):
    good = [recording_backend(name=f"good{i}") for i in range(2)]
    flaky = Flaky("bad", 500)
    bad = recording_backend(flaky, name="bad")
    disco_dir.write("web", *good, bad)
    proxy = http_proxy(
        router=policy(
            client={
                "loadBalancer": {"kind": "roundRobin"},
                "failureAccrual": {
                    "kind": "io.l5d.consecutiveFailures",
                    "failures": 3,
                    "backoff": {"kind": "constant", "ms": 1500},
                },
            }
        )
    )
    results = send(proxy.port, 60)
    # round robin sends every third request to the bad endpoint until its third failure
    assert bad.request_count == 3
    assert Counter(s for s, _ in results) == {200: 57, 500: 3}
    m = metrics(proxy)
    assert m[f"{CLIENT}/failure_accrual/removals"] == 1
    assert m[f"{CLIENT}/available"] == 2
    assert m[f"{CLIENT}/endpoint/{ep(bad)}/available"] == 0
    assert m[f"{CLIENT}/endpoint/{ep(bad)}/ejections"] == 1
    states = {
        e["address"]: e["state"] for e in client_state(proxy)["/#/io.l5d.fs/web"]["endpoints"]
    }
    assert states[ep(bad)] == "ejected"
    assert states[ep(good[0])] == "open"

    # after the backoff one probe goes to it; it still fails: ejected again, nothing more sent
    time.sleep(1.6)
    results = send(proxy.port, 30)
    assert bad.request_count == 4
    assert Counter(s for s, _ in results) == {200: 29, 500: 1}
    m = metrics(proxy)
    assert m[f"{CLIENT}/failure_accrual/probes"] == 1
    assert m[f"{CLIENT}/failure_accrual/removals"] == 2

    # it recovers: the next probe succeeds and it takes its share again
    flaky.failing = False
    time.sleep(1.6)
    results = send(proxy.port, 30)
    assert all(s == 200 for s, _ in results)
    assert bad.request_count >= 4 + 9
    m = metrics(proxy)
    assert m[f"{CLIENT}/failure_accrual/revivals"] == 1
    assert m[f"{CLIENT}/available"] == 3


@pytest.mark.timeout(60)
def test_every_endpoint_ejected_still_forwards(http_proxy, disco_dir, recording_backend):
    """Finagle's rule: with every endpoint ejected, requests are still sent (not refused)."""
    flaky = [Flaky(f"b{i}", 500) for i in range(2)]
    backends = [recording_backend(f, name=f"b{i}") for i, f in enumerate(flaky)]
    disco_dir.write("web", *backends)
    proxy = http_proxy(
        router=policy(
            client={
                "failureAccrual": {
                    "kind": "io.l5d.consecutiveFailures",
                    "failures": 1,
                    "backoff": {"kind": "constant", "ms": 60000},
                }
            }
        )
    )
    send(proxy.port, 10)
    assert metrics(proxy)[f"{CLIENT}/available"] == 0
    for f in flaky:
        f.failing = False
    results = send(proxy.port, 20)
    assert all(s == 200 for s, _ in results)  # the backends answer; turnout does not refuse
    assert sum(b.request_count for b in backends) == 30


@pytest.mark.timeout(60)
def test_success_rate_accrual(http_proxy, disco_dir, recording_backend):
    ok = recording_backend(name="ok")
    bad = recording_backend(Every("bad", 2, status=500), name="bad")  # 50% failures
    disco_dir.write("web", ok, bad)
    proxy = http_proxy(
        router=policy(
            client={
                "loadBalancer": {"kind": "roundRobin"},
                "failureAccrual": {
                    "kind": "io.l5d.successRate",
                    "successRate": 0.9,
                    "requests": 10,
                    "backoff": {"kind": "constant", "ms": 60000},
                },
            }
        )
    )
    send(proxy.port, 200)
    assert 10 <= bad.request_count <= 20  # judged after ten requests, then ejected
    assert metrics(proxy)[f"{CLIENT}/failure_accrual/removals"] == 1


# -- retries ------------------------------------------------------------------------------------


RETRY_READS = {"kind": "io.l5d.http.retryableRead5XX"}
#: round robin without failure accrual: requests alternate between the endpoints, failing or not
TAKE_TURNS = {"loadBalancer": {"kind": "roundRobin"}, "failureAccrual": {"kind": "none"}}


def bad_and_good(recording_backend, disco_dir, bad: Flaky | None = None):
    """Service ``web``: a backend answering 503 (or as ``bad`` says) and a healthy one."""
    bad_backend = recording_backend(bad or Flaky("bad", 503), name="bad")
    good = recording_backend(name="good")
    disco_dir.write("web", bad_backend, good)
    return bad_backend, good


@pytest.mark.timeout(60)
def test_retryable_failures_are_retried_on_another_endpoint(
    http_proxy, disco_dir, recording_backend
):
    bad, good = bad_and_good(recording_backend, disco_dir)
    proxy = http_proxy(
        router=policy(
            client=TAKE_TURNS,
            service={"responseClassifier": RETRY_READS, "retries": {}},
        )
    )
    results = send(proxy.port, 40)
    assert all(s == 200 for s, _ in results)  # every 503 was retried (default budget: 10/s)
    # round robin: each request meets `bad` first (but maybe the very first), then `good`
    assert bad.request_count in (39, 40) and good.request_count == 40
    m = metrics(proxy)
    assert m[f"{SERVICE}/retries/total"] == bad.request_count
    assert m[f"{SERVICE}/success"] == 40 and m[f"{SERVICE}/failures"] == 0
    assert m[f"{SERVICE}/retries/per_request.count"] == 40
    assert round(m[f"{SERVICE}/retries/per_request.max"]) == 1


@pytest.mark.timeout(60)
def test_retries_stay_within_the_budget(http_proxy, disco_dir, recording_backend):
    bad, good = bad_and_good(recording_backend, disco_dir)
    proxy = http_proxy(
        router=policy(
            client=TAKE_TURNS,
            service={
                "responseClassifier": RETRY_READS,
                "retries": {
                    "budget": {"minRetriesPerSec": 0, "percentCanRetry": 0.2, "ttlSecs": 60}
                },
            },
        )
    )
    results = send(proxy.port, 100)
    statuses = Counter(s for s, _ in results)
    m = metrics(proxy)
    retries = m[f"{SERVICE}/retries/total"]
    # about half the requests meet the bad endpoint first; only 20% of requests may retry
    assert 10 <= retries <= 0.2 * 100 + 1
    assert statuses[200] == 100 - statuses[503]
    assert statuses[503] >= 20  # the rest of the 503s came back: the budget was spent
    assert m[f"{SERVICE}/retries/budget_exhausted"] == statuses[503]
    assert bad.request_count + good.request_count == 100 + retries  # no hidden extra load


@pytest.mark.timeout(60)
def test_what_is_not_retried(http_proxy, disco_dir, recording_backend):
    """POST under retryableRead5XX, a non-retryable classifier, and a streamed body."""
    bad = recording_backend(Flaky("bad", 503), name="bad")
    disco_dir.write("web", bad)
    disco_dir.write("idem", bad)
    proxy = http_proxy(
        router={
            "service": {
                "kind": "io.l5d.static",
                "configs": [
                    {"prefix": "/svc", "retries": {}, "responseClassifier": RETRY_READS},
                    {
                        "prefix": "/svc/idem",
                        "responseClassifier": {"kind": "io.l5d.http.retryableIdempotent5XX"},
                    },
                ],
            }
        }
    )
    assert http_request(proxy.port, "POST", headers={"Host": "web"}, body=b"x").status == 503
    assert bad.request_count == 1  # POST is not a read
    assert http_request(proxy.port, "PUT", headers={"Host": "idem"}, body=b"x").status == 503
    # PUT is idempotent: retried, at most 25 times for one request (whatever the budget says)
    assert bad.request_count == 1 + 26
    bad.reset()
    chunked = http_request(
        proxy.port,
        "GET",
        headers={"Host": "web", "Transfer-Encoding": "chunked"},
        body=b"3\r\nabc\r\n0\r\n\r\n",
    )
    assert chunked.status == 503 and bad.request_count == 1  # a streamed body is never replayed


@pytest.mark.timeout(60)
def test_retried_request_body_is_sent_again_intact(http_proxy, disco_dir, recording_backend):
    bad_flaky = Flaky("bad", 503)
    good_flaky = Flaky("good", 503, failing=False)
    bad = recording_backend(bad_flaky, name="bad")
    good = recording_backend(good_flaky, name="good")
    disco_dir.write("web", bad, good)
    proxy = http_proxy(
        router=policy(
            client=TAKE_TURNS,
            service={
                "responseClassifier": {"kind": "io.l5d.http.retryableAll5XX"},
                "retries": {},
            },
        )
    )
    body = bytes(range(256)) * 16  # 4 KiB: under the 5 KiB replay limit
    results = send(proxy.port, 4, method="POST", body=body)
    assert [s for s, _ in results] == [200] * 4
    assert good_flaky.bodies == [body] * 4
    assert bad_flaky.bodies in ([body] * 3, [body] * 4)  # (the first request may go to `good`)


@pytest.mark.timeout(60)
def test_l5d_retryable_header_is_honoured(http_proxy, disco_dir, recording_backend):
    flaky = Flaky("bad", 503, headers=[("l5d-retryable", "true")])
    bad, _ = bad_and_good(recording_backend, disco_dir, flaky)
    proxy = http_proxy(
        router=policy(
            client=TAKE_TURNS,
            service={"retries": {}},  # the default classifier: nonRetryable5XX
        )
    )
    results = send(proxy.port, 10, method="POST", body=b"order")
    assert all(s == 200 for s, _ in results)
    assert bad.request_count in (9, 10)  # round robin: (nearly) every POST met `bad` once
    assert metrics(proxy)[f"{SERVICE}/retries/total"] == bad.request_count


@pytest.mark.timeout(60)
def test_retry_backoff_delays_the_next_attempt(http_proxy, disco_dir, recording_backend):
    bad_and_good(recording_backend, disco_dir)
    proxy = http_proxy(
        router=policy(
            client=TAKE_TURNS,
            service={
                "responseClassifier": RETRY_READS,
                "retries": {"backoff": {"kind": "constant", "ms": 300}},
            },
        )
    )
    send(proxy.port, 1)  # warm up: the first request went to `bad` and was retried
    start = time.monotonic()
    results = send(proxy.port, 2)  # good (fast), then bad -> 300 ms -> good
    assert [s for s, _ in results] == [200, 200]
    assert time.monotonic() - start >= 0.3


# -- timeouts -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_total_timeout_answers_503_with_l5d_err(http_proxy, disco_dir, recording_backend):
    slow = recording_backend(name="slow", delay=3.0)
    disco_dir.write("web", slow)
    proxy = http_proxy(router=policy(service={"totalTimeoutMs": 300}))
    start = time.monotonic()
    r = http_request(proxy.port, headers={"Host": "web"})
    elapsed = time.monotonic() - start
    assert r.status == 503
    assert "totalTimeoutMs" in (r.header("l5d-err") or "")
    # never early (turnout re-arms a timer that fires before its deadline); the upper bound
    # is the backend's delay: a loaded machine may be slow to answer, never wrong
    assert 0.3 <= elapsed < 3.0
    m = metrics(proxy)
    assert m[f"{SERVICE}/failures/total_timeout"] == 1


@pytest.mark.timeout(60)
def test_attempt_timeout_is_retried_on_a_faster_endpoint(http_proxy, disco_dir, recording_backend):
    slow = recording_backend(name="slow", delay=3.0)
    fast = recording_backend(name="fast")
    disco_dir.write("web", slow, fast)
    proxy = http_proxy(
        router=policy(
            client={
                "loadBalancer": {"kind": "roundRobin"},
                "failureAccrual": {"kind": "none"},
                "requestAttemptTimeoutMs": 200,
            },
            service={"responseClassifier": RETRY_READS, "retries": {}, "totalTimeoutMs": 2000},
        )
    )
    start = time.monotonic()
    results = send(proxy.port, 4)
    assert [s for s, _ in results] == [200] * 4
    assert all(b.startswith(b"fast") for _, b in results)
    assert time.monotonic() - start < 6.0  # attempts cut at 200 ms, not 4 x 3 s waits
    m = metrics(proxy)
    # round robin: each request meets `slow` first, times out there, and is retried on `fast`
    assert slow.request_count in (3, 4)  # (the first request may go to `fast`)
    assert m[f"{SERVICE}/retries/total"] == slow.request_count


@pytest.mark.timeout(60)
def test_attempt_timeout_without_retries_is_503(http_proxy, disco_dir, recording_backend):
    disco_dir.write("web", recording_backend(name="slow", delay=3.0))
    proxy = http_proxy(router=policy(client={"requestAttemptTimeoutMs": 200}))
    r = http_request(proxy.port, headers={"Host": "web"})
    assert r.status == 503
    assert "requestAttemptTimeoutMs" in (r.header("l5d-err") or "")


# -- requeues -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_connection_refused_is_requeued_on_another_endpoint(
    http_proxy, disco_dir, recording_backend
):
    from turnout.testing import free_port

    good = recording_backend(name="good")
    dead = f"127.0.0.1 {free_port()}"  # nothing listens there
    disco_dir.write("web", dead, good)
    proxy = http_proxy(router=policy(client={"loadBalancer": {"kind": "roundRobin"}}))
    results = send(proxy.port, 20)
    assert all(s == 200 for s, _ in results)
    assert good.request_count == 20
    assert metrics(proxy)[f"{CLIENT}/retries/requeues"] >= 1


@pytest.mark.timeout(60)
def test_requeue_budget_limits_requeues(http_proxy, disco_dir):
    from turnout.testing import free_port

    dead = [f"127.0.0.1 {free_port()}" for _ in range(3)]
    disco_dir.write("web", *dead)
    proxy = http_proxy(
        router=policy(
            client={
                "failureAccrual": {"kind": "none"},
                "requeueBudget": {"minRetriesPerSec": 1, "percentCanRetry": 0.0, "ttlSecs": 1},
            }
        )
    )
    r = http_request(proxy.port, headers={"Host": "web"})
    assert r.status == 502
    m = metrics(proxy)
    assert m[f"{CLIENT}/retries/requeues"] == 1  # the floor of one per second, then refused
    assert m[f"{CLIENT}/retries/budget_exhausted"] == 1


# -- connection pool ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_pool_max_size_and_max_waiters(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(name="slow", delay=0.5)
    disco_dir.write("web", backend)
    proxy = http_proxy(
        router=policy(client={"hostConnectionPool": {"maxSize": 1, "maxWaiters": 1}})
    )
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        r = http_request(proxy.port, headers={"Host": "web"})
        with lock:
            statuses.append(r.status)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 200, 503]  # one sent, one waited, one refused
    assert backend.connection_count == 1
    m = metrics(proxy)
    assert m[f"{CLIENT}/pool_num_too_many_waiters"] == 1
    assert m[f"{CLIENT}/pool_num_waited"] == 1
    assert m[f"{CLIENT}/pool_size"] == 1


@pytest.mark.timeout(60)
def test_pool_min_size_and_idle_time(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(name="b")
    disco_dir.write("web", backend)
    proxy = http_proxy(
        router=policy(client={"hostConnectionPool": {"minSize": 2, "idleTimeMs": 100}})
    )
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    # minSize connections are opened ahead of traffic and kept although idle past idleTimeMs
    assert wait_until(lambda: backend.connection_count >= 2, timeout=5)
    time.sleep(2.5)  # the sweeper runs every second
    assert metrics(proxy)[f"{CLIENT}/pool_size"] == 2


@pytest.mark.timeout(60)
def test_idle_connections_close_after_idle_time(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(name="b")
    disco_dir.write("web", backend)
    proxy = http_proxy(router=policy(client={"hostConnectionPool": {"idleTimeMs": 100}}))
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert metrics(proxy)[f"{CLIENT}/pool_size"] == 1
    assert wait_until(lambda: metrics(proxy)[f"{CLIENT}/pool_size"] == 0, timeout=5)


# -- per-prefix policy --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_static_prefix_configs_with_captures(http_proxy, disco_dir, recording_backend):
    slow = recording_backend(name="slow", delay=0.6)
    disco_dir.write("users-v2", slow)
    disco_dir.write("users", slow)
    disco_dir.write("orders-v2", slow)
    proxy = http_proxy(
        router={
            "client": {
                "kind": "io.l5d.static",
                "configs": [
                    {"prefix": "/#/io.l5d.fs/{service}-v2", "requestAttemptTimeoutMs": 100},
                    # later entries win: orders-v2 gets a longer attempt timeout back
                    {"prefix": "/#/io.l5d.fs/orders-v{n}", "requestAttemptTimeoutMs": 5000},
                ],
            },
            "service": {
                "kind": "io.l5d.static",
                "configs": [{"prefix": "/svc/*", "totalTimeoutMs": 3000}],
            },
        }
    )
    assert http_request(proxy.port, headers={"Host": "users-v2"}).status == 503  # matched
    assert http_request(proxy.port, headers={"Host": "users"}).status == 200  # not matched
    assert http_request(proxy.port, headers={"Host": "orders-v2"}).status == 200  # overridden


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("limit_kb", "retried"), [(None, False), (8, True)])
def test_bodies_over_stream_after_content_length_are_not_retried(
    http_proxy, disco_dir, recording_backend, limit_kb, retried
):
    """Bodies up to streamAfterContentLengthKB (default 5) are kept for a retry; larger ones
    are only streamed."""
    bad = recording_backend(Flaky("bad", 503), name="bad")
    disco_dir.write("web", bad)
    router = policy(
        service={"responseClassifier": {"kind": "io.l5d.http.retryableAll5XX"}, "retries": {}}
    )
    if limit_kb is not None:
        router["streamAfterContentLengthKB"] = limit_kb
    router["service"]["retries"] = {
        "budget": {"minRetriesPerSec": 1, "percentCanRetry": 0.0, "ttlSecs": 1}
    }
    proxy = http_proxy(router=router)
    body = b"x" * 6000
    r = http_request(proxy.port, "POST", headers={"Host": "web"}, body=body)
    assert r.status == 503
    assert bad.request_count == (2 if retried else 1)
    assert all(req.body == body for req in bad.requests)
