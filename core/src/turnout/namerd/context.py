"""What namerd's store and interface factories receive (:class:`NamerdContext`) and what an
interface factory returns (:class:`NamerdInterface`).

This module imports no part of the linker, so that the plugin manager can read namerd's
config bases without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..metrics import MetricsTree
    from ..naming import GlobalNamer, Namer, Path
    from ..plugin_manager import Plugins
    from .config import NamerdConfig
    from .runtime import NamespaceInterpreters
    from .store import DtabStore


@runtime_checkable
class NamerdInterface(Protocol):
    """What ``NamerdInterfaceConfig.new_interface`` returns: a listener serving namerd."""

    async def start(self) -> None:
        """Bind and serve (raise :class:`OSError` when the port is taken)."""

    def address(self) -> tuple[str, int]:
        """The bound ip and port (after :meth:`start`)."""

    async def close(self) -> None:
        """Stop serving; end open watch streams."""


@dataclass
class NamerdContext:
    """What store and interface factories receive: the config, the plugins, the metrics,
    namerd's namers and the ``/$`` namer; for interfaces also the store and the namespace
    interpreters (``interpreters.interpreter(ns)``)."""

    config: NamerdConfig
    plugins: Plugins
    metrics: MetricsTree
    namers: list[tuple[Path, Namer]]
    global_namer: GlobalNamer
    #: set before interfaces are built
    store: DtabStore | None = None
    interpreters: NamespaceInterpreters | None = None
    extra: dict[str, Any] = field(default_factory=dict)


__all__ = ["NamerdContext", "NamerdInterface"]
