"""turnout: a service mesh routing proxy in the spirit of Linkerd 1.

The public surface for plugin authors is :mod:`turnout.api` (its ``__all__`` lists every name
a plugin may use); each of those names is also an attribute of this package
(``turnout.hookimpl``, ``turnout.Namer``, ``from turnout import Path``). The hooks a plugin can
implement are documented in :mod:`turnout.hookspecs`; the test kit for plugins' tests is
:mod:`turnout.testing`. Every other module is internal.

``import turnout`` stays cheap: :mod:`turnout.api` (which imports most of turnout) is imported
the first time one of its names other than ``hookimpl`` is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from ._markers import hookimpl as hookimpl

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import *  # noqa: F403 - what type checkers see of the lazy names below
else:

    def __getattr__(name: str) -> object:
        # PEP 562: the names of turnout.api (and __all__, for "from turnout import *") are
        # imported on first use; a submodule ("from turnout import testing") is left to the
        # import system without importing turnout.api
        if name == "__all__" or (
            not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is None
        ):
            api = importlib.import_module("turnout.api")
            if name == "__all__":
                return ["__version__", *api.__all__]
            if name in api.__all__:
                value = getattr(api, name)
                globals()[name] = value  # found directly from now on
                return value
        raise AttributeError(f"module 'turnout' has no attribute {name!r}")

    def __dir__() -> list[str]:
        api = importlib.import_module("turnout.api")
        return sorted({*globals(), *api.__all__})
