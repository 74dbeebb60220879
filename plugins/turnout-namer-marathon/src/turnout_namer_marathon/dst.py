"""Marathon's ``dst`` as a name: where the namer's HTTP client connects, bound and followed.

Linkerd builds its Marathon client with ``Http.client.newService(dst)``: ``dst`` is any name
Finagle can bind (``/$/inet/<host>/<port>``, or a global namer such as
``/$/io.buoyant.namer.zk.leader/<zk servers>/<leader group>`` that finds the current Marathon
leader), and the client follows its changes. Here:

- ``/$/...`` names are bound through the linker's ``/$`` namespace (``ctx.global_namer``:
  ``inet``, ``fixedinet`` and every installed global namer); ``/#/<prefix>/...`` names
  through the configured namers (``ctx.namers``), as an empty dtab would bind them;
- the bound tree is followed (:func:`turnout.api.derive`): a leaf's address set, the first
  alternative that is not negative, the union of a union's branches; a leaf that is a path
  is bound again (at most :data:`MAX_DEPTH` times);
- the namer talks to one address of the set, kept while it stays in the set (else the first
  in sorted order); when the dst moves (a new Marathon leader), the next request goes to the
  new address;
- while the dst has no address (the leader group is empty, ZooKeeper is down and never
  answered, the name is negative), the last good address is kept and the reason is shown in
  ``/namer_state`` (``marathon.dst``); with no address ever, requests fail with that reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnout.api import (
    AddrBound,
    Address,
    AddrFailed,
    AddrPending,
    Alt,
    BuildContext,
    Empty,
    Fail,
    Failed,
    Leaf,
    Name,
    NameBound,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    Union,
    Var,
    derive,
)

log = logging.getLogger("turnout.namer.marathon")

#: most rewrites (leaves that are paths) followed while binding the dst
MAX_DEPTH = 16

Lookup = Callable[[Path], State[NameTree[Name]]]


@dataclass(frozen=True)
class DstState:
    """What the dst binds to now: ``status`` is ``bound`` (with ``addresses``, possibly
    none), ``neg``, ``pending`` or ``failed`` (with ``error``)."""

    status: str
    addresses: tuple[Address, ...] = ()
    error: str | None = None


PENDING = DstState("pending")
NEG = DstState("neg")


def _failed(error: str) -> DstState:
    return DstState("failed", error=error)


def _bound(addresses: Any) -> DstState:
    return DstState("bound", tuple(sorted(set(addresses), key=Address.sort_key)))


def namer_lookup(ctx: BuildContext) -> Lookup:
    """How the dst's paths are looked up: ``/#/<prefix>/...`` in the configured namers
    (read when binding, so that namers configured after this one count), anything else in
    the ``/$`` namespace. Samples the namers' activities (call it inside :func:`derive`)."""
    hash_label = b"#"

    def lookup(path: Path) -> State[NameTree[Name]]:
        if len(path) and path[0] == hash_label:
            for prefix, namer in list(ctx.namers):
                mount = Path.of("#") + prefix
                if path.starts_with(mount):
                    state = namer.lookup(path.drop(len(mount))).sample()
                    if isinstance(state, Ok) and state.value is Neg:
                        continue
                    return state
            return Ok(Neg)
        return ctx.global_namer.lookup(path)

    return lookup


def evaluate(lookup: Lookup, path: Path, depth: int = 0) -> DstState:
    """Bind ``path`` with ``lookup`` and read its addresses (see the module docstring)."""
    if depth > MAX_DEPTH:
        return _failed(f"more than {MAX_DEPTH} rewrites binding {path.show}")
    state = lookup(path)
    if state is Pending:
        return PENDING
    if isinstance(state, Failed):
        return _failed(str(state.error) or type(state.error).__name__)
    assert isinstance(state, Ok)
    return _tree(lookup, state.value, depth)


def _tree(lookup: Lookup, tree: NameTree[Name], depth: int) -> DstState:
    if isinstance(tree, Leaf):
        value = tree.value
        if isinstance(value, NameBound):
            addr = value.addr.sample()
            if isinstance(addr, AddrBound):
                return _bound(addr.addresses)
            if isinstance(addr, AddrFailed):
                return _failed(addr.cause)
            return PENDING if addr is AddrPending else NEG
        return evaluate(lookup, value, depth + 1)
    if isinstance(tree, Alt):
        for branch in tree.trees:
            result = _tree(lookup, branch, depth)
            if result.status != "neg":
                return result
        return NEG
    if isinstance(tree, Union):
        results = [_tree(lookup, w.tree, depth) for w in tree.trees]
        bound = [r for r in results if r.status == "bound"]
        if bound:
            return _bound(a for r in bound for a in r.addresses)
        for status in ("pending", "failed"):
            for r in results:
                if r.status == status:
                    return r
        return NEG
    if tree is Empty:
        return _bound(())
    if tree is Fail:
        return _failed("the name binds to ! (fail)")
    return NEG


class DstBinding:
    """The dst of one Marathon namer, followed while the namer polls (see the module
    docstring).

    :param dst: the name. :param lookup: :func:`namer_lookup` of the build context.
    :param wait: seconds a request waits for a first address while the dst is pending.
    """

    def __init__(self, dst: Path, lookup: Lookup, *, wait: float = 10.0) -> None:
        self.dst = dst
        self.wait = wait
        self.var: Var[DstState] = derive(lambda: evaluate(lookup, dst))
        #: the address requests go to (the last good one while the dst has none)
        self.current: Address | None = None
        self.bound: DstState = PENDING
        self.changes = 0
        self.last_change: float | None = None
        self._observation: Any = None
        self._changed: asyncio.Event | None = None

    # -- following -------------------------------------------------------------------------
    def start(self) -> None:
        """Observe the dst (once; inside the event loop: it starts the watches it needs)."""
        if self._observation is None:
            self._changed = asyncio.Event()
            self._observation = self.var.observe(self._on_state)

    def _on_state(self, state: DstState) -> None:
        self.bound = state
        if state.status == "bound" and state.addresses:
            if self.current not in state.addresses:
                previous, self.current = self.current, state.addresses[0]
                self.changes += 1
                self.last_change = time.time()
                log.info(
                    "io.l5d.marathon dst %s: Marathon is at %s%s",
                    self.dst.show,
                    self.current,
                    "" if previous is None else f" (was {previous})",
                )
        elif self.current is not None:
            log.warning(
                "io.l5d.marathon dst %s: %s; still talking to %s",
                self.dst.show,
                self.reason(),
                self.current,
            )
        if self._changed is not None:
            self._changed.set()

    def reason(self) -> str:
        """Why the dst gives no address now."""
        state = self.bound
        if state.status == "failed":
            return f"binding failed: {state.error}"
        if state.status == "neg":
            return "it binds to nothing (negative)"
        if state.status == "bound":
            return "it binds to an empty address set"
        return "it is not bound yet"

    async def address(self) -> Address:
        """Where the next request goes; waits up to ``wait`` seconds for a first address
        while the dst is pending. Raises :class:`LookupError` with the reason when there is
        none."""
        self.start()
        assert self._changed is not None
        deadline = time.monotonic() + self.wait
        while self.current is None:
            remaining = deadline - time.monotonic()
            if self.bound.status != "pending" or remaining <= 0:
                raise LookupError(f"dst {self.dst.show} has no address: {self.reason()}")
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                continue
        return self.current

    def close(self) -> None:
        observation, self._observation = self._observation, None
        if observation is not None:
            observation.close()

    # -- observability -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        ok = self.bound.status == "bound" and bool(self.bound.addresses)
        return {
            "dst": self.dst.show,
            "state": self.bound.status,
            "addresses": [str(a) for a in self.bound.addresses],
            "current": None if self.current is None else str(self.current),
            "changes": self.changes,
            "lastChange": self.last_change,
            "error": None if ok else self.reason(),
        }
