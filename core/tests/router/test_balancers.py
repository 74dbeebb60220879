"""The choice rule of every load balancer, with a fake clock (times are plain floats)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from turnout.naming import Address
from turnout.naming.addr import WEIGHT_KEY
from turnout.router import (
    P2C,
    Aperture,
    Balancer,
    Endpoint,
    LeastLoaded,
    P2CPeakEwma,
    RoundRobin,
)

NOW = 1000.0


def endpoints(n: int, weights: list[float] | None = None) -> list[Endpoint]:
    out = []
    for i in range(n):
        meta = {WEIGHT_KEY: weights[i]} if weights else None
        out.append(Endpoint(Address("127.0.0.1", 8000 + i, meta)))
    return out


def shares(balancer: Balancer, n: int, now: float = NOW) -> Counter[int]:
    """How many of ``n`` picks each endpoint (by port) got; loads stay as they are."""
    counts: Counter[int] = Counter()
    for _ in range(n):
        chosen = balancer.pick(now)
        assert chosen is not None
        counts[chosen.address.port] += 1
    return counts


ALL = [
    lambda: P2C(rng=random.Random(1)),
    lambda: P2CPeakEwma(rng=random.Random(1)),
    lambda: Aperture(rng=random.Random(1)),
    lambda: LeastLoaded(),
    lambda: RoundRobin(),
]
IDS = ["p2c", "ewma", "aperture", "heap", "roundRobin"]


# -- rules every balancer keeps -----------------------------------------------------------------


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_empty_set_picks_nothing(make):
    b = make()
    b.update([])
    assert b.pick(NOW) is None


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_ejected_endpoints_are_skipped(make):
    b = make()
    eps = endpoints(3)
    eps[0].dead_until = NOW + 30
    eps[2].dead_until = NOW + 30
    b.update(eps)
    assert set(shares(b, 200)) == {8001}


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_every_endpoint_ejected_still_picks_one(make):
    """Finagle's rule: when nothing is available, use something rather than fail."""
    b = make()
    eps = endpoints(3)
    for e in eps:
        e.dead_until = NOW + 30
    eps[0].load, eps[1].load, eps[2].load = 4, 1, 7
    b.update(eps)
    assert b.pick(NOW) is eps[1]  # the least loaded


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_an_endpoint_due_for_its_probe_is_available_once(make):
    b = make()
    eps = endpoints(2)
    eps[0].dead_until = NOW - 1  # backoff over: one probe may go
    eps[1].dead_until = NOW + 30
    b.update(eps)
    assert b.pick(NOW) is eps[0]
    eps[0].probing = True  # failure accrual marks the probe in flight
    assert eps[0].available(NOW) is False


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_update_replaces_the_set(make):
    b = make()
    b.update(endpoints(3))
    fresh = endpoints(5)[3:]
    b.update(fresh)
    assert set(shares(b, 100)) <= {8003, 8004}


# -- p2c ----------------------------------------------------------------------------------------


def test_p2c_never_picks_the_most_loaded_of_three():
    b = P2C(rng=random.Random(7))
    eps = endpoints(3)
    eps[1].load = 10
    b.update(eps)
    counts = shares(b, 3000)
    assert counts[8001] == 0
    assert abs(counts[8000] - counts[8002]) < 300  # the other two share evenly


def test_p2c_prefers_the_less_loaded_endpoint():
    b = P2C(rng=random.Random(3))
    eps = endpoints(4)
    for e, load in zip(eps, [0, 1, 2, 3], strict=True):
        e.load = load
    b.update(eps)
    counts = shares(b, 4000)
    # of two distinct random endpoints the lighter wins: 3/6, 2/6, 1/6, 0/6 of the picks
    assert counts[8003] == 0
    assert counts[8000] > counts[8001] > counts[8002] > 0
    assert counts[8000] == pytest.approx(2000, rel=0.1)


def test_p2c_weights_set_the_share():
    b = P2C(rng=random.Random(5))
    b.update(endpoints(2, weights=[1.0, 3.0]))
    counts = shares(b, 8000)
    assert counts[8001] / 8000 == pytest.approx(0.75, abs=0.03)


def test_p2c_load_is_relative_to_weight():
    b = P2C(rng=random.Random(5))
    eps = endpoints(2, weights=[1.0, 4.0])
    eps[0].load, eps[1].load = 1, 3  # 1/1 > 3/4: the heavy endpoint is the lighter one
    b.update(eps)
    assert set(shares(b, 100)) == {8001}


def test_p2c_max_effort_then_scans_for_an_available_endpoint():
    b = P2C(max_effort=1, rng=random.Random(11))
    eps = endpoints(10)
    for e in eps[:-1]:
        e.dead_until = NOW + 60
    b.update(eps)
    assert set(shares(b, 200)) == {8009}


# -- ewma ---------------------------------------------------------------------------------------


def test_ewma_avoids_the_slow_endpoint():
    b = P2CPeakEwma(decay=10.0, rng=random.Random(2))
    eps = endpoints(3)
    b.update(eps)
    for t in range(20):
        b.observe(eps[0], 0.001, NOW + t * 0.01)
        b.observe(eps[1], 0.051, NOW + t * 0.01)
        b.observe(eps[2], 0.001, NOW + t * 0.01)
    counts = shares(b, 3000, now=NOW + 0.2)
    assert counts[8001] == 0


def test_ewma_cost_is_latency_times_outstanding_requests():
    b = P2CPeakEwma(decay=10.0)
    fast, slow = endpoints(2)
    b.update([fast, slow])
    b.observe(fast, 0.010, NOW)
    b.observe(slow, 0.040, NOW)
    fast.load = 5  # 0.010 * 6 > 0.040 * 1: now the "slow" one is cheaper
    assert b.load(fast, NOW) == pytest.approx(0.060)
    assert b.load(slow, NOW) == pytest.approx(0.040)
    assert set(shares(b, 50)) == {slow.address.port}


def test_ewma_peak_is_taken_at_once_and_decays_slowly():
    b = P2CPeakEwma(decay=10.0)
    (e,) = endpoints(1)
    b.observe(e, 0.010, NOW)
    b.observe(e, 0.500, NOW + 1)  # a peak replaces the cost immediately
    assert e.cost == pytest.approx(0.500)
    b.observe(e, 0.010, NOW + 2)  # one second later: mostly still the peak (e^-0.1)
    assert e.cost == pytest.approx(0.5 * 0.904837 + 0.010 * 0.095163, rel=1e-4)
    for t in range(3, 100):  # a minute and a half of fast responses forgets it
        b.observe(e, 0.010, NOW + t)
    assert e.cost == pytest.approx(0.010, rel=0.01)


def test_ewma_cost_decays_while_nothing_is_observed():
    """A slow endpoint that got no traffic is tried again once its cost has decayed."""
    b = P2CPeakEwma(decay=1.0)
    slow, fast = endpoints(2)
    b.update([slow, fast])
    b.observe(slow, 1.0, NOW)
    b.observe(fast, 0.010, NOW)
    assert b.load(slow, NOW) > b.load(fast, NOW)
    assert b.load(slow, NOW + 10) < b.load(fast, NOW)  # e^-10 * 1.0 < 0.010


def test_ewma_unmeasured_endpoint_is_tried_but_not_flooded():
    b = P2CPeakEwma()
    new, old = endpoints(2)
    b.update([new, old])
    b.observe(old, 0.005, NOW)
    assert b.load(new, NOW) == 0.0  # nothing known, nothing in flight: try it
    new.load = 1
    assert b.load(new, NOW) > 1000  # one request in flight and no answer yet: wait for it


# -- aperture -----------------------------------------------------------------------------------


def test_aperture_stays_small_when_load_is_light():
    b = Aperture(smooth_window=1.0, min_aperture=1, rng=random.Random(4))
    b.update(endpoints(6))
    counts = shares(b, 500)
    assert len(counts) == 1 and b.size == 1  # one endpoint (and one connection) is enough


def test_aperture_min_aperture():
    b = Aperture(smooth_window=1.0, min_aperture=3, rng=random.Random(4))
    b.update(endpoints(6))
    counts = shares(b, 3000)
    assert len(counts) == 3 and b.size == 3
    assert min(counts.values()) > 700


def test_aperture_widens_under_load_and_narrows_after():
    b = Aperture(smooth_window=1.0, low_load=0.5, high_load=2.0, rng=random.Random(4))
    eps = endpoints(6)
    b.update(eps)
    t = NOW
    for _ in range(200):  # every pick adds a request in flight that never ends
        t += 0.05
        chosen = b.pick(t)
        assert chosen is not None
        chosen.load += 1
    assert b.size >= 4  # widened to spread the load
    for e in eps:
        e.load = 0
    for _ in range(200):  # quiet: back to the minimum
        t += 0.05
        b.pick(t)
    assert b.size == 1


def test_aperture_ejected_endpoint_in_the_window_is_passed_over():
    b = Aperture(min_aperture=1, rng=random.Random(4))
    eps = endpoints(3)
    b.update(eps)
    first = b.pick(NOW)
    assert first is not None
    first.dead_until = NOW + 30
    assert set(shares(b, 100)).isdisjoint({first.address.port})


def test_aperture_order_is_stable_across_updates():
    b = Aperture(rng=random.Random(9))
    eps = endpoints(5)
    b.update(eps)
    first = b.pick(NOW)
    b.update([*eps, *endpoints(7)[5:]])  # new endpoints do not reshuffle the whole ring
    assert first in b._ring


# -- heap (least loaded) ------------------------------------------------------------------------


def test_heap_picks_the_least_loaded():
    b = LeastLoaded()
    eps = endpoints(4)
    for e, load in zip(eps, [3, 1, 2, 5], strict=True):
        e.load = load
    b.update(eps)
    assert set(shares(b, 50)) == {8001}


def test_heap_rotates_among_equals_and_follows_load():
    b = LeastLoaded()
    eps = endpoints(3)
    b.update(eps)
    for _ in range(300):
        chosen = b.pick(NOW)
        assert chosen is not None
        chosen.load += 1  # requests that stay in flight: the heap keeps them level
    assert sorted(e.load for e in eps) == [100, 100, 100]


def test_heap_weights():
    b = LeastLoaded()
    eps = endpoints(2, weights=[1.0, 2.0])
    b.update(eps)
    for _ in range(300):
        chosen = b.pick(NOW)
        assert chosen is not None
        chosen.load += 1
    assert (eps[0].load, eps[1].load) == (100, 200)


# -- round robin --------------------------------------------------------------------------------


def test_round_robin_takes_turns():
    b = RoundRobin()
    b.update(endpoints(3))
    order = [b.pick(NOW).address.port for _ in range(6)]  # type: ignore[union-attr]
    assert order == [8000, 8001, 8002, 8000, 8001, 8002]


def test_round_robin_skips_ejected():
    b = RoundRobin()
    eps = endpoints(3)
    eps[1].dead_until = NOW + 5
    b.update(eps)
    order = [b.pick(NOW).address.port for _ in range(4)]  # type: ignore[union-attr]
    assert order == [8000, 8002, 8000, 8002]


def test_round_robin_weighted_is_smooth():
    """nginx's smooth weighted round robin: weights 5, 1, 1 give a a b a c a a."""
    b = RoundRobin()
    b.update(endpoints(3, weights=[5.0, 1.0, 1.0]))
    order = [b.pick(NOW).address.port - 8000 for _ in range(14)]  # type: ignore[union-attr]
    assert order == [0, 0, 1, 0, 2, 0, 0] * 2
