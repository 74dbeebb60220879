"""The plugin module named by the ``turnout`` entry point: registers ``io.l5d.statsd``.

The runtime is imported only when a configuration uses the telemeter.
"""

from __future__ import annotations

import turnout

from .config import StatsdConfig


@turnout.hookimpl
def turnout_register_telemeters() -> list[type[StatsdConfig]]:
    return [StatsdConfig]
