"""The plugin module named by the ``turnout`` entry point: registers ``io.l5d.prometheus``.

The runtime (and prometheus-client) is imported only when a configuration uses the telemeter.
"""

from __future__ import annotations

import turnout

from .config import PrometheusConfig


@turnout.hookimpl
def turnout_register_telemeters() -> list[type[PrometheusConfig]]:
    return [PrometheusConfig]
