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
import re
import time
from dataclasses import dataclass
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


_UNITS = {
    "byte": 1,
    "kilobyte": 1 << 10,
    "megabyte": 1 << 20,
    "gigabyte": 1 << 30,
    "terabyte": 1 << 40,
}
_SIZE = re.compile(r"^(\d+)\.(byte|kilobyte|megabyte|gigabyte|terabyte)s?$")
_WEEKLY = re.compile(r"^weekly\(([1-7])\)$")


@dataclass(frozen=True)
class RollPolicy:
    """When an access log is rolled (Linkerd's ``*AccessLogRollPolicy``, Twitter util-logging's
    ``Policy.parse`` syntax): ``never``, ``hourly``, ``daily``, ``weekly(N)`` (N = 1 for
    Sunday ... 7 for Saturday, at midnight) or a size such as ``100.megabytes``."""

    kind: str
    weekday: int = 0
    size: int = 0

    @classmethod
    def parse(cls, text: str) -> RollPolicy:
        t = text.strip().lower()
        if t in ("never", "hourly", "daily"):
            return cls(t)
        m = _WEEKLY.match(t)
        if m:
            return cls("weekly", weekday=int(m.group(1)))
        m = _SIZE.match(t)
        if m and int(m.group(1)) > 0:
            return cls("size", size=int(m.group(1)) * _UNITS[m.group(2)])
        raise ValueError(
            f"invalid roll policy {text!r}: never, hourly, daily, weekly(1..7) (1 = Sunday) or "
            "a size such as 100.megabytes"
        )

    def next_roll(self, now: float) -> float:
        """The time of the next time-based roll after ``now`` (inf: none)."""
        if self.kind in ("never", "size"):
            return float("inf")
        t = time.localtime(now)
        if self.kind == "hourly":
            return time.mktime((*t[:4], 0, 0, 0, 0, -1)) + 3600
        days = 1
        if self.kind == "weekly":  # (tm_wday: Monday = 0; the policy's 1 = Sunday)
            today = (t.tm_wday + 1) % 7 + 1
            days = (self.weekday - today) % 7 or 7
        # (mktime normalises the day overflow and finds the DST offset of that day)
        return time.mktime((t[0], t[1], t[2] + days, 0, 0, 0, 0, 0, -1))


class LineLog:
    """An access log file: :meth:`write` buffers a line, :meth:`flush` writes them (a failed
    write is logged once a minute at most, its lines counted in ``dropped``).

    With a :class:`RollPolicy` the file is rolled when the policy says (at the first flush
    after the hour, day or week starts, or before a write that would pass the size): renamed
    to ``<path>.<YYYYmmdd-HHMMSS>`` and a new one opened; ``rotate_count`` rolled files are
    kept (the oldest beyond are removed; -1 keeps every one)."""

    def __init__(
        self,
        path: str,
        append: bool = True,
        roll: RollPolicy | None = None,
        rotate_count: int = -1,
    ) -> None:
        self.path = path
        self.file: IO[str] = open_access_log(path, append)
        self.roll = roll if roll is not None and roll.kind != "never" else None
        self.rotate_count = rotate_count
        self._next_roll = self.roll.next_roll(time.time()) if self.roll is not None else 0.0
        self._size = self.file.tell() if self.roll is not None else 0
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
            text = "\n".join(lines) + "\n"
            try:
                if self.roll is not None:
                    self._maybe_roll(len(text))
                self.file.write(text)
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

    def _maybe_roll(self, adding: int) -> None:
        roll = self.roll
        assert roll is not None
        now = time.time()
        if roll.kind == "size":
            due = self._size > 0 and self._size + adding > roll.size
        else:
            due = now >= self._next_roll
        if due:
            self.file.close()
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
            target = f"{self.path}.{stamp}"
            n = 1
            while os.path.exists(target):
                target = f"{self.path}.{stamp}-{n}"
                n += 1
            os.rename(self.path, target)
            self.file = open_access_log(self.path, append=False)
            self._size = 0
            self._next_roll = roll.next_roll(now)
            self._prune()
        self._size += adding

    def rolled(self) -> list[str]:
        """The rolled files of this log, oldest first."""
        directory = os.path.dirname(os.path.abspath(self.path))
        base = os.path.basename(self.path) + "."
        pattern = re.compile(re.escape(base) + r"\d{8}-\d{6}(-\d+)?$")
        names = [n for n in os.listdir(directory) if pattern.match(n)]

        def order(name: str) -> tuple[str, int]:
            suffix = name[len(base) :]  # YYYYmmdd-HHMMSS[-n]
            return suffix[:15], int(suffix[16:] or 0)

        return [os.path.join(directory, n) for n in sorted(names, key=order)]

    def _prune(self) -> None:
        if self.rotate_count < 0:
            return
        old = self.rolled()
        for path in old[: max(len(old) - self.rotate_count, 0)]:
            try:
                os.remove(path)
            except OSError as e:
                log.warning("cannot remove the rolled access log '%s': %s", path, e.strerror or e)

    def close(self) -> None:
        self.flush()
        try:
            self.file.close()
        except OSError as e:  # the buffer's last write failed
            log.warning("cannot write the access log '%s': %s", self.path, e.strerror or e)


__all__ = ["AccessLogError", "LineLog", "RollPolicy", "access_log_problem", "open_access_log"]
