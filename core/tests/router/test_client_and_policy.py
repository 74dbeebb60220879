"""A client's endpoint set under namer updates, its outcomes, stats and state; per-prefix
client and service policy (``io.l5d.global`` / ``io.l5d.static``)."""

from __future__ import annotations

import time

import pytest
from turnout.builtin.balancers import (
    ConsecutiveFailuresConfig,
    EwmaConfig,
    P2CConfig,
    RoundRobinConfig,
)
from turnout.config import model
from turnout.metrics import MetricsTree
from turnout.naming import AddrBound, Address, AddrFailed, AddrNeg, NameBound, Path
from turnout.naming.addr import WEIGHT_KEY
from turnout.naming.matcher import PathMatcher
from turnout.naming.var import Var
from turnout.router import (
    Client,
    ConsecutiveFailures,
    P2CPeakEwma,
    RouteError,
    accrual_for,
    balancer_for,
    client_policy,
    constant_backoff,
    service_policy,
)


class FakePool:
    def __init__(self, address: Address) -> None:
        self.address = address
        self.draining = False
        self.closed = False

    def close_when_idle(self) -> None:
        self.draining = True

    def close(self) -> None:
        self.closed = True


def addrs(*ports: int, weights: dict[int, float] | None = None) -> AddrBound:
    weights = weights or {}
    return AddrBound(
        Address("127.0.0.1", p, {WEIGHT_KEY: weights[p]} if p in weights else None) for p in ports
    )


def make_client(
    addr=None, *, probation: bool = False, failures: int = 2
) -> tuple[Client, Var, MetricsTree]:
    var: Var = Var(addr if addr is not None else addrs(1, 2, 3))
    policy = client_policy(
        model.GlobalClientConfig(load_balancer=P2CConfig(enable_probation=probation)),
        Path.read("/#/io.l5d.fs/web"),
    )
    metrics = MetricsTree()
    client = Client(
        NameBound(Path.read("/#/io.l5d.fs/web"), var),
        policy,
        balancer_for(policy),
        ConsecutiveFailures(failures, constant_backoff(30.0)),
        lambda address, _client: FakePool(address),
        metrics,
        ("rt", "http", "client", "#", "io.l5d.fs", "web"),
    )
    return client, var, metrics


def ports(client: Client) -> list[int]:
    return [e.address.port for e in client.endpoints]


# -- endpoint set -------------------------------------------------------------------------------


def test_namer_updates_add_and_remove_endpoints_keeping_the_others():
    client, var, _ = make_client()
    assert ports(client) == [1, 2, 3]
    kept = client.endpoints[1]
    kept.load = 4  # a request in flight on :2
    var.update(addrs(2, 4))
    assert ports(client) == [2, 4]
    assert client.endpoints[0] is kept and kept.load == 4  # same object: in flight preserved
    assert set(client.balancer.endpoints) == set(client.endpoints)


def test_removed_endpoint_drains_its_pool():
    client, var, _ = make_client()
    gone = client.endpoints[0]
    var.update(addrs(2, 3))
    assert gone.pool.draining and not gone.pool.closed  # in-flight requests finish first


def test_weight_changes_reach_the_balancer():
    client, var, _ = make_client(addrs(1, 2))
    var.update(addrs(1, 2, weights={2: 3.0}))
    assert [e.weight for e in client.endpoints] == [1.0, 3.0]
    assert client.balancer._cumulative == [1.0, 4.0]


def test_failed_or_pending_discovery_keeps_the_last_good_set():
    client, var, _ = make_client()
    var.update(AddrFailed("consul is down"))
    assert ports(client) == [1, 2, 3]
    assert client.pick(time.monotonic()) is not None
    assert client.state()["state"] == "Failed: consul is down"


def test_negative_discovery_empties_the_set():
    client, var, _ = make_client()
    var.update(AddrNeg)
    assert client.endpoints == []
    with pytest.raises(RouteError) as info:
        client.pick(time.monotonic())
    assert info.value.kind == "no-endpoints"


def test_probation_keeps_a_removed_healthy_endpoint_until_it_fails():
    client, var, _ = make_client(probation=True)
    var.update(addrs(2, 3))
    assert ports(client) == [1, 2, 3]  # still used: discovery may be flapping
    kept = client.endpoints[0]
    assert kept.removed and kept.state(time.monotonic()) == "removed (probation)"
    client.record(kept, True, time.monotonic(), 0.001)
    assert ports(client) == [1, 2, 3]
    client.record(kept, False, time.monotonic(), 0.001)  # its first failure ends probation
    assert ports(client) == [2, 3]
    assert kept.pool.draining


def test_probation_ends_when_the_endpoint_comes_back():
    client, var, _ = make_client(probation=True)
    var.update(addrs(2, 3))
    var.update(addrs(1, 2, 3))
    assert not client.endpoints[0].removed


def test_without_probation_removal_is_immediate():
    client, var, _ = make_client(probation=False)
    var.update(addrs(2, 3))
    assert ports(client) == [2, 3]


# -- outcomes and stats -------------------------------------------------------------------------


def test_failures_eject_and_the_stats_show_it():
    client, _, metrics = make_client(failures=2)
    bad = client.endpoints[0]
    now = time.monotonic()
    client.record(bad, False, now, 0.01)
    client.record(bad, False, now, 0.01)
    flat = metrics.flat()
    scope = "rt/http/client/#/io.l5d.fs/web"
    assert flat[f"{scope}/failure_accrual/removals"] == 1
    assert flat[f"{scope}/available"] == 2
    assert flat[f"{scope}/loadbalancer/size"] == 3
    assert flat[f"{scope}/endpoint/127.0.0.1:1/available"] == 0
    assert flat[f"{scope}/endpoint/127.0.0.1:1/ejections"] == 1
    for _ in range(100):
        assert client.pick(time.monotonic()) is not bad
    state = client.state()
    assert state["endpoints"][0]["state"] == "ejected"
    assert 0 < state["endpoints"][0]["ejectedForMs"] <= 30_000


def test_every_endpoint_ejected_still_serves():
    client, _, _ = make_client(failures=1)
    now = time.monotonic()
    for e in client.endpoints:
        client.record(e, False, now, 0.01)
    assert client.available_count() == 0
    assert client.pick(now) in client.endpoints


def test_success_of_a_healthy_endpoint_skips_failure_accrual():
    client, _, _ = make_client()
    e = client.endpoints[0]
    calls = []
    client.accrual.record = lambda *a: calls.append(a)  # type: ignore[method-assign]
    client.record(e, True, time.monotonic(), 0.01)
    assert calls == []  # the fast path: nothing for ConsecutiveFailures to learn
    client.record(e, False, time.monotonic(), 0.01)
    assert len(calls) == 1


def test_ewma_client_feeds_latencies_to_the_balancer():
    policy = client_policy(
        model.GlobalClientConfig(load_balancer=EwmaConfig()), Path.read("/#/io.l5d.fs/web")
    )
    balancer = balancer_for(policy)
    assert isinstance(balancer, P2CPeakEwma)
    client = Client(
        NameBound(Path.read("/#/io.l5d.fs/web"), Var(addrs(1, 2))),
        policy,
        balancer,
        accrual_for(policy),
        lambda address, _c: FakePool(address),
        MetricsTree(),
        ("rt", "x", "client", "web"),
    )
    client.record(client.endpoints[0], True, time.monotonic(), 0.25)
    assert client.endpoints[0].cost == 0.25


def test_close_closes_pools_and_prunes_metrics():
    client, _, metrics = make_client()
    pools = [e.pool for e in client.endpoints]
    client.close()
    assert all(p.closed for p in pools)
    assert not [k for k in metrics.flat() if k.startswith("rt/http/client/")]


# -- per-prefix policy --------------------------------------------------------------------------


def static_clients(*entries: model.StaticClientEntry) -> model.StaticClientConfig:
    return model.StaticClientConfig(configs=list(entries))


def test_global_client_config_applies_to_every_id():
    config = model.GlobalClientConfig(
        load_balancer=RoundRobinConfig(), request_attempt_timeout_ms=50
    )
    for name in ("/#/io.l5d.fs/a", "/$/inet/127.0.0.1/80"):
        policy = client_policy(config, Path.read(name))
        assert isinstance(policy.load_balancer, RoundRobinConfig)
        assert policy.request_attempt_timeout_ms == 50


def test_static_client_configs_merge_in_order_later_wins():
    config = static_clients(
        model.StaticClientEntry(
            prefix=PathMatcher("/"),
            load_balancer=P2CConfig(),
            failure_accrual=ConsecutiveFailuresConfig(failures=7),
        ),
        model.StaticClientEntry(
            prefix=PathMatcher("/#/io.l5d.fs/*"), load_balancer=EwmaConfig(decay_time_ms=100)
        ),
        model.StaticClientEntry(prefix=PathMatcher("/#/io.l5d.fs/db"), load_balancer=P2CConfig()),
    )
    web = client_policy(config, Path.read("/#/io.l5d.fs/web"))
    assert isinstance(web.load_balancer, EwmaConfig) and web.load_balancer.decay_time_ms == 100
    assert web.failure_accrual.failures == 7  # from the first entry: keys merge one by one
    db = client_policy(config, Path.read("/#/io.l5d.fs/db"))
    assert type(db.load_balancer) is P2CConfig
    other = client_policy(config, Path.read("/$/inet/127.0.0.1/80"))
    assert type(other.load_balancer) is P2CConfig


def test_static_client_prefix_captures():
    config = static_clients(
        model.StaticClientEntry(
            prefix=PathMatcher("/#/io.l5d.fs/{service}-v{version}"),
            request_attempt_timeout_ms=10,
        )
    )
    policy = client_policy(config, Path.read("/#/io.l5d.fs/users-v2/extra"))
    assert policy.captures == {"service": "users", "version": "2"}
    assert policy.request_attempt_timeout_ms == 10
    unmatched = client_policy(config, Path.read("/#/io.l5d.fs/users"))
    assert unmatched.captures == {} and unmatched.request_attempt_timeout_ms is None


def test_star_matches_exactly_one_segment():
    config = static_clients(
        model.StaticClientEntry(prefix=PathMatcher("/#/*/web"), request_attempt_timeout_ms=5)
    )
    assert client_policy(config, Path.read("/#/io.l5d.fs/web")).request_attempt_timeout_ms == 5
    assert client_policy(config, Path.read("/#/web")).request_attempt_timeout_ms is None
    assert client_policy(config, Path.read("/#/a/b/web")).request_attempt_timeout_ms is None


def test_defaults_when_unconfigured():
    policy = client_policy(None, Path.read("/#/io.l5d.fs/web"))
    assert policy.load_balancer is None and policy.failure_accrual is None
    assert type(balancer_for(policy)).__name__ == "P2C"
    accrual = accrual_for(policy)
    assert isinstance(accrual, ConsecutiveFailures) and accrual.failures == 5
    assert policy.requeue_budget.percent_can_retry == 0.2
    assert policy.host_connection_pool.max_size is None


def test_static_service_configs_match_logical_names():
    config = model.StaticServiceConfig(
        configs=[
            model.StaticServiceEntry(prefix=PathMatcher("/svc"), total_timeout_ms=1000),
            model.StaticServiceEntry(
                prefix=PathMatcher("/svc/{name}"),
                retries=model.RetriesConfig(budget=model.BudgetConfig(percent_can_retry=0.5)),
            ),
            model.StaticServiceEntry(prefix=PathMatcher("/svc/slow"), total_timeout_ms=5000),
        ]
    )
    fast = service_policy(config, Path.read("/svc/fast"))
    assert fast.total_timeout_ms == 1000
    assert fast.retries is not None and fast.retries.budget.percent_can_retry == 0.5
    assert service_policy(config, Path.read("/svc/slow")).total_timeout_ms == 5000
    assert service_policy(config, Path.read("/other")).retries is None
