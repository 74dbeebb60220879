"""namerd at run time: the stored dtabs as live values, the interpreter of each namespace,
and the process that serves the interfaces and the admin server.

A namespace's interpreter is Linkerd's ``ConfiguredDtabNamer``: the namespace's stored dtab
(watched: a write applies to every binding at once; a missing namespace is an empty dtab)
bound through namerd's namers and the ``/$`` namers. A store that fails keeps the last good
dtab in force and is watched again after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..config.loader import LoadedConfig
from ..config.model import LinkerConfig
from ..errors import TurnoutError
from ..linker import Linker
from ..naming import (
    Activity,
    ConfiguredNamersInterpreter,
    Dtab,
    DtabFileInterpreter,
    Failed,
    GlobalNamer,
    NameInterpreter,
    Namer,
    Ok,
    Path,
    Pending,
    State,
)
from ..plugin_manager import Plugins
from .config import LoadedNamerdConfig
from .context import NamerdContext, NamerdInterface
from .store import DtabStore

log = logging.getLogger("turnout.namerd")

#: seconds between attempts to watch a namespace again after its store failed
STORE_RETRY = (0.5, 10.0)


class NamespaceInterpreters:
    """The interpreter of each namespace (cached), and each namespace's dtab as an
    :class:`Activity`."""

    def __init__(
        self, store: DtabStore, namers: list[tuple[Path, Namer]], global_namer: GlobalNamer
    ) -> None:
        self.store = store
        self.namers = namers
        self.global_namer = global_namer
        self._dtabs: dict[str, Activity[Dtab]] = {}
        self._interpreters: dict[str, NameInterpreter] = {}
        #: the namers without any dtab (``/api/1/addr``, ``/api/1/delegate`` without ns)
        self.namers_only = ConfiguredNamersInterpreter(namers, global_namer)

    def dtab(self, ns: str) -> Activity[Dtab]:
        """``ns``'s stored dtab, watched while observed (empty while ``ns`` does not exist)."""
        act = self._dtabs.get(ns)
        if act is None:
            if len(self._dtabs) > 10_000:
                self._dtabs = {k: a for k, a in self._dtabs.items() if a.observed}
                self._interpreters = {
                    k: i for k, i in self._interpreters.items() if k in self._dtabs
                }
            act = self._dtabs[ns] = Activity(Pending, start=self._watcher(ns))
        return act

    def interpreter(self, ns: str) -> NameInterpreter:
        found = self._interpreters.get(ns)
        if found is None:
            found = DtabFileInterpreter(self.namers, self.global_namer, self.dtab(ns))
            self._interpreters[ns] = found
        return found

    def _watcher(self, ns: str) -> Callable[[Any], Callable[[], None]]:
        def start(var: Any) -> Callable[[], None]:
            task = asyncio.get_running_loop().create_task(self._follow(ns, var))

            def stop() -> None:
                task.cancel()

            return stop

        return start

    async def _follow(self, ns: str, var: Activity[Dtab]) -> None:
        delay = STORE_RETRY[0]
        while True:
            try:
                async for dtab, _version in self.store.watch(ns):
                    delay = STORE_RETRY[0]
                    var.update(Ok(dtab if dtab is not None else Dtab.empty))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                state: State[Dtab] = var.value
                if not isinstance(state, Ok):
                    var.update(Failed(e))
                log.warning(
                    "watching the dtab of namespace %s failed (%s: %s)%s; again in %.1fs",
                    ns,
                    type(e).__name__,
                    e,
                    "; keeping the last good dtab" if isinstance(state, Ok) else "",
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, STORE_RETRY[1])


class Namerd(Linker):
    """A namerd process: a linker without routers (its namers, telemeters and admin server)
    plus the dtab store and the interfaces."""

    def __init__(self, loaded: LoadedConfig, plugins: Plugins, namerd: LoadedNamerdConfig) -> None:
        super().__init__(loaded, plugins)
        self.namerd_config = namerd.config
        self.store: DtabStore | None = None
        self.namespaces: NamespaceInterpreters | None = None
        self.interfaces: list[NamerdInterface] = []

    @classmethod
    def build_namerd(cls, loaded: LoadedNamerdConfig, plugins: Plugins) -> Namerd:
        """Build the namers, telemeters, store and interfaces (nothing listens yet)."""
        cfg = loaded.config
        linker_config = LinkerConfig(
            admin=cfg.admin, routers=[], namers=cfg.namers, telemetry=cfg.telemetry
        )
        base = LoadedConfig(linker_config, loaded.source, loaded.warnings)
        namerd = cls(base, plugins, loaded)
        namerd._build_parts()
        return namerd

    def _build_parts(self) -> None:
        # what Linker.build does for telemeters and namers (namerd has no routers)
        for telemeter_config in self.config.telemetry:
            self.telemeters.append(telemeter_config.new_telemeter(self.context()))
        for tm in self.telemeters:
            if tm.tracer() is not None:
                log.warning("telemeter %r defines a tracer but namerd does not trace", tm)
        from ..naming.transformer import TransformingNamer

        for namer_config in self.config.namers:
            namer = namer_config.new_namer(self.context())
            if namer_config.transformers:
                namer = TransformingNamer(
                    namer, [t.new_transformer(self.context()) for t in namer_config.transformers]
                )
            self.namers.append((namer_config.effective_prefix, namer))
        ctx = self.namerd_context()
        from .metrics import CountingStore

        # (reads, writes, conflicts, watches counted under dtabstore/<kind>/)
        self.store = CountingStore(
            self.namerd_config.storage.new_store(ctx),
            self.metrics,
            str(self.namerd_config.storage.kind),
        )
        self.namespaces = NamespaceInterpreters(self.store, self.namers, self.global_namer)
        ctx.store, ctx.interpreters = self.store, self.namespaces
        self.interfaces = [i.new_interface(ctx) for i in self.namerd_config.interfaces]

    def namerd_context(self) -> NamerdContext:
        return NamerdContext(
            self.namerd_config,
            self.plugins,
            self.metrics,
            self.namers,
            self.global_namer,
            self.store,
            self.namespaces,
        )

    async def start(self) -> None:
        await super().start()
        for iface, config in zip(self.interfaces, self.namerd_config.interfaces, strict=True):
            try:
                await iface.start()
            except OSError as e:
                raise TurnoutError(
                    f"interface {config.kind} cannot listen on {config.ip}:"
                    f"{config.effective_port}: {e.strerror or e}; choose another 'port'"
                ) from e

    async def close(self) -> None:
        for iface in self.interfaces:
            try:
                await iface.close()
            except Exception:
                log.exception("closing interface %r failed", iface)
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()
        await super().close()


__all__ = [
    "STORE_RETRY",
    "Namerd",
    "NamerdContext",
    "NamerdInterface",
    "NamespaceInterpreters",
]
