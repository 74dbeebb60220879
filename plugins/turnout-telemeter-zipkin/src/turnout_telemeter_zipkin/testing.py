"""A Zipkin collector double: ``POST /api/v2/spans`` that checks every span against Zipkin's
v2 API model (zipkin2-api.yaml) and keeps the valid ones.

It answers ``202 Accepted`` like Zipkin, ``400`` naming the first problem of a malformed
batch (and records the problem in :attr:`ZipkinCollector.errors`, so a test can assert there
were none), and can be told to fail (``status``) or be stopped and started again on the same
port. Runs an aiohttp server on its own thread and event loop, on 127.0.0.1.

It ships with the io.l5d.zipkin telemeter (``from turnout_telemeter_zipkin.testing import
ZipkinCollector``), so that users of the plugin can test their tracing setup against it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from turnout.testing.collector import SpanCollector

_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_HEX16_32 = re.compile(r"^([0-9a-f]{16}|[0-9a-f]{32})$")
_KINDS = {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}


def span_problems(span: Any) -> list[str]:
    """What makes ``span`` invalid in Zipkin's v2 model (empty: valid)."""
    if not isinstance(span, dict):
        return ["a span must be an object"]
    out = []
    trace_id = span.get("traceId")
    if not isinstance(trace_id, str) or not _HEX16_32.match(trace_id) or not int(trace_id, 16):
        out.append(f"traceId must be 16 or 32 lower-hex characters, not all zero: {trace_id!r}")
    for key, required in (("id", True), ("parentId", False)):
        value = span.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, str) or not _HEX16.match(value) or not int(value, 16):
            out.append(f"{key} must be 16 lower-hex characters, not all zero: {value!r}")
    if "kind" in span and span["kind"] not in _KINDS:
        out.append(f"kind must be one of {sorted(_KINDS)}: {span['kind']!r}")
    if "name" in span and not isinstance(span["name"], str):
        out.append("name must be a string")
    for key in ("timestamp", "duration"):
        value = span.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            out.append(f"{key} must be a positive integer of microseconds: {value!r}")
    ts = span.get("timestamp")
    if isinstance(ts, int) and not 1_000_000_000_000_000 < ts < 10_000_000_000_000_000:
        out.append(f"timestamp must be microseconds since the epoch: {ts!r}")
    for key in ("localEndpoint", "remoteEndpoint"):
        if key in span:
            out += [f"{key}: {p}" for p in _endpoint_problems(span[key])]
    tags = span.get("tags", {})
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        out.append("tags must map strings to strings")
    for key in ("debug", "shared"):
        if key in span and not isinstance(span[key], bool):
            out.append(f"{key} must be a boolean")
    unknown = set(span) - {
        "traceId",
        "id",
        "parentId",
        "kind",
        "name",
        "timestamp",
        "duration",
        "localEndpoint",
        "remoteEndpoint",
        "annotations",
        "tags",
        "debug",
        "shared",
    }
    if unknown:
        out.append(f"unknown fields {sorted(unknown)}")
    return out


def _endpoint_problems(endpoint: Any) -> list[str]:
    if not isinstance(endpoint, dict):
        return ["must be an object"]
    out = []
    name = endpoint.get("serviceName")
    if name is not None and not isinstance(name, str):
        out.append("serviceName must be a string")
    port = endpoint.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        out.append(f"port must be 1..65535: {port!r}")
    if set(endpoint) - {"serviceName", "ipv4", "ipv6", "port"}:
        out.append(f"unknown fields {sorted(set(endpoint))}")
    return out


class ZipkinCollector(SpanCollector):
    """See the module docstring. ``spans`` holds every accepted span (dicts, in order)."""

    path = "/api/v2/spans"
    name = "zipkin collector"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.posts = 0
        #: answer every POST with this status instead of 202 (fault tests); None: normal
        self.status: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api/v2/spans"

    async def _post(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.status is not None:
            return web.Response(status=self.status, text="injected failure")
        if request.content_type != "application/json":
            self.errors.append(f"content type {request.content_type!r}")
            return web.Response(status=415, text="expected application/json")
        try:
            batch = json.loads(await request.read())
        except ValueError as e:
            self.errors.append(f"malformed JSON: {e}")
            return web.Response(status=400, text=f"malformed JSON: {e}")
        if not isinstance(batch, list):
            self.errors.append("the body must be a JSON list of spans")
            return web.Response(status=400, text="expected a list of spans")
        for i, span in enumerate(batch):
            problems = span_problems(span)
            if problems:
                message = f"span {i}: {'; '.join(problems)}"
                self.errors.append(message)
                return web.Response(status=400, text=message)
        with self._lock:
            self.spans.extend(batch)
        return web.Response(status=202)
