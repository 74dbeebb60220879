"""Access log files of the protocol routers (``httpAccessLog``, ``h2AccessLog``): lines
buffered by :class:`LineLog` and written in batches (once a second and at shutdown, by the
router), so logging costs a list append on the request path. Each protocol subclasses
:class:`LineLog` with its ``record`` (the line format).

As in Linkerd, the log's directory is created when it is missing (``logs/access.log`` in
Linkerd's examples). :func:`access_log_problem` tells, without creating anything, why a path
could not be opened (``turnout check`` reports it at the ``httpAccessLog`` key); opening it at
start-up raises :class:`AccessLogError` (a clean error, never a traceback) if it still fails.
A write that fails later (disk full) is logged once a minute at most; the lines are dropped.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import IO

from .errors import TurnoutError

log = logging.getLogger("turnout.accesslog")

#: seconds between two log lines about failing writes
WRITE_ERROR_LOG_INTERVAL = 60.0


class AccessLogError(TurnoutError):
    """The access log could not be created or opened."""


def access_log_problem(path: str) -> str | None:
    """Why ``path`` could not be opened for writing as the access log, or None if it can.

    Creates nothing: a missing directory is fine when its nearest existing ancestor is a
    directory this process may write to (the directory is created at start-up).
    """
    full = os.path.abspath(path)
    if os.path.isdir(full):
        return f"cannot open the access log '{path}': it is a directory"
    if os.path.exists(full):
        if not os.access(full, os.W_OK):
            return f"cannot open the access log '{path}': {os.strerror(errno.EACCES)}"
        return None
    directory = os.path.dirname(full)
    ancestor = directory
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    what = (
        f"the access log '{path}'"
        if ancestor == directory
        else f"the directory of the access log '{path}'"
    )
    if not os.path.isdir(ancestor):
        return f"cannot create {what}: '{ancestor}' is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {what}: no permission to write to '{ancestor}'"
    return None


def open_access_log(path: str, append: bool = True) -> IO[str]:
    """Open (create) ``path`` for the access log, creating its directory if missing."""
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return open(path, "a" if append else "w", encoding="utf-8")
    except OSError as e:
        reason = e.strerror or str(e)
        where = f" ({e.filename})" if e.filename and e.filename != path else ""
        raise AccessLogError(f"cannot open the access log '{path}': {reason}{where}") from None


class LineLog:
    """An access log file: :meth:`write` buffers a line, :meth:`flush` writes them (a failed
    write is logged once a minute at most, its lines counted in ``dropped``)."""

    def __init__(self, path: str, append: bool = True) -> None:
        self.path = path
        self.file: IO[str] = open_access_log(path, append)
        self.lines: list[str] = []
        #: lines lost because writing failed (logged, at most once a minute)
        self.dropped = 0
        self._last_error_log = float("-inf")
        self._stamp_second = -1
        self._stamp = ""

    def write(self, line: str) -> None:
        self.lines.append(line)

    def now(self) -> str:
        """The current time as access logs write it (``05/Dec/2026:12:00:00 +0000``)."""
        second = int(time.time())
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._stamp

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            try:
                self.file.write("\n".join(lines) + "\n")
                self.file.flush()
            except OSError as e:
                self.dropped += len(lines)
                now = time.monotonic()
                if now - self._last_error_log >= WRITE_ERROR_LOG_INTERVAL:
                    self._last_error_log = now
                    log.warning(
                        "cannot write the access log '%s': %s (%d line(s) lost so far)",
                        self.path,
                        e.strerror or e,
                        self.dropped,
                    )

    def close(self) -> None:
        self.flush()
        try:
            self.file.close()
        except OSError as e:  # the buffer's last write failed
            log.warning("cannot write the access log '%s': %s", self.path, e.strerror or e)


__all__ = ["AccessLogError", "LineLog", "access_log_problem", "open_access_log"]
