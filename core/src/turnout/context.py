"""What every factory receives, :class:`BuildContext` (``ctx``), and what a protocol's
``new_router`` returns, :class:`RouterRuntime`.

A leaf module: it imports nothing of turnout at run time beyond metrics and naming, so that the
config base classes (:mod:`turnout.config.model`), the plugin contract
(:mod:`turnout.hookspecs`) and plugins can all name the type without importing the linker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .metrics import MetricsTree
from .naming import Dtab, GlobalNamer, NameInterpreter, Namer, Path

if TYPE_CHECKING:
    # Type-only, and necessarily so: the config classes, the plugin manager and the linker all
    # build things from a BuildContext, and a BuildContext holds them (a cycle in the types
    # themselves). At run time this module imports none of them.
    from .config.model import LinkerConfig, RouterConfig
    from .linker import Linker
    from .plugin_manager import Plugins

__all__ = ["BuildContext", "RouterRuntime"]


@dataclass
class BuildContext:
    """What factories (``new_namer``, ``new_interpreter``, ``new_router``, ``new_telemeter``...)
    receive as ``ctx``: the process-wide objects a runtime object may need while it is built.

    - ``metrics``: the metrics tree; a namer or telemeter adds its counters, gauges and
      histograms under its own scope (``ctx.metrics.counter("namer", "#/io.l5d.consul", ...)``).
    - ``config``: the whole validated configuration; ``router``: the router being built
      (``new_router``, ``new_interpreter``, ``new_identifier`` and announcers), else None.
    - ``global_namer`` and ``namers``: the ``/$`` namespace and the configured namers (with
      their prefixes) built so far, for interpreters and transformers that bind names.
    - ``interpreter``: the router's interpreter (set for ``new_router``).
    - ``plugins``: the loaded plugins (their hooks and the kind registry).
    - ``linker``: the running process (``linker.spawn(coro)`` starts a background task that
      ends with it); None when a factory is called outside a linker (tests, ``turnout check``).
    """

    config: LinkerConfig
    plugins: Plugins
    metrics: MetricsTree
    global_namer: GlobalNamer
    namers: list[tuple[Path, Namer]] = field(default_factory=list)
    router: RouterConfig | None = None
    interpreter: NameInterpreter | None = None
    linker: Linker | None = None


@runtime_checkable
class RouterRuntime(Protocol):
    """What a protocol's ``new_router`` returns: the running side of one router.

    A structural type: a protocol plugin's router need not subclass it (so that it can be a
    compiled class), it only has to provide these members.
    """

    label: str
    interpreter: NameInterpreter
    dtab: Dtab

    async def start(self) -> None:
        """Bind the servers (raise :class:`OSError` when a port is taken)."""

    def stop_accepting(self) -> None:
        """Close the listening sockets; keep serving connections already accepted."""

    async def drain(self) -> None:
        """Return when no request is in flight."""

    async def close(self) -> None:
        """Close every connection and release resources."""

    def servers(self) -> list[tuple[str, int]]:
        """The addresses the router listens on (after ``start``)."""

    def client_state(self) -> dict[str, Any]:
        """The ``/client_state.json`` entries of this router's clients."""
