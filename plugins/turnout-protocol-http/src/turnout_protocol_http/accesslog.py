"""The optional access log (``httpAccessLog``): one line per request, written in batches.

``combined`` is Apache's combined format prefixed by the Host header (as Linkerd writes it);
``json`` writes one JSON object per line. Lines are buffered and written once a second (and
at shutdown), so logging costs a list append on the request path.

As in Linkerd, the log's directory is created when it is missing (``logs/access.log`` in
Linkerd's examples). :func:`access_log_problem` tells, without creating anything, why a path
could not be opened (``turnout check`` reports it at the ``httpAccessLog`` key); opening it at
start-up raises :class:`AccessLogError` (a clean error, never a traceback) if it still fails.
A write that fails later (disk full) is logged once a minute at most; the lines are dropped.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from typing import IO, TYPE_CHECKING

from turnout.api import TurnoutError

if TYPE_CHECKING:
    from .exchange import Exchange

log = logging.getLogger("turnout.http.accesslog")

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


class AccessLog:
    def __init__(self, path: str, fmt: str, append: bool = True) -> None:
        self.path = path
        self.json = fmt == "json"
        self.file: IO[str] = open_access_log(path, append)
        self.lines: list[str] = []
        #: lines lost because writing failed (logged, at most once a minute)
        self.dropped = 0
        self._last_error_log = float("-inf")
        self._stamp_second = -1
        self._stamp = ""

    def _now(self) -> str:
        second = int(time.time())
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._stamp

    def record(self, ex: Exchange, elapsed_ms: float) -> None:
        host = (ex.host or b"-").decode("latin-1")
        peer = ex.conn.peer[0]
        method = ex.method.decode("latin-1")
        target = ex.target.decode("latin-1")
        if self.json:
            endpoint = ex.endpoint
            self.lines.append(
                json.dumps(
                    {
                        "time": time.time(),
                        "host": host,
                        "client": peer,
                        "method": method,
                        "target": target,
                        "version": ex.version.decode(),
                        "status": ex.status,
                        "bytes": ex.response_bytes,
                        "requestBytes": ex.request_bytes,
                        "durationMs": round(elapsed_ms, 3),
                        "service": str(ex.dst) if ex.dst is not None else None,
                        "client_id": str(ex.client.id) if ex.client is not None else None,
                        "endpoint": str(endpoint.address) if endpoint is not None else None,
                        "userAgent": (ex.header(b"user-agent") or b"").decode("latin-1") or None,
                    }
                )
            )
            return
        referer = (ex.header(b"referer") or b"-").decode("latin-1")
        agent = (ex.header(b"user-agent") or b"-").decode("latin-1")
        self.lines.append(
            f'{host} {peer} - - [{self._now()}] "{method} {target} HTTP/{ex.version.decode()}" '
            f'{ex.status} {ex.response_bytes} "{referer}" "{agent}"'
        )

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
