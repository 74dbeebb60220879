"""Var, Activity and derive: change propagation, lazy start/stop, waiting."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from turnout.naming.var import (
    Activity,
    Failed,
    Ok,
    Pending,
    Var,
    derive,
    derive_activity,
)


class Lifecycle:
    """A ``start=`` function that records each start and stop."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self, var: Var[Any]) -> Callable[[], None]:
        self.events.append("start")
        return lambda: self.events.append("stop")


# ---------------------------------------------------------------------------------------------
# Var
# ---------------------------------------------------------------------------------------------


def test_observe_gets_current_value_then_changes_only() -> None:
    v = Var(1)
    seen: list[int] = []
    obs = v.observe(seen.append)
    assert seen == [1]
    v.update(1)  # equal: not re-published
    v.update(2)
    v.update(2)
    v.update(3)
    assert seen == [1, 2, 3]
    obs.close()
    v.update(4)
    assert seen == [1, 2, 3]
    assert v.value == 4 and v.sample() == 4


@pytest.mark.parametrize(
    ("first", "second", "notified"),
    [
        ((1, 2), (1, 2), False),
        ({"a": 1}, {"a": 1}, False),
        ("x", "x", False),
        (1, True, True),  # equal but of another type: published
        (1, 1.0, True),
        (None, 0, True),
    ],
)
def test_update_deduplicates_equal_values_of_the_same_type(
    first: object, second: object, notified: bool
) -> None:
    v = Var(first)
    seen: list[object] = []
    v.observe(seen.append)
    v.update(second)
    assert len(seen) == (2 if notified else 1)


def test_observation_close_is_idempotent_and_per_observer() -> None:
    v = Var(0)
    a: list[int] = []
    b: list[int] = []
    obs_a = v.observe(a.append)
    v.observe(b.append)
    obs_a.close()
    obs_a.close()
    v.update(1)
    assert a == [0]
    assert b == [0, 1]
    assert v.observed


def test_lazy_start_and_stop_run_once_per_first_and_last_observer() -> None:
    life = Lifecycle()
    v = Var(0, start=life)
    assert life.events == []
    assert v.value == 0  # reading does not start anything
    o1 = v.observe(lambda _: None)
    o2 = v.observe(lambda _: None)
    assert life.events == ["start"]
    o1.close()
    assert life.events == ["start"]
    o2.close()
    o2.close()
    assert life.events == ["start", "stop"]
    assert not v.observed
    o3 = v.observe(lambda _: None)
    assert life.events == ["start", "stop", "start"]
    o3.close()
    assert life.events == ["start", "stop", "start", "stop"]


def test_start_may_set_the_value_seen_by_the_first_observer() -> None:
    v = Var("placeholder", start=lambda var: var.update("loaded"))
    seen: list[str] = []
    obs = v.observe(seen.append)
    assert seen == ["loaded"]
    obs.close()  # start returned None: nothing to stop, no error


def test_observer_updating_the_var_leaves_every_observer_on_the_latest_value() -> None:
    v = Var(0)

    def bump(x: int) -> None:
        if x == 1:
            v.update(2)

    v.observe(bump)
    seen: list[int] = []
    v.observe(seen.append)
    v.update(1)
    assert v.value == 2
    assert seen[-1] == 2, seen


# ---------------------------------------------------------------------------------------------
# derive
# ---------------------------------------------------------------------------------------------


def test_derive_recomputes_when_a_sampled_dependency_changes() -> None:
    a, b = Var(1), Var(10)
    d = derive(lambda: a.sample() + b.sample())
    seen: list[int] = []
    obs = d.observe(seen.append)
    assert seen == [11]
    a.update(2)
    b.update(20)
    assert seen == [11, 12, 22]
    assert d.value == 22
    obs.close()
    assert not a.observed and not b.observed


def test_derive_publishes_only_when_its_value_changes() -> None:
    a = Var(1)
    parity = derive(lambda: a.sample() % 2)
    seen: list[int] = []
    parity.observe(seen.append)
    a.update(3)
    a.update(5)
    a.update(6)
    assert seen == [1, 0]


def test_derive_recollects_dependencies_and_stops_unsampled_ones() -> None:
    use_a = Var(True)
    life_a, life_b = Lifecycle(), Lifecycle()
    a = Var("a", start=life_a)
    b = Var("b", start=life_b)
    d = derive(lambda: a.sample() if use_a.sample() else b.sample())
    seen: list[str] = []
    obs = d.observe(seen.append)
    assert seen == ["a"]
    assert life_a.events == ["start"] and life_b.events == []

    use_a.update(False)
    assert seen == ["a", "b"]
    assert life_a.events == ["start", "stop"]  # no longer sampled: unsubscribed
    assert life_b.events == ["start"]
    a.update("a2")  # not a dependency any more
    assert seen == ["a", "b"]

    obs.close()
    assert life_b.events == ["start", "stop"]
    assert life_a.events == ["start", "stop"]
    assert not use_a.observed


def test_derive_not_active_computes_on_demand_without_subscribing() -> None:
    life = Lifecycle()
    a = Var(1, start=life)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return a.sample() * 10

    d = derive(compute)
    assert d.value == 10
    a.update(2)
    assert d.value == 20
    assert d.sample() == 20
    assert len(calls) == 3
    assert life.events == [] and not a.observed and not d.observed


def test_inactive_derive_sampled_inside_another_derive_makes_its_inputs_dependencies() -> None:
    a = Var(1)
    inner = derive(lambda: a.sample() * 2)  # never observed itself
    outer = derive(lambda: inner.sample() + 1)
    seen: list[int] = []
    obs = outer.observe(seen.append)
    a.update(5)
    assert seen == [3, 11]
    obs.close()
    assert not a.observed


def test_value_of_an_inactive_derive_records_no_dependency() -> None:
    a, b = Var(1), Var(10)
    inner = derive(lambda: a.sample() * 2)
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        return inner.value + b.sample()

    outer = derive(compute)
    obs = outer.observe(lambda _: None)
    before = len(computed)
    a.update(5)
    assert len(computed) == before  # only b is a dependency
    obs.close()


def test_var_map_follows_its_source() -> None:
    a = Var(2)
    sq = a.map(lambda x: x * x)
    seen: list[int] = []
    obs = sq.observe(seen.append)
    a.update(3)
    assert seen == [4, 9]
    obs.close()


def test_derive_of_derive_is_kept_current_and_released() -> None:
    life = Lifecycle()
    a = Var(1, start=life)
    mid = derive(lambda: a.sample() + 1)
    top = derive(lambda: mid.sample() * 2)
    seen: list[int] = []
    obs = top.observe(seen.append)
    # an inactive inner derive is transparent: the outer one subscribes to its inputs
    assert a.observed and not mid.observed and life.events == ["start"]
    a.update(2)
    assert seen == [4, 6]
    obs.close()
    assert life.events == ["start", "stop"]
    assert not a.observed


# ---------------------------------------------------------------------------------------------
# Activity
# ---------------------------------------------------------------------------------------------


def test_activity_states_compare_by_value() -> None:
    assert Activity.of(3).value == Ok(3)
    assert Ok(1) != Ok(True)
    assert Failed(ValueError("x")) == Failed(ValueError("x"))
    assert Failed(ValueError("x")) != Failed(KeyError("x"))
    assert Activity.pending().value is Pending
    act = Activity.failed(ValueError("boom"))
    seen: list[object] = []
    act.observe(seen.append)
    act.update(Failed(ValueError("boom")))  # equal failure: not re-published
    assert len(seen) == 1


def test_wait_returns_the_first_ok_value() -> None:
    async def main() -> int:
        act: Activity[int] = Activity.pending()
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, act.update, Pending)
        loop.call_later(0.02, act.update, Ok(7))
        loop.call_later(0.03, act.update, Ok(8))
        value = await act.wait(1.0)
        assert not act.observed
        return value

    assert asyncio.run(main()) == 7


def test_wait_returns_at_once_when_already_ok() -> None:
    assert asyncio.run(Activity.of("ready").wait(0.01)) == "ready"


def test_wait_raises_the_error_of_a_failed_state() -> None:
    async def main() -> None:
        act: Activity[int] = Activity.pending()
        asyncio.get_running_loop().call_later(0.01, act.update, Failed(KeyError("gone")))
        await act.wait(1.0)

    with pytest.raises(KeyError, match="gone"):
        asyncio.run(main())
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(Activity.failed(ValueError("boom")).wait(0.01))


def test_wait_times_out_and_stops_observing() -> None:
    life = Lifecycle()
    act: Activity[int] = Activity(Pending, start=life)

    async def main() -> None:
        await act.wait(0.05)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    assert life.events == ["start", "stop"]
    assert not act.observed


def test_derive_activity_waits_for_its_inputs() -> None:
    async def main() -> str:
        src: Activity[str] = Activity.pending()
        act = derive_activity(lambda: src.sample())
        asyncio.get_running_loop().call_later(0.01, src.update, Ok("up"))
        return await act.wait(1.0)

    assert asyncio.run(main()) == "up"


def test_wait_starts_lazy_inputs_before_answering() -> None:
    src = Var("placeholder", start=lambda var: var.update("ready"))
    act = derive_activity(lambda: Ok(src.sample()))
    # what an observer sees first:
    seen: list[object] = []
    act.observe(seen.append).close()
    assert seen == [Ok("ready")]
    # wait() must agree with it
    fresh = Var("placeholder", start=lambda var: var.update("ready"))
    act2 = derive_activity(lambda: Ok(fresh.sample()))
    assert asyncio.run(act2.wait(1.0)) == "ready"
