"""Observable values: :class:`Var`, :class:`Activity` and derived values.

Service discovery changes all the time; these types carry the changes from a namer to the
bound trees and load balancers that depend on it, without anyone polling.

- A :class:`Var` holds a value and notifies its observers (synchronously, on the event-loop
  thread) when the value changes. Equal values are not re-published.
- A Var may be *lazy*: ``Var(initial, start=fn)`` calls ``fn(var)`` when the first observer
  arrives (for example to start watching a file) and calls what ``fn`` returned when the last
  observer leaves. This is Finagle's ``Var.async``: nobody watches what nobody uses.
- :func:`derive` builds a Var whose value is computed from others. Every Var sampled while
  computing becomes a dependency; when one of them changes, the value is recomputed and the
  dependencies re-collected. Binding uses this to keep a bound tree current.
- An :class:`Activity` is a Var of :class:`Pending`, :class:`Ok` or :class:`Failed`.

Vars are not thread-safe: update them from the event-loop thread only (a namer fed by a
thread, like kazoo's, hands updates over with ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, Never, TypeVar

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)

Stop = Callable[[], None]

# The derived Var currently computing, if any: Vars sampled now become its dependencies
# (with the value each had when sampled).
_tracking: list[dict[Var[Any], Any]] = []


class Observation:
    """Handle returned by :meth:`Var.observe`; ``close()`` stops the notifications."""

    __slots__ = ("_fn", "_var")

    def __init__(self, var: Var[Any], fn: Callable[[Any], None]) -> None:
        self._var: Var[Any] | None = var
        self._fn = fn

    def close(self) -> None:
        var, self._var = self._var, None
        if var is not None:
            var._unobserve(self._fn)


class Var(Generic[T]):
    """A changing value (see the module docstring)."""

    __slots__ = ("__weakref__", "_observers", "_start", "_stop", "_value")

    def __init__(self, value: T, *, start: Callable[[Var[T]], Stop | None] | None = None) -> None:
        self._value = value
        self._observers: list[Callable[[T], None]] = []
        self._start = start
        self._stop: Stop | None = None

    def sample(self) -> T:
        """The current value. Inside :func:`derive`, also records a dependency."""
        if _tracking:
            _tracking[-1][self] = self._value
        return self._value

    @property
    def value(self) -> T:
        """The current value, without recording a dependency."""
        return self._value

    def update(self, value: T) -> None:
        """Set a new value and notify observers, unless it equals the current one."""
        if value == self._value and type(value) is type(self._value):
            return
        self._value = value
        for fn in list(self._observers):
            if self._value is not value:  # an observer changed it again: they get that next
                return
            fn(value)

    def observe(self, fn: Callable[[T], None]) -> Observation:
        """Call ``fn`` now with the current value and again after every change."""
        if not self._observers and self._start is not None:
            self._stop = self._start(self)
        self._observers.append(fn)
        fn(self._value)
        return Observation(self, fn)

    @property
    def observed(self) -> bool:
        return bool(self._observers)

    def _unobserve(self, fn: Callable[[T], None]) -> None:
        try:
            self._observers.remove(fn)
        except ValueError:
            return
        if not self._observers and self._stop is not None:
            stop, self._stop = self._stop, None
            stop()

    def map(self, fn: Callable[[T], U]) -> Var[U]:
        """A Var whose value is ``fn(self's value)``, kept current while observed."""
        return derive(lambda: fn(self.sample()))

    async def changes(self, predicate: Callable[[T], bool]) -> T:
        """Wait until the value satisfies ``predicate`` and return it.

        Observes first (starting a lazy Var), then tests: a lazy Var's value before it was
        started is only a placeholder.
        """
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def on(v: T) -> None:
            if predicate(v) and not fut.done():
                fut.set_result(v)

        obs = self.observe(on)
        try:
            return await fut
        finally:
            obs.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._value!r})"


class _Derived(Var[T]):
    """A Var computed from other Vars (see :func:`derive`)."""

    __slots__ = ("_compute", "_computing", "_deps", "_dirty")

    def __init__(self, compute: Callable[[], T]) -> None:
        super().__init__(_UNSET, start=_Derived._activate)  # type: ignore[arg-type]  # called with self
        self._compute = compute
        self._deps: dict[Var[Any], Observation] = {}
        self._computing = False
        self._dirty = False

    def sample(self) -> T:
        if not self._observers:  # not active: compute on demand, tracking for our caller
            return self._compute()
        return super().sample()

    @property
    def value(self) -> T:
        if self._observers:
            return self._value
        _tracking.append({})  # computing on demand must not record dependencies for a caller
        try:
            return self._compute()
        finally:
            _tracking.pop()

    def _activate(self) -> Stop:
        self._recompute()
        return self._deactivate

    def _deactivate(self) -> None:
        deps, self._deps = self._deps, {}
        for obs in deps.values():
            obs.close()
        self._value = _UNSET

    def _on_dep(self, _: Any) -> None:
        if self._computing:
            self._dirty = True
            return
        self._recompute()

    def _recompute(self) -> None:
        while True:
            self._dirty = False
            self._computing = True
            seen: dict[Var[Any], Any] = {}
            _tracking.append(seen)
            try:
                value = self._compute()
            finally:
                _tracking.pop()
                self._computing = False
            for dep in [d for d in self._deps if d not in seen]:
                self._deps.pop(dep).close()
            for dep, sampled in seen.items():
                if dep not in self._deps:
                    self._subscribe(dep, sampled)
            if not self._dirty:
                break
        Var.update(self, value)

    def _subscribe(self, dep: Var[Any], sampled: Any) -> None:
        """Observe ``dep``; its immediate first notification only matters when its value is
        no longer what the computation saw (a lazy Var that read its source on start)."""
        first = True

        def on(value: Any) -> None:
            nonlocal first
            if first:
                first = False
                if value is sampled or (value == sampled and type(value) is type(sampled)):
                    return
                self._dirty = True
                return
            self._on_dep(value)

        self._deps[dep] = dep.observe(on)


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


def derive(compute: Callable[[], T]) -> Var[T]:
    """A Var whose value is ``compute()``, recomputed whenever a Var it sampled changes."""
    return _Derived(compute)


# ---------------------------------------------------------------------------------------------
# Activities
# ---------------------------------------------------------------------------------------------


class State(Generic[T_co]):
    """The state of an :class:`Activity`: :data:`Pending`, :class:`Ok` or :class:`Failed`.

    States are immutable, so a state of a narrower value type is one of a wider one
    (covariant): an ``Ok`` of a tree of bound names is a state of a tree of names."""

    __slots__ = ()


class _Pending(State[Any]):
    __slots__ = ()

    def __repr__(self) -> str:
        return "Pending"


Pending: State[Any] = _Pending()


class Ok(State[T_co]):
    __slots__ = ("value",)

    value: T_co

    def __init__(self, value: T_co) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Ok)
            and type(other.value) is type(self.value)
            and (other.value == self.value)
        )

    def __hash__(self) -> int:
        return hash(("ok", self.value))

    def __repr__(self) -> str:
        return f"Ok({self.value!r})"


class Failed(State[Any]):
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Failed) and (
            other.error is self.error
            or (type(other.error) is type(self.error) and other.error.args == self.error.args)
        )

    def __hash__(self) -> int:
        return hash(("failed", type(self.error), self.error.args))

    def __repr__(self) -> str:
        return f"Failed({self.error!r})"


class Activity(Var[State[T]]):
    """A Var of :class:`State`: a value that may be pending or have failed."""

    __slots__ = ()

    @classmethod
    def of(cls, value: T) -> Activity[T]:
        return cls(Ok(value))

    @classmethod
    def failed(cls, error: BaseException) -> Activity[Any]:
        return cls(Failed(error))

    @classmethod
    def pending(cls) -> Activity[Any]:
        return cls(Pending)

    async def wait(self, timeout: float | None = None) -> T:
        """The first non-pending value; raises the error of a failed state."""
        coro = self.changes(lambda s: s is not Pending)
        state: State[T] = await (asyncio.wait_for(coro, timeout) if timeout is not None else coro)
        if isinstance(state, Failed):
            raise state.error
        assert isinstance(state, Ok)
        value: T = state.value  # (mypy narrows State[T] to Ok[Any] here)
        return value


def not_ok(state: State[Any]) -> State[Never]:
    """``state``, Pending or Failed, as a state of any value type: neither carries a value, so
    it is passed on unchanged where a state of another value type is due."""
    return state


def derive_activity(compute: Callable[[], State[T]]) -> Activity[T]:
    """An Activity computed from other Vars (like :func:`derive`)."""
    return _DerivedActivity(compute)


class _DerivedActivity(_Derived[State[Any]], Activity[Any]):
    __slots__ = ()
