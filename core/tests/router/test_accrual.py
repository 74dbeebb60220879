"""Failure accrual policies and backoffs, with a fake clock."""

from __future__ import annotations

import itertools
import random

import pytest
from turnout.naming import Address
from turnout.router import (
    ConsecutiveFailures,
    Endpoint,
    NoFailureAccrual,
    SuccessRate,
    SuccessRateWindowed,
    constant_backoff,
    decorrelated_jittered_backoff,
    equal_jittered_backoff,
)

NOW = 500.0


def endpoint() -> Endpoint:
    return Endpoint(Address("127.0.0.1", 9000))


def outcomes(policy, e: Endpoint, pattern: str, start: float = NOW, step: float = 0.0) -> float:
    """Record ``pattern`` ('s' success, 'f' failure) at ``start``, ``start+step``, ..."""
    t = start
    for c in pattern:
        policy.record(e, c == "s", t)
        t += step
    return t


# -- consecutive failures -----------------------------------------------------------------------


def test_consecutive_failures_ejects_after_n_in_a_row():
    policy = ConsecutiveFailures(3, constant_backoff(10.0))
    e = endpoint()
    outcomes(policy, e, "ffsff")  # a success in between resets the count
    assert e.dead_until == 0.0 and e.available(NOW)
    outcomes(policy, e, "f")
    assert e.dead_until == NOW + 10.0
    assert e.ejections == 1
    assert not e.available(NOW) and not e.available(NOW + 9.99)
    assert e.state(NOW) == "ejected"


def test_probe_after_backoff_restores_on_success():
    events: list[str] = []
    policy = ConsecutiveFailures(1, constant_backoff(5.0))
    policy.on_event = lambda ep, event: events.append(event)
    e = endpoint()
    outcomes(policy, e, "f")
    assert e.available(NOW + 5.0)  # backoff over: due for a probe
    policy.before_request(e, NOW + 5.0)  # the balancer picked it: this request is the probe
    assert e.probing and not e.available(NOW + 5.0)  # only one probe at a time
    assert e.state(NOW + 5.0) == "probing"
    policy.record(e, True, NOW + 5.1)
    assert e.dead_until == 0.0 and not e.probing and e.available(NOW + 5.1)
    assert events == ["removal", "probe", "revival"]


def test_failed_probe_ejects_again_with_the_next_backoff():
    delays = iter([1.0, 2.0, 4.0])
    policy = ConsecutiveFailures(1, lambda: delays)
    e = endpoint()
    outcomes(policy, e, "f")
    assert e.dead_until == NOW + 1.0
    t = NOW + 1.0
    policy.before_request(e, t)
    policy.record(e, False, t)
    assert e.dead_until == t + 2.0 and e.ejections == 2
    t += 2.0
    policy.before_request(e, t)
    policy.record(e, False, t)
    assert e.dead_until == t + 4.0


def test_revival_resets_the_backoff_sequence():
    policy = ConsecutiveFailures(1, lambda: iter([1.0, 2.0, 4.0]))
    e = endpoint()
    outcomes(policy, e, "f")
    policy.before_request(e, NOW + 1)
    policy.record(e, True, NOW + 1)
    outcomes(policy, e, "f", start=NOW + 2)
    assert e.dead_until == NOW + 3.0  # starts over at the first delay


def test_late_responses_of_an_ejected_endpoint_do_not_extend_its_ejection():
    policy = ConsecutiveFailures(2, constant_backoff(10.0))
    e = endpoint()
    outcomes(policy, e, "ff")
    until = e.dead_until
    outcomes(policy, e, "fffff", start=NOW + 1)  # requests that were in flight at ejection
    assert e.dead_until == until and e.ejections == 1


def test_no_failure_accrual_never_ejects():
    policy = NoFailureAccrual()
    e = endpoint()
    outcomes(policy, e, "f" * 1000)
    assert e.dead_until == 0.0 and e.ejections == 0


# -- success rate -------------------------------------------------------------------------------


def test_success_rate_ejects_below_the_threshold():
    policy = SuccessRate(0.8, 10, constant_backoff(10.0))
    e = endpoint()
    outcomes(policy, e, "f" * 2)  # too few requests to judge
    assert e.dead_until == 0.0
    policy.revive(e)
    outcomes(policy, e, "sfsfsfsfsf")  # 50% over ten requests
    assert e.dead_until == NOW + 10.0


def test_success_rate_tolerates_occasional_failures():
    policy = SuccessRate(0.8, 10, constant_backoff(10.0))
    e = endpoint()
    outcomes(policy, e, "sssssssssf" * 50)  # 90%
    assert e.dead_until == 0.0
    assert 0.8 < e.sr < 1.0


def test_success_rate_recent_requests_count_most():
    policy = SuccessRate(0.5, 20, constant_backoff(1.0))
    e = endpoint()
    outcomes(policy, e, "s" * 1000)
    outcomes(policy, e, "f" * 13)  # 0.95 ** 13 = 0.51: not yet
    assert e.dead_until == 0.0
    outcomes(policy, e, "f")  # 0.95 ** 14 = 0.49: a long healthy history does not hide an outage
    assert e.dead_until != 0.0


# -- success rate, windowed ---------------------------------------------------------------------


def test_windowed_success_rate_counts_the_window_only():
    policy = SuccessRateWindowed(0.6, 10.0, constant_backoff(5.0))
    e = endpoint()
    # failures long ago, then a healthy stretch: the old failures have left the window
    outcomes(policy, e, "sfff", start=NOW, step=1.0)
    assert e.dead_until == 0.0  # 4 requests: fewer than the minimum of 5
    outcomes(policy, e, "s" * 5, start=NOW + 20, step=1.0)
    assert e.dead_until == 0.0


def test_windowed_success_rate_ejects_below_the_threshold():
    policy = SuccessRateWindowed(0.6, 10.0, constant_backoff(5.0))
    e = endpoint()
    outcomes(policy, e, "ssfsf", start=NOW, step=0.5)
    assert e.dead_until == 0.0  # 3 of 5: at the threshold
    outcomes(policy, e, "f", start=NOW + 2.5)  # 3 of 6 < 0.6
    assert e.dead_until == pytest.approx(NOW + 2.5 + 5.0)


def test_windowed_success_rate_needs_min_requests():
    policy = SuccessRateWindowed(0.9, 10.0, constant_backoff(5.0), min_requests=5)
    e = endpoint()
    outcomes(policy, e, "ffff", step=1.0)
    assert e.dead_until == 0.0
    outcomes(policy, e, "f", start=NOW + 4)
    assert e.dead_until != 0.0


# -- backoffs -----------------------------------------------------------------------------------


def test_constant_backoff():
    assert list(itertools.islice(constant_backoff(0.25)(), 3)) == [0.25, 0.25, 0.25]


def test_equal_jittered_backoff_doubles_within_half_and_full_and_caps():
    stream = equal_jittered_backoff(5.0, 300.0, random.Random(1))()
    base = 5.0
    for _ in range(12):
        delay = next(stream)
        assert base / 2 <= delay <= base
        base = min(base * 2, 300.0)
    assert base == 300.0  # reached the cap; delays stay in [150, 300]


def test_equal_jittered_streams_are_independent():
    backoff = equal_jittered_backoff(1.0, 100.0, random.Random(1))
    first = backoff()
    for _ in range(5):
        next(first)
    assert next(backoff()) <= 1.0  # a fresh stream starts again at the first delay


def test_decorrelated_jittered_backoff_stays_within_bounds_and_grows():
    stream = decorrelated_jittered_backoff(0.01, 10.0, random.Random(3))()
    delays = [next(stream) for _ in range(200)]
    assert all(0.01 <= d <= 10.0 for d in delays)
    assert max(delays) > 1.0  # it does grow toward the maximum
