"""Retry budgets (Finagle's RetryBudget): deposits from requests, a floor, a sliding window."""

from __future__ import annotations

from turnout.router import RetryBudget

NOW = 100.0


class Requests:
    """A request counter that only grows, as the service's success + failure counters."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


def withdraw_all(budget: RetryBudget, now: float, limit: int = 10_000) -> int:
    n = 0
    while n < limit and budget.try_withdraw(now):
        n += 1
    return n


def test_percent_of_requests_can_be_retried():
    requests = Requests()
    budget = RetryBudget(ttl=10, min_retries_per_sec=0, percent_can_retry=0.2, requests=requests)
    budget.balance(NOW)  # the window starts
    requests.n = 100
    assert withdraw_all(budget, NOW + 1) == 20
    requests.n = 110
    assert withdraw_all(budget, NOW + 2) == 2


def test_the_floor_allows_min_retries_per_sec_times_ttl():
    budget = RetryBudget(ttl=10, min_retries_per_sec=10, percent_can_retry=0.2, requests=Requests())
    assert withdraw_all(budget, NOW) == 100


def test_withdrawals_and_deposits_expire_with_the_window():
    requests = Requests()
    budget = RetryBudget(ttl=5, min_retries_per_sec=1, percent_can_retry=0.5, requests=requests)
    budget.balance(NOW)
    requests.n = 20
    assert withdraw_all(budget, NOW + 1) == 5 + 10
    assert withdraw_all(budget, NOW + 2) == 0  # spent
    # later, with no new requests: only the floor comes back once the spending has expired
    assert withdraw_all(budget, NOW + 10) == 5


def test_percent_above_one_allows_more_retries_than_requests():
    requests = Requests()
    budget = RetryBudget(ttl=10, min_retries_per_sec=0, percent_can_retry=3.0, requests=requests)
    budget.balance(NOW)
    requests.n = 10
    assert withdraw_all(budget, NOW) == 30


def test_without_a_counter_deposits_are_explicit():
    budget = RetryBudget(ttl=10, min_retries_per_sec=0, percent_can_retry=1.0)
    budget.balance(NOW)
    for _ in range(4):
        budget.deposit(NOW)
    assert withdraw_all(budget, NOW) == 4


def test_retries_stay_within_the_budget_under_a_steady_load():
    """A steady 100 requests/s with every request failing: retries never exceed 20% + floor."""
    requests = Requests()
    budget = RetryBudget(ttl=10, min_retries_per_sec=1, percent_can_retry=0.2, requests=requests)
    retried = 0
    for tick in range(600):  # a minute, in 0.1 s steps
        now = NOW + tick / 10
        for _ in range(10):
            requests.n += 1
            if budget.try_withdraw(now):
                retried += 1
    # the floor is a rate: min_retries_per_sec for each of the 60 seconds
    assert retried <= 0.2 * requests.n + 1 * 60
    assert retried >= 0.19 * requests.n  # and the budget is actually usable
