"""The module named by the ``turnout`` entry point: it registers ``io.l5d.ingress`` and runs
the Ingress watches of the identifiers a linker built.

Identifiers are built with their router, before the event loop runs; their watches start in
``turnout_startup`` (which waits, at most :data:`INITIAL_WAIT` seconds, for the first list of
the Ingresses, so that the first requests are identified) and stop in ``turnout_shutdown``.
Their state (rules in force, watch counts, last error) is served at
``/identifier_state/io.l5d.ingress.json`` on the admin server.

Cheap to import: aiohttp is imported when a configuration builds the identifier.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import turnout
from turnout.api import AdminRequest, AdminResponse, AdminRoute, IdentifierConfig, Linker

from .config import IngressIdentifierConfig

if TYPE_CHECKING:
    from .cache import IngressCache

log = logging.getLogger("turnout.identifier.ingress")

#: seconds turnout_startup waits for the first list of the Ingresses
INITIAL_WAIT = 5.0
#: the admin page of the caches' state
STATE_PATH = "/identifier_state/io.l5d.ingress.json"

#: caches built but not started yet (weak: a linker built and never started leaves nothing)
_unstarted: weakref.WeakSet[IngressCache] = weakref.WeakSet()
#: the caches each running linker started, by ``id(linker)``
_started: dict[int, list[IngressCache]] = {}


def to_start(cache: IngressCache) -> None:
    """Have ``cache`` started by the next linker that starts (its own)."""
    _unstarted.add(cache)


@turnout.hookimpl
def turnout_register_identifiers() -> list[type[IdentifierConfig]]:
    return [IngressIdentifierConfig]


@turnout.hookimpl
def turnout_startup(linker: Linker) -> Awaitable[None] | None:
    if not _unstarted:
        return None
    caches = list(_unstarted)
    _unstarted.clear()
    _started.setdefault(id(linker), []).extend(caches)
    return _start(caches)


async def _start(caches: list[IngressCache]) -> None:
    for cache in caches:
        cache.start()
    waits = [asyncio.ensure_future(cache.loaded.wait()) for cache in caches]
    _, pending = await asyncio.wait(waits, timeout=INITIAL_WAIT)
    for w in pending:
        w.cancel()
    if pending:
        log.warning(
            "io.l5d.ingress: no list of the Ingresses after %gs; requests are not identified "
            "until it arrives",
            INITIAL_WAIT,
        )


@turnout.hookimpl
def turnout_admin_routes(linker: Linker) -> list[AdminRoute] | None:
    if not _unstarted:  # (this linker built no io.l5d.ingress identifier)
        return None
    key = id(linker)

    async def state(request: AdminRequest) -> AdminResponse:
        return AdminResponse.json([cache.state() for cache in _started.get(key, [])])

    return [AdminRoute("GET", STATE_PATH, state, "diagnostics")]


@turnout.hookimpl
def turnout_shutdown(linker: Linker) -> Awaitable[None] | None:
    caches = _started.pop(id(linker), None)
    if not caches:
        return None
    return _close(caches)


async def _close(caches: list[IngressCache]) -> None:
    for cache in caches:
        await cache.close()
