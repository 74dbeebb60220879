"""``process/...`` gauges: what the dashboard's process panel shows (Linkerd's ``jvm/...``).

- ``process/uptime_ms``, ``process/rss_bytes`` (current resident set), ``process/cpu_ms``
  (user + system), ``process/open_fds`` and ``process/fd_limit`` (the soft
  ``RLIMIT_NOFILE``; Linkerd's ``jvm/fd_count`` and ``jvm/fd_limit``), ``process/threads``;
- ``process/fd_exhausted``: how many times the process found itself out of file descriptors
  (see :class:`FdExhaustion`), with a WARNING at most every 10 s naming the limit;
- ``process/loop_lag_ms``: how late the event loop ran a timer that should have fired at once,
  sampled every 250 ms (the worst of the last second): a busy or blocked loop shows here
  before it shows in latencies;
- ``process/gc/collections`` and ``process/gc/gen2``: garbage collections so far;
- ``process/asyncio_tasks``: asyncio tasks alive on the event loop (a number that keeps
  growing under steady load is a leak; ``bench/soak.py`` watches it).

Reading them costs a few system calls per scrape, nothing on the request path.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import resource
import sys
import threading
import time
from typing import Any

from .metrics import MetricsTree

log = logging.getLogger("turnout.process")

#: errno values meaning "no file descriptor left" (the process's limit, the system's)
FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The current resident set size (Linux ``/proc``; the peak elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        # the peak, not the current size, where /proc is missing; kilobytes except on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def fd_limit() -> int:
    """The soft ``RLIMIT_NOFILE``: how many descriptors the process may have open (-1:
    unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return -1 if soft == resource.RLIM_INFINITY else soft


class FdExhaustion:
    """Notices when the process runs out of file descriptors, counts it and says so.

    Two sources, because the event loops differ:

    - asyncio's selector loop reports a failed ``accept()`` (``EMFILE``/``ENFILE``) to the
      loop's exception handler (``socket.accept() out of system resource``, once per
      pending connection, and stops accepting for a second). :meth:`install` puts in a
      handler that counts those instead of logging each one with a traceback; every other
      exception goes to the handler that was there before.
    - uvloop (libuv) reports nothing: libuv closes a reserved descriptor, accepts the
      pending connections and closes them at once (their clients see the connection
      closed), so no callback or handler ever hears of it. :meth:`probe`, run four times a
      second by :meth:`ProcessStats.run`, opens and closes ``/dev/null``: failing with
      ``EMFILE``/``ENFILE`` means the process is at its limit at that moment.

    Each occurrence increments ``process/fd_exhausted``; a WARNING (with the limit, the open
    count and how many occurrences since the last warning) is logged at most every
    :attr:`WARN_EVERY` seconds.
    """

    #: seconds between two warnings
    WARN_EVERY = 10.0

    def __init__(self, metrics: MetricsTree | None = None) -> None:
        self.count = 0
        self._counter = metrics.counter("process", "fd_exhausted") if metrics else None
        self._warned_at = float("-inf")
        self._unreported = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None

    def note(self, error: OSError, during: str) -> None:
        """Count one failure for want of a descriptor; warn if none was logged recently."""
        self.count += 1
        self._unreported += 1
        if self._counter is not None:
            self._counter.incr()
        now = time.monotonic()
        if now - self._warned_at < self.WARN_EVERY:
            return
        since = "" if self._warned_at == float("-inf") else " since the last warning"
        self._warned_at = now
        count, self._unreported = self._unreported, 0
        limit = fd_limit()
        opened = open_fds()  # -1 when even listing them needs one descriptor too many
        name = errno.errorcode.get(error.errno or 0, str(error.errno))
        log.warning(
            "out of file descriptors: %s failed with %s (%s); %s descriptors open, limit %s "
            "(RLIMIT_NOFILE); %d time(s)%s. New connections are refused or wait until "
            "descriptors are released: raise the limit (ulimit -n, systemd LimitNOFILE=) or "
            "lower the number of connections",
            during,
            name,
            error.strerror or error,
            opened if opened >= 0 else "all",
            limit if limit >= 0 else "unlimited",
            count,
            since,
        )

    def probe(self) -> bool:
        """Open and close a descriptor; False (and counted) when none is left."""
        try:
            fd = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            if e.errno in FD_ERRNOS:
                self.note(e, "a probe (opening /dev/null)")
                return False
            return True
        os.close(fd)
        return True

    # -- the loop's exception handler ------------------------------------------------------
    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle the loop's descriptor-exhaustion reports (see the class docstring)."""
        if self._loop is not None:
            return
        self._loop = loop
        previous = loop.get_exception_handler()
        owner = getattr(previous, "__self__", None)
        if isinstance(owner, FdExhaustion):  # an earlier linker's on this loop: replace it
            previous = owner._previous
        self._previous = previous
        loop.set_exception_handler(self._handle)

    def uninstall(self) -> None:
        """Put back the loop's previous exception handler. (The linker leaves its handler
        in place when it closes: asyncio may still report a late accept retry then.)"""
        loop, self._loop = self._loop, None
        if loop is not None and loop.get_exception_handler() == self._handle:
            loop.set_exception_handler(self._previous)

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in FD_ERRNOS:
            message = str(context.get("message", ""))
            self.note(error, "accept()" if "accept" in message else message or "an operation")
            return
        if _late_accept_retry(context):
            # asyncio retries accepting a second after EMFILE even if the server closed
            # meanwhile (at shutdown): its retry then fails on the closed socket. Noise.
            log.debug("ignored a retry to accept on a closed server socket: %s", error)
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


def _late_accept_retry(context: dict[str, Any]) -> bool:
    """Whether ``context`` reports asyncio's accept retry (``_start_serving``, scheduled
    after EMFILE) failing because the listening socket was closed in the meantime."""
    handle = context.get("handle")
    callback = getattr(handle, "_callback", None)
    if getattr(callback, "__name__", "") != "_start_serving":
        return False
    if not isinstance(context.get("exception"), ValueError | OSError):
        return False
    args: tuple[Any, ...] = getattr(handle, "_args", None) or ()
    sock = args[1] if len(args) > 1 else None
    return sock is not None and getattr(sock, "fileno", lambda: 0)() == -1


class ProcessStats:
    """Publishes the gauges and, while :meth:`run` runs, measures event-loop lag."""

    INTERVAL = 0.25

    def __init__(self, metrics: MetricsTree) -> None:
        self.started = time.monotonic()
        self._lags: list[float] = [0.0] * 4
        self._i = 0
        #: the loop run() runs on (whose tasks process/asyncio_tasks counts)
        self._loop: asyncio.AbstractEventLoop | None = None
        #: descriptor exhaustion: install() its loop handler; run() probes
        self.fds = FdExhaustion(metrics)
        m = metrics
        m.gauge("process", "uptime_ms", fn=lambda: (time.monotonic() - self.started) * 1000)
        m.gauge("process", "rss_bytes", fn=rss_bytes)
        m.gauge("process", "cpu_ms", fn=lambda: time.process_time() * 1000)
        m.gauge("process", "open_fds", fn=open_fds)
        m.gauge("process", "fd_limit", fn=fd_limit)
        m.gauge("process", "threads", fn=threading.active_count)
        m.gauge("process", "loop_lag_ms", fn=lambda: max(self._lags) * 1000)
        m.gauge(
            "process", "gc", "collections", fn=lambda: sum(s["collections"] for s in gc.get_stats())
        )
        m.gauge("process", "gc", "gen2", fn=lambda: gc.get_stats()[2]["collections"])
        m.gauge("process", "asyncio_tasks", fn=self.tasks)

    def tasks(self) -> int:
        """Tasks not yet done on the loop :meth:`run` runs on (0 before it runs)."""
        loop = self._loop
        return len(asyncio.all_tasks(loop)) if loop is not None and not loop.is_closed() else 0

    async def run(self) -> None:
        """Sample the loop lag and probe for descriptor exhaustion forever (run it in the
        linker's task group)."""
        loop = self._loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.INTERVAL)
            lag = max(loop.time() - before - self.INTERVAL, 0.0)
            self._lags[self._i] = lag
            self._i = (self._i + 1) % len(self._lags)
            self.fds.probe()
