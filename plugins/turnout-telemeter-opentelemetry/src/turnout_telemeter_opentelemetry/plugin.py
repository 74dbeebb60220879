"""Registers ``io.l5d.opentelemetry`` with turnout (entry point group ``turnout``)."""

from __future__ import annotations

from turnout import hookimpl
from turnout.api import TelemeterConfig

from .telemeter import OpenTelemetryConfig


@hookimpl
def turnout_register_telemeters() -> list[type[TelemeterConfig]]:
    return [OpenTelemetryConfig]
