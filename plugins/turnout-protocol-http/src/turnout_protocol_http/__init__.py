"""HTTP/1.1 router for turnout."""

from __future__ import annotations

import importlib.util

__version__ = "0.1.0"


def data_path() -> str:
    """How this install's data path was built: ``"compiled"`` (mypyc C extensions, the default
    wherever a C compiler was found at install time) or ``"pure Python"`` (no compiler, or
    ``TURNOUT_COMPILE=0``; see setup.py). Answered without importing the data path."""
    spec = importlib.util.find_spec(f"{__name__}.runtime")
    origin = spec.origin if spec is not None else None
    return "compiled" if origin is not None and not origin.endswith(".py") else "pure Python"
