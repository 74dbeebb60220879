"""The pluggy markers of turnout's plugin contract, in a leaf module so that ``import turnout``
(and ``@turnout.hookimpl`` in a plugin) imports nothing else of turnout. The hooks themselves
are specified in :mod:`turnout.hookspecs`."""

from __future__ import annotations

import pluggy

#: the pluggy project name: hook implementations are looked up under it
PROJECT = "turnout"

#: marks a hook specification (in :mod:`turnout.hookspecs`)
hookspec = pluggy.HookspecMarker(PROJECT)
#: marks a plugin's hook implementation: ``@turnout.hookimpl``
hookimpl = pluggy.HookimplMarker(PROJECT)
