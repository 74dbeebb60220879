"""The plugin module named by the ``turnout`` entry point: registers ``io.l5d.influxdb``.

The runtime (and aiohttp) is imported only when a configuration uses the telemeter.
"""

from __future__ import annotations

import turnout

from .config import InfluxDbConfig


@turnout.hookimpl
def turnout_register_telemeters() -> list[type[InfluxDbConfig]]:
    return [InfluxDbConfig]
