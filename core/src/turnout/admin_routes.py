"""The type plugins use to add admin endpoints (see ``turnout_admin_routes``), and the security
category of the admin server's own paths."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

Handler = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class AdminRoute:
    """One admin endpoint.

    :param method: HTTP method (``"GET"``, ``"POST"``...).
    :param path: URL path, aiohttp syntax (``/example/{name}.json``).
    :param handler: ``async def handler(request: AdminRequest) -> AdminResponse`` (both in
        :mod:`turnout.api`; the request has the attributes of aiohttp's ``web.Request`` that
        admin handlers use, and an aiohttp ``web.Response`` returned is accepted too).
    :param category: security category of ``admin.security``: ``ui``, ``control`` or
        ``diagnostics`` (the default).
    :param nav: label of a dashboard navigation link to this path, if any.
    """

    method: str
    path: str
    handler: Handler
    category: Literal["ui", "control", "diagnostics"] = "diagnostics"
    nav: str | None = None


_UI = re.compile(
    r"^(/|/files/.*|/admin/files/.*|/config\.json|/metrics\.json|/admin/metrics\.json|"
    r"/admin/metrics|/delegator|/delegator\.json|/logging|/help)$"
)
_CONTROL = re.compile(r"^(/admin/shutdown|/admin/reload|/logging\.json)$")


def category(path: str) -> str:
    """Linkerd's admin security category of a path: ``ui``, ``control`` or ``diagnostics``."""
    if _UI.match(path):
        return "ui"
    if _CONTROL.match(path):
        return "control"
    return "diagnostics"
