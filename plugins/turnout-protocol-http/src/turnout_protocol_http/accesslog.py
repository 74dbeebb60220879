"""The optional access log (``httpAccessLog``): one line per request, written in batches.

``combined`` is Apache's combined format prefixed by the Host header (as Linkerd writes it);
``json`` writes one JSON object per line. Lines are buffered and written once a second (and
at shutdown), so logging costs a list append on the request path.
"""

from __future__ import annotations

import json
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from .proxy import Exchange


class AccessLog:
    def __init__(self, path: str, fmt: str, append: bool = True) -> None:
        self.path = path
        self.json = fmt == "json"
        self.file: IO[str] = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self.lines: list[str] = []
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
            self.file.write("\n".join(lines) + "\n")
            self.file.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()
