"""The linker: one running turnout process, built from a validated configuration.

Building (``Linker.build``) creates the namers, and for every router its interpreter and
its protocol runtime; nothing listens yet. ``Linker.serve`` binds the servers and the admin
server, runs the lifecycle hooks, and waits for a shutdown request (SIGTERM/SIGINT or
``POST /admin/shutdown``; SIGHUP reloads the configuration, see :mod:`turnout.reload`), then
drains: servers stop accepting, in-flight requests get
``admin.shutdownGraceMs`` to finish, then everything closes and ``serve`` returns 0.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from .announcer import CONFIGURED, ActiveAnnouncement, Announcer, announced_hosts, matching
from .config.loader import LoadedConfig
from .config.model import RouterConfig

# BuildContext and RouterRuntime moved to turnout.context; still importable from here
from .context import BuildContext as BuildContext
from .context import RouterRuntime as RouterRuntime
from .errors import TurnoutError
from .metrics import WINDOW, MetricsTree
from .naming import GlobalNamer, NameInterpreter, Namer, Path
from .naming.transformer import TransformingInterpreter, TransformingNamer
from .plugin_manager import Plugins
from .process_stats import ProcessStats
from .reload import Reloader
from .telemetry import Telemeter
from .tls import CLIENT_RELOADS
from .tracing import Tracing

log = logging.getLogger("turnout")


class Linker:
    """A running configuration (see the module docstring)."""

    def __init__(self, loaded: LoadedConfig, plugins: Plugins) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.plugins = plugins
        self.metrics = MetricsTree()
        named = {n: reg.namer for n, reg in plugins.registry.global_namers.items()}
        self.global_namer = GlobalNamer(named)
        self.namers: list[tuple[Path, Namer]] = []
        self.interpreters: dict[str, NameInterpreter] = {}
        self.routers: list[RouterRuntime] = []
        self.telemeters: list[Telemeter] = []
        #: each router's announcers: label → [(/#/<prefix>, announcer)]
        self.announcers: dict[str, list[tuple[Path, Announcer]]] = {}
        #: what is announced now (withdrawn when draining starts)
        self.announcements: list[ActiveAnnouncement] = []
        #: the tracers of every telemeter that traces, or None (routers trace nothing)
        self.tracing: Tracing | None = None
        self.admin: Any = None
        self._group: anyio.abc.TaskGroup | None = None
        #: each running telemeter's run(): its cancel scope and an event set when it ended
        self._telemeter_runs: dict[int, tuple[anyio.CancelScope, anyio.Event]] = {}
        self._shutdown: asyncio.Event | None = None
        self._grace_override: float | None = None
        #: the ``process/...`` gauges and descriptor-exhaustion watch (while serving)
        self.process_stats: ProcessStats | None = None
        self.ready = False
        self.draining = False
        #: reloading the config file (SIGHUP, POST /admin/reload; see turnout.reload)
        self._reloader: Reloader | None = None

    @property
    def reloader(self) -> Reloader:
        """The reload state (created on first use)."""
        if self._reloader is None:
            self._reloader = Reloader(self)
        return self._reloader

    # -- building --------------------------------------------------------------------------
    def context(self, **extra: Any) -> BuildContext:
        return BuildContext(
            self.config,
            self.plugins,
            self.metrics,
            self.global_namer,
            self.namers,
            linker=self,
            **extra,
        )

    @classmethod
    def build(cls, loaded: LoadedConfig, plugins: Plugins, *, routers: bool = True) -> Linker:
        """Build namers, interpreters and (unless ``routers=False``) router runtimes."""
        linker = cls(loaded, plugins)
        for telemeter_config in linker.config.telemetry:
            linker.telemeters.append(telemeter_config.new_telemeter(linker.context()))
        tracers = [t for t in (tm.tracer() for tm in linker.telemeters) if t is not None]
        linker.tracing = Tracing(tracers) if tracers else None
        for namer_config in linker.config.namers:
            namer = namer_config.new_namer(linker.context())
            if namer_config.transformers:  # applied in order to this namer's bound results
                namer = TransformingNamer(
                    namer, [t.new_transformer(linker.context()) for t in namer_config.transformers]
                )
            linker.namers.append((namer_config.effective_prefix, namer))
        for router_config in linker.config.routers:
            ctx = linker.context(router=router_config)
            interpreter = router_config.interpreter.new_interpreter(ctx)
            transformers = router_config.interpreter.transformers
            if transformers:  # applied in order to every tree the interpreter binds
                interpreter = TransformingInterpreter(
                    interpreter, [t.new_transformer(ctx) for t in transformers]
                )
            linker.interpreters[router_config.effective_label] = interpreter
            if router_config.originator:
                linker.metrics.gauge("rt", router_config.effective_label, "originator").set(1)
            if routers:
                ctx.interpreter = interpreter
                linker.routers.append(router_config.new_router(ctx))
                linker.announcers[router_config.effective_label] = [
                    (CONFIGURED + a.effective_prefix, a.new_announcer(ctx))
                    for a in router_config.announcers
                ]
        return linker

    def router_config(self, label: str) -> RouterConfig:
        for r in self.config.routers:
            if r.effective_label == label:
                return r
        known = ", ".join(r.effective_label for r in self.config.routers)
        raise TurnoutError(f"no router labelled '{label}' (routers: {known})")

    # -- running ---------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, in the linker's task group: it is cancelled when
        the linker stops, and an exception it raises is logged without stopping the linker."""
        if self._group is None:
            raise TurnoutError("Linker.spawn() is only available while the linker is serving")
        self._group.start_soon(_logged, coro)

    def request_shutdown(self, grace: float | None = None) -> None:
        """Begin a graceful shutdown (idempotent); ``grace`` overrides shutdownGraceMs."""
        if grace is not None:
            self._grace_override = grace
        if self._shutdown is not None:
            self._shutdown.set()

    async def start(self) -> None:
        """Start the admin server and the routers' servers, then run the startup hooks."""
        self._shutdown = asyncio.Event()
        self.spawn(self._tick())
        self.process_stats = ProcessStats(self.metrics)
        self.metrics.derived_counter("tls", "client", "reloads", fn=lambda: CLIENT_RELOADS[0])
        self.metrics.derived_counter(
            "tls", "client", "reload_failures", fn=lambda: CLIENT_RELOADS[1]
        )
        # out of descriptors on accept(): counted and logged once per interval (asyncio's
        # loop reports it to the handler; under uvloop, the stats' probe notices it). The
        # handler stays after close(): asyncio may report a late accept retry then.
        self.process_stats.fds.install(asyncio.get_running_loop())
        _ = self.reloader  # (its metrics exist from the start)
        self.spawn(self.process_stats.run())
        for telemeter in self.telemeters:
            self.start_telemeter(telemeter)
        if self.config.admin.port or self.config.admin.port == 0:
            from .admin import AdminServer

            self.admin = AdminServer(self)
            admin = self.config.admin
            await _listening(self.admin.start(), f"the admin server ({admin.ip}:{admin.port})")
        for router in self.routers:
            await _listening(router.start(), f"router '{router.label}'")
        await self._announce()
        await _await_all(self.plugins.hook.turnout_startup(linker=self))
        self.ready = True

    async def serve(
        self, *, install_signals: bool = True, on_ready: Callable[[Linker], None] | None = None
    ) -> int:
        """Start, wait for a shutdown request, drain and close. Returns the exit status.

        Background work (plugin tasks, the metrics window) runs in one anyio task group that
        lives exactly as long as this call.
        """
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                await self.start()
            except BaseException:
                await self.close()
                raise
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._on_signal)
                loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
            if on_ready is not None:
                on_ready(self)
            assert self._shutdown is not None
            await self._shutdown.wait()
            await self.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        self._group = None
        return 0

    def _on_reload_signal(self) -> None:
        if self.draining or self._group is None:
            return
        log.info("SIGHUP: reloading the configuration")
        self.reloader.trigger()

    def _on_signal(self) -> None:
        if self.draining:  # a second signal: stop now
            log.warning("second signal: exiting without waiting for in-flight requests")
            self._grace_override = 0.0
            for router in self.routers:
                router.stop_accepting()
            raise SystemExit(1)
        log.info("shutdown requested; draining")
        self.request_shutdown()

    async def stop(self) -> None:
        """Drain and close: stop accepting, wait up to the grace period, close everything."""
        self.draining = True
        self.ready = False
        grace = (
            self._grace_override
            if self._grace_override is not None
            else self.config.admin.shutdown_grace_ms / 1000
        )
        await self._withdraw()  # first: leave service discovery while still answering
        if self._reloader is not None:  # (a reload in progress finishes first)
            async with self._reloader.lock:
                pass
        for router in self.routers:
            router.stop_accepting()
        with anyio.move_on_after(max(grace, 0.001)) as grace_scope:
            async with anyio.create_task_group() as drains:
                for router in self.routers:
                    drains.start_soon(router.drain)
        if grace_scope.cancelled_caught:
            log.warning("shutdown grace period (%.1fs) over; closing in-flight requests", grace)
        await self.close()

    async def close(self) -> None:
        await self._withdraw()
        for router in self.routers:
            await router.close()
        for announcers in self.announcers.values():
            for _, announcer in announcers:
                try:
                    await announcer.close()
                except Exception:
                    log.exception("closing announcer %r failed", announcer)
        await _await_all(self.plugins.hook.turnout_shutdown(linker=self))
        for telemeter in self.telemeters:
            await self.stop_telemeter(telemeter)
        for _, namer in self.namers:
            await namer.close()
        for interpreter in self.interpreters.values():
            await interpreter.close()
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        if self._reloader is not None:  # replaced routers still draining: closed now
            await self._reloader.close()
        if self._group is not None:
            self._group.cancel_scope.cancel()  # background tasks end with the linker

    # -- announcing ------------------------------------------------------------------------
    async def _announce(self) -> None:
        """Announce every ``servers[].announce`` name with each matching announcer (Linkerd's
        ``Main.announce``: the name loses the announcer's prefix; ``0.0.0.0`` is announced at
        every non-loopback address)."""
        for router_config, router in zip(self.config.routers, self.routers, strict=False):
            label = router_config.effective_label
            announcers = self.announcers.get(label, [])
            bound = router.servers()
            for server, (ip, port) in zip(router_config.servers, bound, strict=False):
                for name in server.announce:
                    found = matching(announcers, name)
                    if not found:  # the config check rejects this; kept for built linkers
                        log.warning("no announcer found for %s", name.show)
                    for prefix, announcer in found:
                        for host in announced_hosts(ip or server.ip):
                            rest = name.drop(len(prefix))
                            log.info(
                                "announcing %s:%d as %s to %s",
                                host,
                                port,
                                name.show,
                                announcer.scheme,
                            )
                            announcement = await announcer.announce(host, port, rest)
                            self.announcements.append(
                                ActiveAnnouncement(
                                    label, name, host, port, announcer.scheme, announcement
                                )
                            )

    async def _withdraw(self) -> None:
        """Withdraw every announcement, concurrently, waiting at most 5 s (idempotent)."""
        pending = [a for a in self.announcements if not a.withdrawn]
        if not pending:
            return

        async def one(active: ActiveAnnouncement) -> None:
            active.withdrawn = True
            try:
                await active.announcement.withdraw()
                log.info("withdrew %s:%d as %s", active.host, active.port, active.name.show)
            except Exception:
                log.exception("withdrawing %s failed", active.name.show)

        with anyio.move_on_after(5):
            async with anyio.create_task_group() as group:
                for active in pending:
                    group.start_soon(one, active)

    def start_telemeter(self, telemeter: Telemeter) -> None:
        """Run ``telemeter``'s background work (``run()``) in the linker's task group (a
        reload adding a telemeter calls it; at start, :meth:`serve` does)."""
        self.spawn(self._run_telemeter(telemeter))

    async def stop_telemeter(self, telemeter: Telemeter) -> None:
        """End ``telemeter``: its background work first, so that ``close()`` is the last word
        (a ``run()`` still going could reopen the socket or session ``close()`` released)."""
        running = self._telemeter_runs.pop(id(telemeter), None)
        if running is not None:
            scope, done = running
            scope.cancel()
            with anyio.move_on_after(2):
                await done.wait()
        try:
            await telemeter.close()
        except Exception:
            log.exception("closing telemeter %r failed", telemeter)

    async def _run_telemeter(self, telemeter: Telemeter) -> None:
        done = anyio.Event()
        with anyio.CancelScope() as scope:
            self._telemeter_runs[id(telemeter)] = (scope, done)
            try:
                await telemeter.run()
            finally:
                done.set()

    async def _tick(self) -> None:
        """Start a new histogram window every minute (Linkerd's snapshot interval)."""
        while True:
            await asyncio.sleep(WINDOW)
            self.metrics.rotate()


async def _listening(start: Awaitable[None], what: str) -> None:
    """Await a server's start; a socket that cannot be bound (the port taken, an address
    not on this host, a port below 1024 without the right) is a one-line error naming it."""
    try:
        await start
    except OSError as e:
        raise TurnoutError(
            f"{what} cannot listen: {e}; choose another port or ip in the configuration, or "
            "stop what holds it"
        ) from e


async def _logged(coro: Coroutine[Any, Any, Any]) -> None:
    try:
        await coro
    except Exception:
        log.exception("background task failed")


async def _await_all(results: list[Awaitable[None] | None]) -> None:
    for result in results:
        if inspect.isawaitable(result):
            await result
