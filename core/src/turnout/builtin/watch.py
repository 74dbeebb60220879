"""Polling file and directory watches, active only while observed.

Used by the ``io.l5d.fs`` namer and interpreter. Polling (a ``stat`` per watched file every
``interval``) is portable, needs no extra dependency, and is cheap at the scale these
file-based plugins are meant for; changes show up within one interval (250 ms by default).
The first read happens synchronously when a watch starts, so a binding sees the file's
content at once instead of a pending state.

Only ``ENOENT`` and ``ENOTDIR`` mean that a path is gone. Any other error reading it
(``EMFILE``/``ENFILE`` when the process or the system is out of file descriptors, ``EACCES``,
``EIO``...) is transient, the rule every discovery namer follows for outages: the watch keeps
its last good value, retries at every poll (whether or not the path's timestamps changed),
counts the error, marks the value stale (:meth:`PollingWatcher.freshness`) and logs a warning
at most every :data:`WARN_EVERY` seconds. Before any good read, the error itself is the value
(an :class:`OSError`), so that routes fail fast with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

from ..discovery import Freshness
from ..naming.var import Stop, Var

log = logging.getLogger("turnout.watch")


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


#: the value of a watch before its first read (a lazy Var's placeholder)
NOT_READ: Any = _NotRead()

#: A file's content, ``None`` when it does not exist, or the error reading it (only while no
#: read ever succeeded: afterwards an error keeps the last good content).
FileContent = bytes | None | OSError
#: A directory's entries as ``(name, is_dir)``, ``None`` when it does not exist, or the error
#: listing it (as for :data:`FileContent`).
DirContent = frozenset[tuple[str, bool]] | None | OSError

#: errno values meaning that the path is not there; any other error is transient
GONE = frozenset({errno.ENOENT, errno.ENOTDIR})
#: at most one WARNING per watcher in this many seconds about failing reads (others: DEBUG)
WARN_EVERY = 30.0


class _Retry:
    def __repr__(self) -> str:
        return "RETRY"


#: the stamp recorded after a failed read: never equal to a real one, so the next poll retries
_RETRY: Any = _Retry()


class PollingWatcher:
    """Hands out lazily watched Vars of file contents and directory listings.

    :param name: how the watcher's owner appears in logs (``io.l5d.fs namer /srv/disco``).
    """

    def __init__(self, interval: float = 0.25, name: str = "io.l5d.fs") -> None:
        self.interval = interval
        self.name = name
        self._active: dict[tuple[str, FsPath], tuple[Var[Any], Callable[[], Any], list[Any]]] = {}
        self._vars: dict[tuple[str, FsPath], Var[Any]] = {}
        self._task: asyncio.Task[None] | None = None
        #: reads that failed with a transient error, over the watcher's life
        self.errors = 0
        #: freshness of every path read, by path
        self._fresh: dict[FsPath, Freshness] = {}
        self._warned_at = float("-inf")
        #: failed reads not mentioned in a WARNING yet
        self._unreported = 0

    def file(self, path: FsPath) -> Var[FileContent]:
        return self._var("file", path, lambda: _read_file(path))

    def dir(self, path: FsPath) -> Var[DirContent]:
        return self._var("dir", path, lambda: _list_dir(path))

    def freshness(self, path: FsPath) -> Freshness | None:
        """How current the watched value of ``path`` is (None before its first read)."""
        return self._fresh.get(path)

    def failing(self) -> dict[FsPath, Freshness]:
        """The paths whose last read failed with a transient error."""
        return {p: f for p, f in self._fresh.items() if f.error_since is not None}

    def stalest(self) -> float:
        """Seconds since the stalest failing path was last read successfully (0: none)."""
        now = time.time()
        return max((f.stale_seconds(now) for f in self._fresh.values()), default=0.0)

    def _var(self, kind: str, path: FsPath, read: Callable[[], Any]) -> Var[Any]:
        key = (kind, path)
        var = self._vars.get(key)
        if var is None:
            var = Var(NOT_READ, start=lambda v: self._start(key, v, read))
            self._vars[key] = var
        return var

    def _start(self, key: tuple[str, FsPath], var: Var[Any], read: Callable[[], Any]) -> Stop:
        stamp = _stamp(key[1])
        last = [stamp]
        self._read(key[1], var, read, last)
        self._active[key] = (var, read, last)
        if self._task is None:
            # without an event loop (synchronous callers) the watch is a one-shot read
            with contextlib.suppress(RuntimeError):
                self._task = asyncio.get_running_loop().create_task(self._poll())

        def stop() -> None:
            self._active.pop(key, None)
            if not self._active and self._task is not None:
                self._task.cancel()
                self._task = None

        return stop

    def _read(self, path: FsPath, var: Var[Any], read: Callable[[], Any], last: list[Any]) -> None:
        """Read ``path`` into ``var``; on a transient error keep the last good value, make
        the next poll read again, count and (rate-limited) log the error."""
        fresh = self._fresh.get(path)
        if fresh is None:
            fresh = self._fresh[path] = Freshness()
        now = time.time()
        try:
            value = read()
        except OSError as e:
            last[0] = _RETRY
            self._failed(path, fresh, var, e, now)
            return
        if fresh.answered(now):
            log.info("%s: %s can be read again", self.name, path)
        if var.value is NOT_READ or value != var.value or type(value) is not type(var.value):
            fresh.changed(now)
        var.update(value)

    def _failed(
        self, path: FsPath, fresh: Freshness, var: Var[Any], error: OSError, now: float
    ) -> None:
        self.errors += 1
        self._unreported += 1
        current = var.value
        good = current is not NOT_READ and not isinstance(current, OSError)
        fresh.failed(now, _describe(error))
        clock = time.monotonic()
        if clock - self._warned_at >= WARN_EVERY:
            self._warned_at = clock
            count, self._unreported = self._unreported, 0
            log.warning(
                "%s: cannot read %s: %s (%s; retrying every %gs; %d failed read(s) since the "
                "last warning)",
                self.name,
                path,
                _describe(error),
                "keeping its last good content" if good else "no good read yet",
                self.interval,
                count,
            )
        else:
            log.debug("%s: cannot read %s: %s", self.name, path, _describe(error))
        if not good and (not isinstance(current, OSError) or str(current) != str(error)):
            var.update(error)  # no good value to keep: routes fail fast with the error

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for (_, path), (var, read, last) in list(self._active.items()):
                stamp = _stamp(path)
                # a change within the timestamp granularity would keep the same stamp, so
                # recently modified paths are re-read until they are a second old ("racy git")
                recent = stamp is not None and time.time_ns() - stamp[0] < 1_000_000_000
                if stamp != last[0] or recent:
                    last[0] = stamp
                    try:
                        self._read(path, var, read, last)
                    except Exception:  # a bad observer must not stop the watch
                        log.exception("updating %s failed", path)


def _describe(error: OSError) -> str:
    name = errno.errorcode.get(error.errno or 0)
    reason = error.strerror or str(error)
    return f"{reason} ({name})" if name else reason


def _stamp(path: FsPath) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _read_file(path: FsPath) -> bytes | None:
    """The file's content, None when it is not there (or is a directory); raises OSError
    on any other error."""
    try:
        return path.read_bytes()
    except IsADirectoryError:
        return None
    except OSError as e:
        if e.errno in GONE:
            return None
        raise


def _list_dir(path: FsPath) -> frozenset[tuple[str, bool]] | None:
    """The directory's visible entries, None when it is not there; raises OSError on any
    other error."""
    try:
        with os.scandir(path) as it:
            return frozenset((e.name, e.is_dir()) for e in it if not e.name.startswith("."))
    except OSError as e:
        if e.errno in GONE:
            return None
        raise


def list_dir(path: FsPath) -> DirContent:
    """One listing of ``path`` (unwatched): its entries, None when it is not there, or the
    error listing it."""
    try:
        return _list_dir(path)
    except OSError as e:
        return e
