"""The type plugins use to add admin endpoints (see ``turnout_admin_routes``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

Handler = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class AdminRoute:
    """One admin endpoint.

    :param method: HTTP method (``"GET"``, ``"POST"``...).
    :param path: URL path, aiohttp syntax (``/example/{name}.json``).
    :param handler: ``async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response``.
    :param category: security category of ``admin.security``: ``ui``, ``control`` or
        ``diagnostics`` (the default).
    :param nav: label of a dashboard navigation link to this path, if any.
    """

    method: str
    path: str
    handler: Handler
    category: Literal["ui", "control", "diagnostics"] = "diagnostics"
    nav: str | None = None
