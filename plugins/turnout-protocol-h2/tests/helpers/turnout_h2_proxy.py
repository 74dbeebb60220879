"""The YAML of a turnout with one ``protocol: h2`` router, for the tests."""

from __future__ import annotations

from typing import Any

import yaml


def h2_config(dtab: str, admin_port: int, port: int, **router: Any) -> str:
    """A turnout YAML with one ``protocol: h2`` router on ``port``: ``server={...}`` adds
    options to its server, ``namers=[...]`` and ``telemetry=[...]`` go to the top level, the
    other keywords are router options."""
    server = {"port": port, **router.pop("server", {})}
    top = {key: router.pop(key) for key in ("namers", "telemetry") if key in router}
    config: dict[str, Any] = {
        "admin": {"port": admin_port},
        **top,
        "routers": [{"protocol": "h2", "dtab": dtab, "servers": [server], **router}],
    }
    return yaml.safe_dump(config, sort_keys=False)
