"""The supervisor of ``workers: N`` (see :mod:`turnout.workers`).

``turnout run CONFIG`` with ``workers: N`` (or ``--workers N``), N > 1, runs this instead of a
linker: it checks what the workers need, binds the admin port, then starts N times
``python -m turnout run CONFIG --workers 1`` with ``TURNOUT_WORKER=<index>`` and
``TURNOUT_WORKER_ADMIN_PORT=<a free loopback port>`` in the environment. A worker is an
ordinary linker with two changes (made by the CLI): its admin server listens on that loopback
port, and its routers' servers set ``SO_REUSEPORT``, so that the kernel spreads the
connections of each port over the workers.

- A worker that exits while the supervisor is not stopping is started again after a backoff
  (0.5 s, doubling, at most 30 s), counted in ``workers/restarts``; a slot whose worker died
  :data:`MAX_DEATHS` times within :data:`CRASH_WINDOW` seconds is given up (state
  ``failed``, logged, ``workers/failed``), so a configuration that crashes at start cannot
  keep the host busy; when every slot has failed the supervisor exits with status 1.
- SIGTERM or SIGINT (or ``POST /admin/shutdown``): every worker gets SIGTERM and drains as a
  single turnout does (``admin.shutdownGraceMs``); the supervisor waits for them (killing
  what is left 10 s after the grace), then exits 0. A second signal is forwarded too (the
  workers then stop at once).
- SIGHUP (or ``POST /admin/reload`` on the supervisor's admin, or ``--watch-config``): every
  running worker reloads the configuration file (each validates it in full and applies it
  with no failed request, as a single turnout does, :mod:`turnout.reload`); the supervisor
  logs each worker's verdict. A worker started later reads the same file.
- Each worker dies with the supervisor (``PR_SET_PDEATHSIG``: SIGTERM) so that none is left
  behind if the supervisor is killed.

Each worker watches its own discovery (namers, namerd): share-nothing, so N workers make N
times the discovery connections and requests (docs/operations.md says what that costs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any

from ..config.loader import LoadedConfig
from ..errors import TurnoutError
from ..metrics import MetricsTree
from . import WORKER_ADMIN_PORT_ENV, WORKER_ENV

log = logging.getLogger("turnout.workers")

#: a slot whose worker died this many times within CRASH_WINDOW seconds is given up
MAX_DEATHS = 5
CRASH_WINDOW = 60.0
#: the first restart delay (doubled at each death in the window) and the longest
BACKOFF_BASE, BACKOFF_MAX = 0.5, 30.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # (preexec_fn: runs in the child before exec)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass


class Slot:
    """One worker position: the process in it now, and its history."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.admin_port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None
        #: starting, ready, restarting, failed or stopped
        self.state = "starting"
        self.restarts = 0
        self.started_at: float | None = None
        self.last_exit: int | None = None
        self.deaths: collections.deque[float] = collections.deque()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": self.pid if self.running() else None,
            "state": self.state,
            "restarts": self.restarts,
            "started": self.started_at,
            "last_exit": self.last_exit,
            "admin": f"127.0.0.1:{self.admin_port}",
        }


def check_workers(loaded: LoadedConfig, config_path: str, count: int) -> None:
    """Refuse, before anything starts, what N workers cannot do (a start-up error each)."""
    config = loaded.config
    problems = []
    if config_path == "-":
        problems.append("the configuration comes from stdin; workers read it from a file")
    for router in config.routers:
        label = router.effective_label
        if not type(router).reuse_port_capable:
            problems.append(
                f"router '{label}': protocol {router.kind} cannot share its ports between "
                "processes (SO_REUSEPORT)"
            )
        for server in router.servers:
            if router.server_port(server) == 0:
                problems.append(
                    f"router '{label}': a server on port 0 would get a different port in "
                    "each worker; give it a port"
                )
    if problems:
        raise TurnoutError(
            f"workers: {count} cannot run this configuration: " + "; ".join(problems)
        )


class Supervisor:
    """Runs the workers of one configuration (see the module docstring)."""

    def __init__(
        self,
        config_path: str,
        loaded: LoadedConfig,
        count: int,
        *,
        log_level: str = "INFO",
        watch_config: float | None = None,
    ) -> None:
        check_workers(loaded, config_path, count)
        #: ``--watch-config`` (seconds between polls of the file), or None
        self.watch_interval = watch_config
        self.config_path = os.path.abspath(config_path)
        self.config = loaded.config
        self.log_level = log_level
        self.slots = [Slot(i) for i in range(count)]
        self.metrics = MetricsTree()
        self.restarts = self.metrics.counter("workers", "restarts")
        self.metrics.gauge("workers", "configured").set(count)
        self.metrics.gauge("workers", "running", fn=lambda: sum(s.running() for s in self.slots))
        self.metrics.gauge(
            "workers", "failed", fn=lambda: sum(s.state == "failed" for s in self.slots)
        )
        self.stopping = False
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._signals = 0
        self._reloads: set[asyncio.Task[Any]] = set()
        self.admin: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> int:
        from .admin import SupervisorAdmin

        loop = asyncio.get_running_loop()
        self.admin = SupervisorAdmin(self)
        await self.admin.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        keepers = [asyncio.ensure_future(self._keep(slot)) for slot in self.slots]
        watchers = [asyncio.ensure_future(self._watch_ready(slot)) for slot in self.slots]
        if self.watch_interval is not None:
            watchers.append(asyncio.ensure_future(self._watch_config(self.watch_interval)))
        log.info(
            "supervisor (pid %d) started %d workers; admin server on %s://%s:%s/",
            os.getpid(),
            len(self.slots),
            "https" if self.config.admin.tls is not None else "http",
            self.config.admin.ip,
            self.admin.port,
        )
        try:
            await self._stop.wait()
            await self._drain()
        finally:
            for task in (*keepers, *watchers):
                task.cancel()
            await asyncio.gather(*keepers, *watchers, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.admin.close()
        return self.exit_code

    def is_stopping(self) -> bool:
        """Whether the workers are being drained (a method: asked again after each await)."""
        return self.stopping

    def request_stop(self) -> None:
        self._stop.set()

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("shutdown requested: draining %d workers", len(self.slots))
            self.request_stop()
        else:  # a second signal: the workers stop at once, as a single turnout does
            log.warning("second signal: stopping the workers now")
            self._signal_all(signal.SIGTERM)

    def _on_hup(self) -> None:
        log.info("SIGHUP: the workers reload %s", self.config_path)
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> tuple[bool, list[dict[str, Any]]]:
        """Every running worker reloads the configuration file (``POST /admin/reload`` on its
        own admin port, all at once); each worker's status, and whether all applied it."""
        slots = [s for s in self.slots if s.running()]
        results = await asyncio.gather(*(self.admin.reload_worker(s) for s in slots))
        ok = bool(results) and all(r.get("status") == "ok" for r in results)
        for slot, result in zip(slots, results, strict=True):
            if result.get("status") == "ok":
                log.info("worker %d reloaded (generation %s)", slot.index, result.get("generation"))
            else:
                log.error("worker %d did not reload: %s", slot.index, result.get("errors"))
        return ok, results

    async def _watch_config(self, interval: float) -> None:
        """``--watch-config``: poll the file (mtime, then content) and reload on a change."""
        from ..config.loader import read_config_text
        from ..reload import config_hash

        def current() -> str:
            try:
                return config_hash(read_config_text(self.config_path)[0])
            except Exception:  # (unreadable for now: the next poll tries again)
                return ""

        last_hash = current()
        last_mtime: float | None = None
        while True:
            await asyncio.sleep(interval)
            try:
                mtime = os.stat(self.config_path).st_mtime
            except OSError:
                continue
            if mtime == last_mtime:
                continue
            last_mtime = mtime
            now = current()
            if now and now != last_hash:
                last_hash = now
                await self.reload()

    def _signal_all(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.running():
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)

    async def _drain(self) -> None:
        self.stopping = True
        for slot in self.slots:
            if slot.state != "failed":
                slot.state = "stopped"
        self._signal_all(signal.SIGTERM)
        grace = self.config.admin.shutdown_grace_ms / 1000 + 10.0
        running = [s.proc for s in self.slots if s.proc is not None and s.running()]
        if not running:
            return
        _, pending = await asyncio.wait(
            [asyncio.ensure_future(p.wait()) for p in running], timeout=grace
        )
        if pending:
            log.error("%d workers did not stop within %.0fs: killing them", len(pending), grace)
            for proc in running:
                if proc.returncode is None:
                    proc.kill()
            await asyncio.wait(pending, timeout=10)

    # -- one slot --------------------------------------------------------------------------
    async def _spawn(self, slot: Slot) -> None:
        env = dict(os.environ)
        env[WORKER_ENV] = str(slot.index)
        env[WORKER_ADMIN_PORT_ENV] = str(slot.admin_port)
        argv = [sys.executable, "-m", "turnout", "run", self.config_path]
        argv += ["--workers", "1", "--log-level", self.log_level]
        slot.proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        slot.started_at = time.time()
        slot.state = "starting"
        log.info("worker %d started (pid %d)", slot.index, slot.proc.pid)

    async def _keep(self, slot: Slot) -> None:
        """Run a worker in ``slot``; start it again when it dies (see the module docstring)."""
        while not self.is_stopping():
            await self._spawn(slot)
            assert slot.proc is not None
            code = await slot.proc.wait()
            slot.last_exit = code
            if self.is_stopping():
                return
            now = time.monotonic()
            slot.deaths.append(now)
            while slot.deaths and now - slot.deaths[0] > CRASH_WINDOW:
                slot.deaths.popleft()
            log.error("worker %d (pid %d) exited with status %s", slot.index, slot.proc.pid, code)
            if len(slot.deaths) >= MAX_DEATHS:
                slot.state = "failed"
                log.error(
                    "worker %d died %d times within %.0fs: not starting it again (see its "
                    "log lines above for why)",
                    slot.index,
                    len(slot.deaths),
                    CRASH_WINDOW,
                )
                if all(s.state == "failed" for s in self.slots):
                    log.error("every worker failed: the supervisor stops")
                    self.exit_code = 1
                    self.request_stop()
                return
            slot.state = "restarting"
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (len(slot.deaths) - 1))
            log.info("worker %d starts again in %.1fs", slot.index, delay)
            await asyncio.sleep(delay)
            slot.restarts += 1
            self.restarts.incr()

    async def _watch_ready(self, slot: Slot) -> None:
        """Follow the worker's ``/admin/ready`` (its state in ``/admin/workers.json``)."""
        while True:
            await asyncio.sleep(0.25)
            if not slot.running() or slot.state in ("failed", "stopped", "restarting"):
                continue
            ready = await self.admin.worker_ready(slot)
            if slot.running() and slot.state in ("starting", "ready"):
                slot.state = "ready" if ready else "starting"
