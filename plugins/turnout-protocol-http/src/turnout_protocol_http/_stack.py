"""The core request stack (:mod:`turnout.router.stack`) as this plugin's data path sees it.

In a pure-Python install this module re-exports :mod:`turnout.router.stack`. The compiled
build (``TURNOUT_COMPILE=1``, see ``setup.py``) replaces it, for the build only, with a copy of
that module's source and compiles it together with the data path's modules (``setup.py``
lists them), so that the data path calls the stack natively (one source, no second copy to
keep in step).
"""

from turnout.api import (
    FAILURE,
    MAX_REQUEUES,
    MAX_RETRIES,
    RETRYABLE,
    SUCCESS,
    Call,
    Counts,
    RequestStack,
    RouteCache,
    ServerStats,
    Tally,
)

__all__ = [
    "FAILURE",
    "MAX_REQUEUES",
    "MAX_RETRIES",
    "RETRYABLE",
    "SUCCESS",
    "Call",
    "Counts",
    "RequestStack",
    "RouteCache",
    "ServerStats",
    "Tally",
]
