"""Built-in telemeters: ``io.l5d.recentRequests`` and ``io.l5d.tracelog``.

Both are tracers that stay in the process (their sampling never forces the next hop to
trace): recentRequests keeps the last sampled requests for the ``/requests`` admin page,
tracelog writes every sampled span to the log.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any, Literal

from ..admin.http import AdminRequest, AdminResponse
from ..admin.ui import escape
from ..admin_routes import AdminRoute
from ..config.model import TelemeterConfig
from ..config.schema import option
from ..context import BuildContext
from ..hookspecs import hookimpl
from ..telemetry import Telemeter
from ..tracing import Span, Tracer

# -- io.l5d.recentRequests ----------------------------------------------------------------------


class RecentRequestsConfig(TelemeterConfig):
    """The last ``capacity`` sampled requests, on the admin page ``/requests`` (and as JSON at
    ``/requests.json``): time, router, method, path, status, duration, service, client and
    trace id."""

    kind = "io.l5d.recentRequests"
    sample_rate: float = option(min=0.0, max=1.0, doc="Share of requests kept (0..1).")
    capacity: int = option(10, min=1, max=10_000, doc="How many requests are kept.")

    def new_telemeter(self, ctx: BuildContext) -> RecentRequests:
        return RecentRequests(self.sample_rate, self.capacity)


class RecentRequests(Telemeter, Tracer):
    exports = False

    def __init__(self, sample_rate: float, capacity: int) -> None:
        self.sample_rate = sample_rate
        self.requests: deque[dict[str, Any]] = deque(maxlen=capacity)

    def tracer(self) -> Tracer:
        return self

    def record(self, span: Span) -> None:
        if span.kind != "SERVER":
            return
        tags = span.tags
        self.requests.appendleft(
            {
                "timestamp": span.timestamp_us / 1e6,
                "router": tags.get("l5d.router", span.local_service),
                "method": tags.get("http.method", span.name.upper()),
                "path": tags.get("http.path", ""),
                "status": int(tags.get("http.status_code", "0") or 0),
                "durationMs": round(span.duration_us / 1000, 3),
                "service": tags.get("l5d.service"),
                "client": tags.get("l5d.client"),
                "retries": int(tags.get("l5d.retries", "0")),
                "error": span.error,
                "from": f"{span.remote_ip}:{span.remote_port}" if span.remote_ip else None,
                "traceId": f"{span.trace_id:032x}",
            }
        )

    def admin_routes(self) -> list[AdminRoute]:
        return [
            # diagnostics, like /requests.json: it shows clients' addresses and paths
            AdminRoute("GET", "/requests", self.page, "diagnostics", nav="requests"),
            AdminRoute("GET", "/requests.json", self.json, "diagnostics"),
        ]

    async def json(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse.json(list(self.requests))

    async def page(self, request: AdminRequest) -> AdminResponse:
        rows = []
        for r in self.requests:
            when = time.strftime("%H:%M:%S", time.localtime(r["timestamp"]))
            cells = [
                when,
                r["router"],
                r["method"],
                r["path"],
                str(r["status"]),
                f"{r['durationMs']:.1f}",
                r["service"] or "",
                r["client"] or "",
                r["from"] or "",
                r["traceId"],
            ]
            style = ' class="fail"' if r["status"] >= 500 or r["error"] else ""
            rows.append(f"<tr{style}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "time",
                "router",
                "method",
                "path",
                "status",
                "ms",
                "service",
                "client",
                "from",
                "trace",
            )
        )
        body = "\n".join(rows) or '<tr><td colspan="10">no sampled request yet</td></tr>'
        page = _PAGE.format(count=len(self.requests), head=head, rows=body)
        return AdminResponse(text=page, content_type="text/html")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>turnout: recent requests</title>
<meta http-equiv="refresh" content="5">
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5rem; color: #1d2330; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e3e6ec; }}
th {{ font-weight: 600; background: #f5f6f8; }}
td {{ font-family: ui-monospace, monospace; font-size: 13px; }}
tr.fail td {{ color: #b3261e; }}
a {{ color: #2456c9; }}
</style></head>
<body><p><a href="/">dashboard</a> · <a href="/requests.json">JSON</a></p>
<h1>Recent requests ({count})</h1>
<table><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table></body></html>
"""


# -- io.l5d.tracelog ----------------------------------------------------------------------------


class TracelogConfig(TelemeterConfig):
    """Writes every sampled span to the log (logger ``turnout.tracelog``) as one JSON line."""

    kind = "io.l5d.tracelog"
    sample_rate: float = option(1.0, min=0.0, max=1.0, doc="Share of requests logged (0..1).")
    level: Literal["TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR"] = option(
        "INFO", doc="Log level of the span lines."
    )

    def new_telemeter(self, ctx: BuildContext) -> Tracelog:
        level = {"TRACE": "DEBUG", "WARN": "WARNING"}.get(self.level, self.level)
        return Tracelog(self.sample_rate, logging.getLevelName(level))


class Tracelog(Telemeter, Tracer):
    exports = False

    def __init__(self, sample_rate: float, level: int) -> None:
        self.sample_rate = sample_rate
        self.level = level
        self.log = logging.getLogger("turnout.tracelog")

    def tracer(self) -> Tracer:
        return self

    def record(self, span: Span) -> None:
        if not self.log.isEnabledFor(self.level):
            return
        self.log.log(
            self.level,
            "%s",
            json.dumps(
                {
                    "traceId": f"{span.trace_id:032x}",
                    "id": f"{span.span_id:016x}",
                    "parentId": f"{span.parent_id:016x}" if span.parent_id else None,
                    "kind": span.kind,
                    "name": span.name,
                    "durationUs": span.duration_us,
                    "remote": f"{span.remote_ip}:{span.remote_port}" if span.remote_ip else None,
                    "tags": span.tags,
                    "error": span.error,
                },
                separators=(",", ":"),
            ),
        )


@hookimpl
def turnout_register_telemeters() -> list[type[TelemeterConfig]]:
    return [RecentRequestsConfig, TracelogConfig]
