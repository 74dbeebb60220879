"""The core request stack (turnout.router.stack), piece by piece, driven by a protocol with no
bytes at all: ``Lines`` below implements the protocol hooks by recording what the stack asks
of it, and each test plays the endpoints' part by calling the stack's entry points."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path as FsPath
from typing import Any

import pytest
from turnout.config import load_text
from turnout.linker import Linker
from turnout.metrics import MetricsTree
from turnout.naming import Dtab, Path
from turnout.plugin_manager import load_plugins
from turnout.router import Router, accrual_for, balancer_for
from turnout.router.endpoint import Endpoint
from turnout.router.stack import (
    FAILURE,
    MAX_REQUEUES,
    RETRYABLE,
    Call,
    Counts,
    RequestStack,
    ServerStats,
)
from turnout.tracing import Span, Tracer, Tracing

FAKE_HTTP = FsPath(__file__).parents[1] / "plugins" / "turnout_fake_http.py"

BASE = """
admin: {port: 0}
routers:
- protocol: http
  label: lines
  dtab: |
    /svc/one => /$/inet/127.0.0.1/1001;
    /svc/two => /$/inet/127.0.0.1/2001 & /$/inet/127.0.0.1/2002;
    /svc/none => /$/fail;
  servers: [{port: 0}]
"""


def fake_http() -> Any:
    name = "turnout_fake_http"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FAKE_HTTP)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class Req(Call):
    """A request of the byte-less protocol."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.answers: list[tuple[int, str]] = []


class Lines(RequestStack):
    """The protocol hooks, recording what the stack asks for."""

    def __init__(self, extra: str = "", tracing: Tracing | None = None) -> None:
        plugins = load_plugins({}, autoload=False, extra=[fake_http()])
        config_text = BASE + extra
        linker = Linker.build(
            load_text(config_text, registry=plugins.registry), plugins, routers=False
        )
        config = linker.config.routers[0]
        metrics = MetricsTree()
        core = Router(
            config,
            linker.interpreters[config.effective_label],
            metrics,
            new_pool=lambda address, client: None,
            balancer_factory=balancer_for,
            accrual_factory=accrual_for,
            counts_factory=Counts,
        )
        super().__init__(core, metrics, "lines", config.dtab, tracing, 1.0)
        self.stats = ServerStats(metrics, ("rt", "lines", "server", "127.0.0.1", "0"))
        self.sent: list[tuple[Req, Endpoint]] = []
        self.cancelled: list[Req] = []
        self.done: list[tuple[Req, bool]] = []
        self.can_resend = True
        self.timeout: float | None = None

    # protocol hooks
    def send(self, call: Call, endpoint: Endpoint) -> None:
        assert isinstance(call, Req)
        call.written = True
        self.sent.append((call, endpoint))

    def cancel_attempt(self, call: Call) -> None:
        assert isinstance(call, Req)
        self.cancelled.append(call)

    def fail(self, call: Call, status: int, message: str, summary: str | None = None) -> None:
        assert isinstance(call, Req)
        call.answers.append((status, message))
        call.status = status
        self.release_endpoint(call, success=status < 500)
        self.finish(call, status < 500)

    def resendable(self, call: Call) -> bool:
        return self.can_resend

    def server_timeout(self, call: Call) -> float | None:
        return self.timeout

    def server_stats(self, call: Call) -> ServerStats:
        return self.stats

    def finished(self, call: Call, success: bool, elapsed_ms: float) -> None:
        assert isinstance(call, Req)
        self.done.append((call, success))

    # what a protocol's reader does
    def request(self, name: str) -> Req:
        call = Req(asyncio.get_running_loop().time())
        call.dst = Path.read(name)
        self.routed(call, self.route_to(call.dst, Dtab.empty), call.start)
        return call

    def respond(self, call: Req, success: bool, status: int = 200) -> None:
        call.status = status
        call.response_started = True
        self.disarm(call)
        self.complete(call, success)

    def counter(self, *name: str) -> int:
        return self.metrics.counter(*name).value  # type: ignore[no-any-return]  # (an int)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


async def settle(stack: Lines, count: int) -> None:
    """Wait until ``count`` attempts were sent (binding happens in a task)."""
    for _ in range(400):
        if len(stack.sent) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{len(stack.sent)} attempts sent, expected {count}")


# -- routing --------------------------------------------------------------------------------
def test_a_bound_name_is_sent_to_its_endpoint_and_counted_as_a_success() -> None:
    async def go() -> None:
        stack = Lines()
        call = stack.request("/svc/one")
        await settle(stack, 1)
        ((sent, endpoint),) = stack.sent
        assert sent is call and endpoint.address.port == 1001 and endpoint.load == 1
        stack.respond(call, True)
        assert endpoint.load == 0 and stack.done == [(call, True)]
        assert stack.stats.counts.success == 1 and stack.stats.codes[200].value == 1
        assert call.extras is not None and call.extras.service_counts.success == 1
        assert call.client is not None and call.client.stats.counts.success == 1

    run(go())


def test_a_name_that_does_not_bind_is_answered_502_with_the_dtab_explained() -> None:
    async def go() -> None:
        stack = Lines()
        call = stack.request("/svc/none")
        for _ in range(400):
            if call.finished:
                break
            await asyncio.sleep(0.005)
        ((status, message),) = call.answers
        assert status == 502 and "Unable to route request!" in message
        assert "service name: /svc/none" in message and "/svc/none=>/$/fail" in message
        assert call.failure == "no_route" and stack.sent == []
        assert stack.counter("rt", "lines", "server", "127.0.0.1", "0", "failures", "no_route") == 1

    run(go())


# -- retry ----------------------------------------------------------------------------------
RETRIES = """
  service:
    kind: io.l5d.global
    retries:
      budget: {minRetriesPerSec: 5, percentCanRetry: 0.0}
      backoff: {kind: constant, ms: 0}
"""


def test_a_retryable_failure_is_sent_again_within_the_budget() -> None:
    async def go() -> None:
        stack = Lines(RETRIES)
        call = stack.request("/svc/two")
        await settle(stack, 1)
        _, first = stack.sent[0]
        assert stack.may_retry(call, asyncio.get_running_loop().time())
        stack.release_endpoint(call, success=False)
        stack.retry(call)
        await settle(stack, 2)
        assert call.attempts == 2
        stack.respond(call, True)
        assert first.load == 0 and stack.sent[1][1].load == 0
        service = call.route.service.scope  # type: ignore[union-attr]
        assert stack.counter(*service, "retries", "total") == 1
        assert stack.done == [(call, True)]

    run(go())


def test_no_retry_without_budget_body_or_when_draining() -> None:
    async def go() -> None:
        stack = Lines(RETRIES)
        call = stack.request("/svc/one")
        await settle(stack, 1)
        now = asyncio.get_running_loop().time()
        stack.can_resend = False  # a streamed body
        assert not stack.may_retry(call, now)
        stack.can_resend = True
        stack.draining = True
        assert not stack.may_retry(call, now)
        stack.draining = False
        allowed = sum(stack.may_retry(call, now) for _ in range(100))
        # (the budget: 5 retries per second over a 10 s window, no percentage of requests)
        assert 0 < allowed < 100
        service = call.route.service.scope  # type: ignore[union-attr]
        assert stack.counter(*service, "retries", "budget_exhausted") == 100 - allowed

    run(go())


def test_a_service_without_retries_never_retries() -> None:
    async def go() -> None:
        stack = Lines()
        call = stack.request("/svc/one")
        await settle(stack, 1)
        assert not stack.may_retry(call, asyncio.get_running_loop().time())

    run(go())


# -- requeue --------------------------------------------------------------------------------
def test_a_request_never_written_is_requeued_at_once_and_at_most_max_requeues_times() -> None:
    async def go() -> None:
        stack = Lines()
        call = stack.request("/svc/two")
        await settle(stack, 1)
        for _ in range(MAX_REQUEUES + 3):
            if call.finished:
                break
            call.failure = "connect"
            stack.requeue_or_fail(call, "connect failed", never_written=True)
        assert call.requeues == MAX_REQUEUES
        assert len(stack.sent) == MAX_REQUEUES + 1
        assert call.answers == [(502, "connect failed")]
        assert call.client is not None and call.client.stats.requeues.value == MAX_REQUEUES
        assert all(endpoint.load == 0 for _, endpoint in stack.sent)

    run(go())


def test_a_written_request_is_not_requeued() -> None:
    async def go() -> None:
        stack = Lines()
        call = stack.request("/svc/two")
        await settle(stack, 1)
        stack.requeue_or_fail(call, "reset", never_written=False)
        assert call.answers == [(502, "reset")] and len(stack.sent) == 1

    run(go())


# -- deadline -------------------------------------------------------------------------------
def test_the_nearest_deadline_wins_and_a_total_timeout_answers_503() -> None:
    async def go() -> None:
        stack = Lines(
            """
  service: {kind: io.l5d.global, totalTimeoutMs: 200}
  client: {kind: io.l5d.global, requestAttemptTimeoutMs: 5000}
"""
        )
        stack.timeout = 10.0
        call = stack.request("/svc/one")
        await settle(stack, 1)
        assert stack.deadline(call, call.attempt_start) == pytest.approx(call.start + 0.2)
        loop = asyncio.get_running_loop()
        while not call.finished and loop.time() < call.start + 10:
            await asyncio.sleep(0.01)
        assert loop.time() >= call.start + 0.2  # never early
        assert call.answers == [(503, "exceeded totalTimeoutMs of 200 ms")]
        assert stack.cancelled == [call] and call.failure == "total_timeout"
        _, endpoint = stack.sent[0]
        assert endpoint.load == 0

    run(go())


def test_an_attempt_timeout_with_budget_is_retried_on_another_attempt() -> None:
    async def go() -> None:
        stack = Lines(
            RETRIES
            + """
  client: {kind: io.l5d.global, requestAttemptTimeoutMs: 100}
"""
        )
        call = stack.request("/svc/two")
        await settle(stack, 1)
        call.written = False  # (the classifier's default: retryable when never written)
        await settle(stack, 2)
        stack.respond(call, True)
        assert call.attempts == 2 and stack.cancelled == [call]
        assert stack.done == [(call, True)] and call.timer is None

    run(go())


def test_a_response_that_began_disarms_the_deadline() -> None:
    async def go() -> None:
        stack = Lines("""
  service: {kind: io.l5d.global, totalTimeoutMs: 100}
""")
        call = stack.request("/svc/one")
        await settle(stack, 1)
        call.response_started = True
        stack.disarm(call)
        await asyncio.sleep(0.3)
        assert not call.finished and call.answers == []
        stack.complete(call, True)
        assert stack.done == [(call, True)]

    run(go())


# -- feedback -------------------------------------------------------------------------------
def test_failures_reach_failure_accrual_and_eject_the_endpoint(tmp_path: FsPath) -> None:
    (tmp_path / "pair").write_text("127.0.0.1 2001\n127.0.0.1 2002\n")

    async def go() -> None:
        stack = Lines(
            f"""
  client:
    kind: io.l5d.global
    failureAccrual: {{kind: io.l5d.consecutiveFailures, failures: 3}}
namers:
- {{kind: io.l5d.fs, rootDir: {tmp_path}}}
"""
        )
        for _ in range(40):
            before = len(stack.sent)
            call = stack.request("/#/io.l5d.fs/pair")
            await settle(stack, before + 1)
            _, endpoint = stack.sent[-1]
            stack.respond(
                call, endpoint.address.port == 2002, 200 if endpoint.address.port == 2002 else 500
            )
        late = [endpoint.address.port for _, endpoint in stack.sent[-10:]]
        assert late == [2002] * 10  # 2001 was ejected after 3 failures in a row
        client = stack.sent[-1][1]
        assert client.address.port == 2002
        assert stack.sent[-1][0].client.stats.counts.failures >= 3  # type: ignore[union-attr]

    run(go())


def test_classify_error_defaults_to_retryable_only_when_never_written() -> None:
    stack = RequestStack.__new__(RequestStack)
    call = Call(0.0)
    assert stack.classify_error(call) == RETRYABLE
    call.written = True
    assert stack.classify_error(call) == FAILURE


# -- stats ----------------------------------------------------------------------------------
def test_failures_are_counted_by_class_under_server_service_and_client() -> None:
    async def go() -> None:
        stack = Lines()
        call = stack.request("/svc/one")
        await settle(stack, 1)
        call.failure = "connection_closed"
        stack.requeue_or_fail(call, "closed", never_written=False)
        server = ("rt", "lines", "server", "127.0.0.1", "0")
        assert stack.counter(*server, "failures", "connection_closed") == 1
        assert stack.counter(*call.route.service.scope, "failures", "connection_closed") == 1  # type: ignore[union-attr]
        assert stack.counter(*call.client.scope, "failures", "connection_closed") == 1  # type: ignore[union-attr]
        assert stack.stats.counts.failures == 1 and stack.stats.codes[502].value == 1

    run(go())


# -- spans ----------------------------------------------------------------------------------
def test_a_traced_request_records_a_client_and_a_server_span() -> None:
    class Collector(Tracer):
        sample_rate = 1.0

        def __init__(self) -> None:
            self.spans: list[Span] = []

        def record(self, span: Span) -> None:
            self.spans.append(span)

    async def go() -> None:
        collector = Collector()
        tracing = Tracing([collector])
        stack = Lines(tracing=tracing)
        call = Req(asyncio.get_running_loop().time())
        call.dst = Path.read("/svc/one")
        call.trace = tracing.server(None)
        stack.routed(call, stack.route_to(call.dst, Dtab.empty), call.start)
        await settle(stack, 1)
        assert call.trace.client_span != 0  # (started by the attempt)
        stack.respond(call, True)
        kinds = sorted(span.kind for span in collector.spans)
        assert kinds == ["CLIENT", "SERVER"]
        server = next(s for s in collector.spans if s.kind == "SERVER")
        assert server.tags["l5d.router"] == "lines" and server.tags["l5d.service"] == "/svc/one"
        assert server.tags["l5d.status"] == "200" and server.name == "request"

    run(go())


def test_an_attempt_deadline_does_not_run_during_the_retry_backoff() -> None:
    async def go() -> None:
        stack = Lines(
            """
  service:
    kind: io.l5d.global
    retries:
      budget: {minRetriesPerSec: 5, percentCanRetry: 0.0}
      backoff: {kind: constant, ms: 400}
  client: {kind: io.l5d.global, requestAttemptTimeoutMs: 100}
"""
        )
        call = stack.request("/svc/one")
        await settle(stack, 1)
        call.written = False  # (retryable when it times out)
        await settle(stack, 2)  # the attempt timed out, and after the backoff went again
        await asyncio.sleep(0.2)
        assert len(stack.sent) == 2 and call.attempts == 2
        assert stack.counter(*call.route.service.scope, "retries", "total") == 1  # type: ignore[union-attr]
        stack.respond(call, True)
        assert all(endpoint.load == 0 for _, endpoint in stack.sent)

    run(go())


def test_a_total_deadline_that_passes_during_the_backoff_answers_503() -> None:
    async def go() -> None:
        stack = Lines(
            """
  service:
    kind: io.l5d.global
    totalTimeoutMs: 300
    retries:
      budget: {minRetriesPerSec: 5, percentCanRetry: 0.0}
      backoff: {kind: constant, ms: 2000}
"""
        )
        call = stack.request("/svc/one")
        await settle(stack, 1)
        stack.release_endpoint(call, success=False)
        stack.retry(call)  # a retryable answer: the backoff (2 s) outlasts the deadline
        loop = asyncio.get_running_loop()
        while not call.finished and loop.time() < call.start + 10:
            await asyncio.sleep(0.01)
        assert call.answers == [(503, "exceeded totalTimeoutMs of 300 ms")]
        await asyncio.sleep(0.1)
        assert len(stack.sent) == 1  # no attempt after the deadline

    run(go())


def test_housekeeping_expires_unused_routes() -> None:
    async def go() -> None:
        stack = Lines("""
  bindingCache: {idleTtlSecs: 1}
""")
        call = stack.request("/svc/one")
        await settle(stack, 1)
        stack.respond(call, True)
        assert stack.core.routes
        task = asyncio.get_running_loop().create_task(stack.housekeeping())
        try:
            for _ in range(100):
                if not stack.core.routes:
                    break
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
        assert not stack.core.routes

    run(go())
