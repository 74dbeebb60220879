"""Helpers for tests that register ServerSet members in a real ZooKeeper (with kazoo).

``member_json(8080, endpoints={"admin": 9990})`` is a Twitter ServerSet member's data;
``register(client, "/discovery/prod/web", data)`` creates it as an ephemeral sequential
``member_<seq>`` child, the way Finagle's announcer does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from turnout.naming import (
    Activity,
    Addr,
    AddrBound,
    AddrNeg,
    AddrPending,
    Leaf,
    Name,
    NameBound,
    NameTree,
    Neg,
    Ok,
    Pending,
)


def member_json(
    port: int,
    *,
    host: str = "127.0.0.1",
    status: str | None = "ALIVE",
    endpoints: dict[str, int] | None = None,
    shard: int | None = 0,
) -> bytes:
    """A Twitter ServerSet member's data."""
    doc: dict[str, Any] = {"serviceEndpoint": {"host": host, "port": port}}
    doc["additionalEndpoints"] = {
        name: {"host": host, "port": p} for name, p in (endpoints or {}).items()
    }
    if status is not None:
        doc["status"] = status
    if shard is not None:
        doc["shard"] = shard
    return json.dumps(doc).encode()


def register(client: KazooClient, znode: str, data: bytes, *, ephemeral: bool = True) -> str:
    """Create a ``member_<seq>`` child of ``znode`` (made if missing); its full path."""
    client.ensure_path(znode)
    path: str = client.create(f"{znode}/member_", data, ephemeral=ephemeral, sequence=True)
    return path


# ---------------------------------------------------------------------------------------------
# Observing a namer in-process
# ---------------------------------------------------------------------------------------------


def addr_of(activity: Activity[NameTree[Name]]) -> Addr:
    """What a namer lookup currently binds to: the bound leaf's ``Addr``, ``AddrNeg`` for a
    negative tree, ``AddrPending`` while pending."""
    state = activity.value
    if isinstance(state, Ok):
        tree = state.value
        if isinstance(tree, Leaf) and isinstance(tree.value, NameBound):
            return tree.value.addr.value
        if tree is Neg:
            return AddrNeg
        raise AssertionError(f"unexpected tree {tree!r}")
    if state is Pending:
        return AddrPending
    raise AssertionError(f"unexpected state {state!r}")


def ports(addr: Addr) -> set[int]:
    """The ports of a bound address set (empty for any other state)."""
    return {a.port for a in addr.addresses} if isinstance(addr, AddrBound) else set()


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> float:
    """Await until ``predicate()`` is true (checked every 5 ms); the seconds it took.
    :class:`TimeoutError` after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not true after {timeout}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start
