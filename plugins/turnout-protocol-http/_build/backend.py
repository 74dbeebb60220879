"""In-tree PEP 517 backend: setuptools, plus mypy in the build environment when the
``TURNOUT_COMPILE=1`` environment variable asks for the compiled data path (see setup.py)."""

from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - re-export every hook


def _compile() -> bool:
    return os.environ.get("TURNOUT_COMPILE", "") == "1"


def get_requires_for_build_wheel(config_settings=None):  # type: ignore[no-untyped-def]
    requires = _setuptools.get_requires_for_build_wheel(config_settings)
    return [*requires, "mypy>=1.10"] if _compile() else requires


def get_requires_for_build_editable(config_settings=None):  # type: ignore[no-untyped-def]
    requires = _setuptools.get_requires_for_build_editable(config_settings)
    return [*requires, "mypy>=1.10"] if _compile() else requires


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    os.environ["_TURNOUT_BUILDING"] = "1"  # setup.py compiles only in this phase
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    os.environ["_TURNOUT_BUILDING"] = "1"
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
