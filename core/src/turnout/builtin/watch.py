"""Polling file and directory watches, active only while observed.

Used by the ``io.l5d.fs`` namer and interpreter. Polling (a ``stat`` per watched file every
``interval``) is portable, needs no extra dependency, and is cheap at the scale these
file-based plugins are meant for; changes show up within one interval (250 ms by default).
The first read happens synchronously when a watch starts, so a binding sees the file's
content at once instead of a pending state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

from ..naming.var import Stop, Var

log = logging.getLogger("turnout.watch")


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


#: the value of a watch before its first read (a lazy Var's placeholder)
NOT_READ: Any = _NotRead()

#: A file's content, ``None`` when it does not exist, or the error reading it.
FileContent = bytes | None | OSError
#: A directory's entries as ``(name, is_dir)``, or ``None`` when it does not exist.
DirContent = frozenset[tuple[str, bool]] | None


class PollingWatcher:
    """Hands out lazily watched Vars of file contents and directory listings."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._active: dict[tuple[str, FsPath], tuple[Var[Any], Callable[[], Any], list[Any]]] = {}
        self._vars: dict[tuple[str, FsPath], Var[Any]] = {}
        self._task: asyncio.Task[None] | None = None

    def file(self, path: FsPath) -> Var[FileContent]:
        return self._var("file", path, lambda: _read_file(path))

    def dir(self, path: FsPath) -> Var[DirContent]:
        return self._var("dir", path, lambda: list_dir(path))

    def _var(self, kind: str, path: FsPath, read: Callable[[], Any]) -> Var[Any]:
        key = (kind, path)
        var = self._vars.get(key)
        if var is None:
            var = Var(NOT_READ, start=lambda v: self._start(key, v, read))
            self._vars[key] = var
        return var

    def _start(self, key: tuple[str, FsPath], var: Var[Any], read: Callable[[], Any]) -> Stop:
        stamp = _stamp(key[1])
        var.update(read())
        self._active[key] = (var, read, [stamp])
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
                        var.update(read())
                    except Exception:  # a bad observer must not stop the watch
                        log.exception("updating %s failed", path)


def _stamp(path: FsPath) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _read_file(path: FsPath) -> FileContent:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as e:
        return e


def list_dir(path: FsPath) -> DirContent:
    try:
        with os.scandir(path) as it:
            return frozenset((e.name, e.is_dir()) for e in it if not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
