"""The optional access log (``httpAccessLog``): one line per request, written in batches.

``combined`` is Apache's combined format prefixed by the Host header (as Linkerd writes it);
``json`` writes one JSON object per line. The file handling (:class:`turnout.api.LineLog`:
batching, a missing directory created, write errors logged, :func:`access_log_problem` for
``turnout check``) is core's.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from turnout.api import AccessLogError, LineLog, RollPolicy, access_log_problem, open_access_log

if TYPE_CHECKING:
    from .exchange import Exchange

__all__ = ["AccessLog", "AccessLogError", "access_log_problem", "open_access_log"]


class AccessLog(LineLog):
    def __init__(
        self,
        path: str,
        fmt: str,
        append: bool = True,
        roll: RollPolicy | None = None,
        rotate_count: int = -1,
    ) -> None:
        LineLog.__init__(self, path, append, roll, rotate_count)
        self.json = fmt == "json"

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
            f'{host} {peer} - - [{self.now()}] "{method} {target} HTTP/{ex.version.decode()}" '
            f'{ex.status} {ex.response_bytes} "{referer}" "{agent}"'
        )
