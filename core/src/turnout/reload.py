"""Reloading the configuration of a running linker without a restart.

A reload (``SIGHUP``, ``POST /admin/reload``, or :func:`watch_config` for ``--watch-config``)
reads the file again and validates it in full, exactly as ``turnout run`` does. A file with any
problem changes nothing: the running configuration keeps serving and the problems (each with
``file:line:col``) are logged, shown at ``GET /admin/config/status`` and counted in
``reload/failures``.

A valid file is applied to the one running :class:`~turnout.linker.Linker`:

- namers whose configuration is equal are kept (the same objects); changed or added ones are
  built; removed ones are closed after the swap;
- a router whose configuration is equal, and whose namers are all kept, is left alone;
- a changed router gets a new runtime that takes over the old one (``start_from``): listening
  sockets and connections of unchanged addresses move to it (the next request on a kept-alive
  connection is routed by the new configuration; a request in flight finishes on what it
  started with), clients whose policy did not change keep their balancer state and pooled
  connections, servers whose address is gone stop accepting and drain;
- added routers start; removed routers stop accepting, drain and close.

- telemeters whose configuration is equal are kept; changed and added ones are built and
  started, removed ones stopped; new tracers trace new requests (when tracing starts or stops
  altogether, every router is taken over by a new runtime, since routers read it when built);
  a telemeter's admin endpoints (prometheus's ``/admin/metrics/prometheus``, recentRequests'
  ``/requests``) come and go with it: a changed one's new handler answers from the swap on.

Refused (reported as an error, nothing changed): a change of ``admin``; a changed router
whose protocol cannot take over a running router, and a changed router with announcers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .config.loader import LoadedConfig, load_text, read_config_text
from .context import BuildContext, RouterRuntime
from .errors import ConfigError, TurnoutError
from .naming import NameInterpreter, Namer, Path
from .naming.transformer import TransformingInterpreter, TransformingNamer
from .telemetry import Telemeter
from .tracing import Tracing
from .workers import as_worker_config, worker_admin_port

if TYPE_CHECKING:
    from .config.model import LinkerConfig, RouterConfig
    from .linker import Linker

log = logging.getLogger("turnout.reload")


def config_hash(text: str) -> str:
    """The sha256 of a configuration text (what ``/admin/config/status`` shows)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class ReloadStatus:
    """What ``GET /admin/config/status`` answers."""

    path: str
    hash: str
    generation: int = 0
    #: when the last attempt ended (applied or refused)
    last_attempt: float | None = None
    last_success: float | None = None
    ok: bool | None = None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "hash": self.hash,
            "generation": self.generation,
            "lastAttempt": self.last_attempt,
            "lastSuccess": self.last_success,
            "status": "none" if self.ok is None else "ok" if self.ok else "failed",
            "errors": list(self.errors),
        }


class ReloadRefused(TurnoutError):
    """A valid configuration that cannot be applied to the running process."""


@dataclass
class Plan:
    """What a reload changes, decided before anything is touched (see :func:`plan`)."""

    config: LinkerConfig
    #: the new namers, in order: (prefix, namer, reused)
    namers: list[tuple[Path, Namer, bool]]
    #: router labels: kept as they are / replaced (taken over) / added / removed
    kept: list[str]
    changed: list[str]
    added: list[str]
    removed: list[str]
    #: changed routers whose interpreter (config, and namers) did not change: it is reused
    same_interpreter: list[str] = field(default_factory=list)
    #: the new telemeters, in order: the index of the running one kept for it, or None (new)
    telemetry: list[int | None] = field(default_factory=list)
    #: the indexes of the running telemeters that go
    telemetry_removed: list[int] = field(default_factory=list)


def plan(old: LinkerConfig, new: LinkerConfig, old_namers: list[Namer]) -> Plan:
    """Decide what to reuse. ``old_namers`` are the running namers in ``old.namers`` order.

    Raises :class:`ReloadRefused` for changes a running process cannot take (see the module
    docstring). Namers are matched by equal configuration (config classes are ``eq``
    dataclasses), each old namer used at most once.
    """
    if new.admin != old.admin:
        raise ReloadRefused("'admin' changed: the admin server cannot change without a restart")
    free = list(zip(old.namers, old_namers, strict=True))
    namers: list[tuple[Path, Namer, bool]] = []
    for namer_config in new.namers:
        match = next((i for i, (c, _) in enumerate(free) if c == namer_config), None)
        if match is not None:
            _, namer = free.pop(match)
            namers.append((namer_config.effective_prefix, namer, True))
        else:
            namers.append((namer_config.effective_prefix, None, False))  # type: ignore[arg-type]
    namers_same = not free and all(reused for _, _, reused in namers)
    old_routers = {r.effective_label: r for r in old.routers}
    new_routers = {r.effective_label: r for r in new.routers}
    kept, changed, added = [], [], []
    for label, router in new_routers.items():
        before = old_routers.get(label)
        if before is None:
            added.append(label)
        elif before == router and namers_same:
            kept.append(label)
        else:
            if type(before) is not type(router):
                raise ReloadRefused(
                    f"router '{label}' changed its protocol; give it a new label to replace it"
                )
            if before.announcers or router.announcers:
                raise ReloadRefused(
                    f"router '{label}' has announcers: reloading it is not supported yet"
                )
            changed.append(label)
    removed = [label for label in old_routers if label not in new_routers]
    same_interpreter = [
        label
        for label in changed
        if namers_same and old_routers[label].interpreter == new_routers[label].interpreter
    ]
    unmatched = list(range(len(old.telemetry)))
    telemetry: list[int | None] = []
    for telemeter_config in new.telemetry:
        match = next((i for i in unmatched if old.telemetry[i] == telemeter_config), None)
        if match is not None:
            unmatched.remove(match)
        telemetry.append(match)
    return Plan(new, namers, kept, changed, added, removed, same_interpreter, telemetry, unmatched)


class Reloader:
    """The reload state of one linker (``linker.reloader``)."""

    def __init__(self, linker: Linker) -> None:
        self.linker = linker
        source = linker.loaded.source
        self.path = source.name
        try:
            text, _ = read_config_text(self.path) if self.path not in ("-", "<stdin>") else ("", "")
        except ConfigError:
            text = ""
        self.status = ReloadStatus(self.path, config_hash(text))
        metrics = linker.metrics
        self.successes = metrics.counter("reload", "successes")
        self.failures = metrics.counter("reload", "failures")
        metrics.gauge("reload", "generation", fn=lambda: self.status.generation)
        self.lock = asyncio.Lock()
        #: background retirements of replaced runtimes (drain, then close)
        self._retiring: set[asyncio.Task[Any]] = set()
        #: replaced runtimes not closed yet
        self._unclosed: list[RouterRuntime] = []

    def reloadable(self) -> bool:
        return self.path not in ("-", "<stdin>", "<config>")

    def trigger(self) -> None:
        """Reload in a background task (a signal handler's way: no task to run it in)."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def reload(self) -> ReloadStatus:
        """Read, validate and apply the config file; the status says how it went."""
        async with self.lock:
            try:
                if not self.reloadable():
                    raise ReloadRefused(
                        f"the configuration was read from {self.path}: there is no file to reload"
                    )
                text, name = read_config_text(self.path)
                loaded = load_text(text, name, registry=self.linker.plugins.registry)
                self.linker.plugins.hook.turnout_configure(config=loaded.config)
                admin_port = worker_admin_port()
                if admin_port is not None:  # (as the worker's start made it: see cli._as_worker)
                    as_worker_config(loaded.config, admin_port)
                await self._apply(loaded)
            except ConfigError as e:
                self._failed([str(p) for p in e.problems])
            except (ReloadRefused, TurnoutError) as e:
                self._failed([f"{self.path}: {e}"])
            except Exception as e:  # a factory failing while building: nothing was swapped
                log.exception("reload failed")
                self._failed([f"{self.path}: {type(e).__name__}: {e}"])
            else:
                self.status.hash = config_hash(text)
                self.status.generation += 1
                self.status.ok = True
                self.status.errors = []
                self.status.last_success = time.time()
                self.successes.incr()
                log.info(
                    "configuration reloaded from %s (generation %d)",
                    self.path,
                    self.status.generation,
                )
            # (set when the attempt is over: a watcher that sees lastAttempt change reads the
            # outcome of that attempt, never a status still being worked out)
            self.status.last_attempt = time.time()
            return self.status

    def _failed(self, errors: list[str]) -> None:
        self.status.ok = False
        self.status.errors = errors
        self.failures.incr()
        for error in errors:
            log.error("reload refused, the running configuration is kept: %s", error)

    # -- applying --------------------------------------------------------------------------
    async def _apply(self, loaded: LoadedConfig) -> None:
        linker = self.linker
        old_config = linker.config
        p = plan(old_config, loaded.config, [n for _, n in linker.namers])
        new_config = loaded.config
        by_label = {r.label: r for r in linker.routers}
        for label in p.changed:
            if not hasattr(by_label[label], "start_from"):
                raise ReloadRefused(
                    f"router '{label}' changed, but its protocol "
                    f"({old_config_router(old_config, label).kind}) cannot take over a "
                    "running router; restart to apply it"
                )
        # 1. build everything new (nothing running is touched; a failure here changes nothing)
        namers: list[tuple[Path, Namer]] = []
        built: list[Namer] = []

        def ctx(router: RouterConfig | None = None) -> BuildContext:
            return BuildContext(
                new_config,
                linker.plugins,
                linker.metrics,
                linker.global_namer,
                namers,
                router=router,
                linker=linker,
            )

        new_interpreters: dict[str, NameInterpreter] = {}
        new_runtimes: dict[str, RouterRuntime] = {}
        # telemeters: built first, since routers built below read the tracing they make
        telemeters, added_telemeters = await self._build_telemeters(p, new_config, ctx)
        old_tracing = linker.tracing
        tracers = [t for t in (tm.tracer() for tm in telemeters) if t is not None]
        if (old_tracing is None) != (not tracers):
            # tracing starts or stops altogether: routers read linker.tracing when built, so
            # every router is taken over by a new runtime (kept ones included)
            for label in list(p.kept):
                if not hasattr(by_label[label], "start_from"):
                    for tm in added_telemeters:
                        await _quietly(tm.close())
                    raise ReloadRefused(
                        f"tracing starts or stops, and router '{label}' "
                        f"({old_config_router(old_config, label).kind}) cannot be taken over "
                        "by a new runtime; restart to apply it"
                    )
                p.kept.remove(label)
                p.changed.append(label)
                if old_config_router(old_config, label).interpreter == next(
                    r.interpreter for r in new_config.routers if r.effective_label == label
                ):
                    p.same_interpreter.append(label)
            linker.tracing = Tracing(tracers) if tracers else None
        try:
            for namer_config, (prefix, namer, is_reused) in zip(
                new_config.namers, p.namers, strict=True
            ):
                if not is_reused:
                    namer = namer_config.new_namer(ctx())
                    if namer_config.transformers:
                        namer = TransformingNamer(
                            namer, [t.new_transformer(ctx()) for t in namer_config.transformers]
                        )
                    built.append(namer)
                namers.append((prefix, namer))
            for router_config in new_config.routers:
                label = router_config.effective_label
                if label in p.kept:
                    continue
                rctx = ctx(router_config)
                if label in p.same_interpreter:  # (its bindings, caches, watches are kept)
                    interpreter = linker.interpreters[label]
                else:
                    interpreter = router_config.interpreter.new_interpreter(rctx)
                    if router_config.interpreter.transformers:
                        interpreter = TransformingInterpreter(
                            interpreter,
                            [
                                t.new_transformer(rctx)
                                for t in router_config.interpreter.transformers
                            ],
                        )
                    new_interpreters[label] = interpreter
                rctx.interpreter = interpreter
                new_runtimes[label] = router_config.new_router(rctx)
            for label in p.changed:
                check = getattr(new_runtimes[label], "take_over_problem", None)
                problem = check(by_label[label]) if check is not None else None
                if problem is not None:
                    raise ReloadRefused(problem)
        except BaseException:
            linker.tracing = old_tracing
            for tm in added_telemeters:
                await _quietly(tm.close())
            for runtime in new_runtimes.values():
                await _quietly(runtime.close())
            for interpreter in new_interpreters.values():
                await _quietly(interpreter.close())
            for namer in built:
                await _quietly(namer.close())
            raise
        # 2. swap: removed routers stop accepting first (their ports may be reused), then
        # changed routers take over, added ones start
        old_namers = [n for _, n in linker.namers]
        reused = {id(n) for _, n, r in p.namers if r}
        retire: list[tuple[RouterRuntime, NameInterpreter | None, bool]] = []
        for label in p.removed:
            runtime = by_label[label]
            runtime.stop_accepting()
            retire.append((runtime, linker.interpreters.get(label), True))

        def keep_client(client_id: Path) -> bool:
            # a client observes addresses from the namer that bound it: kept only when that
            # namer is kept (or it is a /$ name)
            first = client_id.elems[:1]
            if first == (b"$",):
                return True
            if first == (b"#",):
                rest = client_id.drop(1)
                for prefix, namer in namers:
                    if rest.starts_with(prefix):
                        return id(namer) in reused
            return False

        routers: list[RouterRuntime] = []
        for router_config in new_config.routers:
            label = router_config.effective_label
            if label in p.kept:
                routers.append(by_label[label])
                continue
            runtime = new_runtimes[label]
            old = by_label.get(label)
            if old is not None:
                start_from: Callable[..., Awaitable[None]] = getattr(runtime, "start_from")  # noqa: B009
                await start_from(old, keep_client=keep_client)
                kept_interpreter = label in p.same_interpreter
                retire.append(
                    (old, None if kept_interpreter else linker.interpreters.get(label), False)
                )
            else:
                await runtime.start()
            routers.append(runtime)
        linker.routers[:] = routers
        linker.namers[:] = namers
        if old_tracing is not None and linker.tracing is old_tracing:  # (some → some)
            old_tracing.tracers = tracers
            old_tracing.exporting = any(t.exports for t in tracers)
        removed_telemeters = [linker.telemeters[i] for i in p.telemetry_removed]
        linker.telemeters[:] = telemeters
        admin = linker.admin
        for tm in added_telemeters:  # (a changed telemeter's new routes come first)
            linker.start_telemeter(tm)
            if admin is not None:
                admin.add_telemeter(tm)
        for tm in removed_telemeters:
            if admin is not None:
                admin.remove_telemeter(tm)
            await linker.stop_telemeter(tm)
        for label in p.removed:
            linker.interpreters.pop(label, None)
            linker.announcers.pop(label, None)
        linker.interpreters.update(new_interpreters)
        linker.loaded = loaded
        linker.config = new_config
        # 3. after the swap: drain and close what was replaced, in the background
        grace = new_config.admin.shutdown_grace_ms / 1000
        closing_namers = [n for n in old_namers if id(n) not in reused]
        self._unclosed.extend(r for r, _, _ in retire)
        task = asyncio.get_running_loop().create_task(self._retire(retire, closing_namers, grace))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _build_telemeters(
        self, p: Plan, config: LinkerConfig, ctx: Callable[[], BuildContext]
    ) -> tuple[list[Telemeter], list[Telemeter]]:
        """The telemeters of the new config (running ones kept where their config is equal)
        and the ones built for it (their admin routes join the admin server at the swap)."""
        running = self.linker.telemeters
        telemeters: list[Telemeter] = []
        added: list[Telemeter] = []
        try:
            for telemeter_config, kept in zip(config.telemetry, p.telemetry, strict=True):
                if kept is not None:
                    telemeters.append(running[kept])
                    continue
                telemeter = telemeter_config.new_telemeter(ctx())
                added.append(telemeter)
                telemeters.append(telemeter)
        except BaseException:
            for telemeter in added:
                await _quietly(telemeter.close())
            raise
        return telemeters, added

    async def _retire(
        self,
        retire: list[tuple[RouterRuntime, NameInterpreter | None, bool]],
        namers: list[Namer],
        grace: float,
    ) -> None:
        metrics = self.linker.metrics
        for runtime, interpreter, removed in retire:
            try:
                with anyio.move_on_after(max(grace, 0.001)):
                    if removed:
                        await runtime.drain()
                    else:
                        await getattr(runtime, "retire_drain")()  # noqa: B009
                if runtime in self._unclosed:
                    self._unclosed.remove(runtime)
                    await runtime.close()
            except Exception:
                log.exception("closing the replaced router '%s' failed", runtime.label)
            if interpreter is not None:
                await _quietly(interpreter.close())
            if removed:
                metrics.prune("rt", runtime.label)
        for namer in namers:
            await _quietly(namer.close())

    async def close(self) -> None:
        """The linker stops: replaced runtimes still draining are closed now."""
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        while self._unclosed:
            await _quietly(self._unclosed.pop().close())

    async def wait_retired(self) -> None:
        """Wait for the background retirements (tests, shutdown)."""
        while self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


def old_config_router(config: LinkerConfig, label: str) -> RouterConfig:
    return next(r for r in config.routers if r.effective_label == label)


async def _quietly(result: Awaitable[None] | None) -> None:
    try:
        if result is not None:
            await result
    except Exception:
        log.exception("closing a replaced object failed")


async def watch_config(linker: Linker, interval: float = 2.0) -> None:
    """``--watch-config``: poll the config file (mtime, then content hash) every ``interval``
    seconds and reload when its content changed. Runs until cancelled; start it with
    ``linker.spawn(watch_config(linker, interval))`` once the linker serves."""
    reloader = linker.reloader
    path = reloader.path
    last_mtime: float | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        if mtime == last_mtime:
            continue
        last_mtime = mtime
        try:
            text, _ = read_config_text(path)
        except ConfigError:
            continue
        if config_hash(text) != reloader.status.hash:
            await reloader.reload()
