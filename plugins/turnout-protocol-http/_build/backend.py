"""In-tree PEP 517 backend: setuptools, plus mypy (mypyc) in the build environment when the
data path is to be compiled: every wheel build unless ``TURNOUT_COMPILE=0``, and editable
builds only with ``TURNOUT_COMPILE=1`` (see setup.py)."""

from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - re-export every hook


def _compile(editable: bool) -> bool:
    choice = os.environ.get("TURNOUT_COMPILE", "")
    return choice == "1" or (choice != "0" and not editable)


def get_requires_for_build_wheel(config_settings=None):  # type: ignore[no-untyped-def]
    requires = _setuptools.get_requires_for_build_wheel(config_settings)
    return [*requires, "mypy>=1.10"] if _compile(editable=False) else requires


def get_requires_for_build_editable(config_settings=None):  # type: ignore[no-untyped-def]
    requires = _setuptools.get_requires_for_build_editable(config_settings)
    return [*requires, "mypy>=1.10"] if _compile(editable=True) else requires


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    os.environ["_TURNOUT_BUILDING"] = "wheel"  # setup.py compiles only in this phase
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    os.environ["_TURNOUT_BUILDING"] = "editable"
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
