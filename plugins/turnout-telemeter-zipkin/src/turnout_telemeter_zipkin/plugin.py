"""Registers ``io.l5d.zipkin`` with turnout (entry point group ``turnout``)."""

from __future__ import annotations

from turnout import hookimpl
from turnout.api import TelemeterConfig

from .telemeter import ZipkinConfig


@hookimpl
def turnout_register_telemeters() -> list[type[TelemeterConfig]]:
    return [ZipkinConfig]
