"""The YAML of a turnout with one ``protocol: h2`` router, for the tests."""

from __future__ import annotations

from typing import Any

import yaml


def h2_config(dtab: str, admin_port: int, port: int, **router: Any) -> str:
    """A turnout YAML with one ``protocol: h2`` router on ``port``."""
    server = {"port": port, **router.pop("server", {})}
    config: dict[str, Any] = {
        "admin": {"port": admin_port},
        "routers": [{"protocol": "h2", "dtab": dtab, "servers": [server], **router}],
    }
    telemetry = router.pop("telemetry", None)
    if telemetry:
        config["telemetry"] = telemetry
        config["routers"][0].pop("telemetry", None)
    return yaml.safe_dump(config, sort_keys=False)
