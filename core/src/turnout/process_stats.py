"""``process/...`` gauges: what the dashboard's process panel shows (Linkerd's ``jvm/...``).

- ``process/uptime_ms``, ``process/rss_bytes`` (current resident set), ``process/cpu_ms``
  (user + system), ``process/open_fds``, ``process/threads``;
- ``process/loop_lag_ms``: how late the event loop ran a timer that should have fired at once,
  sampled every 250 ms (the worst of the last second): a busy or blocked loop shows here
  before it shows in latencies;
- ``process/gc/collections`` and ``process/gc/gen2``: garbage collections so far.

Reading them costs a few system calls per scrape, nothing on the request path.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import threading
import time

from .metrics import MetricsTree

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


class ProcessStats:
    """Publishes the gauges and, while :meth:`run` runs, measures event-loop lag."""

    INTERVAL = 0.25

    def __init__(self, metrics: MetricsTree) -> None:
        self.started = time.monotonic()
        self._lags: list[float] = [0.0] * 4
        self._i = 0
        m = metrics
        m.gauge("process", "uptime_ms", fn=lambda: (time.monotonic() - self.started) * 1000)
        m.gauge("process", "rss_bytes", fn=rss_bytes)
        m.gauge("process", "cpu_ms", fn=lambda: time.process_time() * 1000)
        m.gauge("process", "open_fds", fn=open_fds)
        m.gauge("process", "threads", fn=threading.active_count)
        m.gauge("process", "loop_lag_ms", fn=lambda: max(self._lags) * 1000)
        m.gauge(
            "process", "gc", "collections", fn=lambda: sum(s["collections"] for s in gc.get_stats())
        )
        m.gauge("process", "gc", "gen2", fn=lambda: gc.get_stats()[2]["collections"])

    async def run(self) -> None:
        """Sample the loop lag forever (run it in the linker's task group)."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.INTERVAL)
            lag = max(loop.time() - before - self.INTERVAL, 0.0)
            self._lags[self._i] = lag
            self._i = (self._i + 1) % len(self._lags)
