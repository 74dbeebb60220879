"""An OpenTelemetry collector double: OTLP/HTTP ``POST /v1/traces`` with JSON encoding, that
checks every request against the OTLP specification and keeps the spans of valid ones.

Checked (each problem is recorded in :attr:`OtlpCollector.errors`, so a test can assert there
were none, and answered ``400`` with a ``google.rpc.Status`` body, as a collector would):

- the request: ``POST``, ``Content-Type: application/json``, no content coding but ``gzip``,
  at most 20 MiB, a JSON object, at least one span (senders should not send empty envelopes);
- the JSON mapping of ``ExportTraceServiceRequest``: lowerCamelCase field names (a snake_case
  name is reported as such), ``traceId``/``spanId``/``parentSpanId`` as hex (not base64) of
  the right length and not all zero, enums (``kind``, ``status.code``) as integers, 64-bit
  integers (``startTimeUnixNano``, ``intValue``...) as decimal strings, 32-bit ones
  (``flags``, ``dropped*Count``) as numbers;
- the span model: a non-empty name, both timestamps in nanoseconds since the epoch with
  ``end >= start``, unique attribute keys, each ``AnyValue`` holding exactly one well-formed
  value, the reserved high bits of ``flags`` zero.

A real receiver ignores fields it does not know; this double reports them, since a misspelt
field would silently lose data. It answers ``200`` with ``{}``, or as told: a status (with
``Retry-After``) for the next requests, a ``partialSuccess`` rejecting spans, or a delay.
Runs an aiohttp server on its own thread and event loop, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from turnout.testing.collector import SpanCollector

#: the largest request the double accepts (the spec's recommended server limit)
MAX_BODY = 20 << 20

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_DECIMAL = re.compile(r"^-?[0-9]+$")

# the fields of each message, in the JSON mapping
_REQUEST = {"resourceSpans"}
_RESOURCE_SPANS = {"resource", "scopeSpans", "schemaUrl"}
_RESOURCE = {"attributes", "droppedAttributesCount", "entityRefs"}
_SCOPE_SPANS = {"scope", "spans", "schemaUrl"}
_SCOPE = {"name", "version", "attributes", "droppedAttributesCount"}
_SPAN = {
    "traceId",
    "spanId",
    "traceState",
    "parentSpanId",
    "flags",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "attributes",
    "droppedAttributesCount",
    "events",
    "droppedEventsCount",
    "links",
    "droppedLinksCount",
    "status",
}
_EVENT = {"timeUnixNano", "name", "attributes", "droppedAttributesCount"}
_LINK = {"traceId", "spanId", "traceState", "attributes", "droppedAttributesCount", "flags"}
_STATUS = {"message", "code"}
_KEY_VALUE = {"key", "value"}
_ANY_VALUE = {
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
}
_SPAN_KINDS = range(1, 6)  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER (0: do not use)
_STATUS_CODES = range(3)  # UNSET, OK, ERROR
_EPOCH_NS_MIN = 1_000_000_000_000_000_000  # 2001-09-09: smaller values are not nanoseconds


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _fields(obj: Any, known: set[str], where: str) -> list[str]:
    """Problems with the keys of a message ``obj`` (or that it is not an object)."""
    if not isinstance(obj, dict):
        return [f"{where}: must be a JSON object"]
    out = []
    snake = {_snake(k): k for k in known}
    for key in obj:
        if key in known:
            continue
        if key in snake:
            out.append(f"{where}: field names are lowerCamelCase: {snake[key]!r}, not {key!r}")
        else:
            out.append(f"{where}: unknown field {key!r}")
    return out


def _list(obj: dict[str, Any], key: str, where: str) -> tuple[list[Any], list[str]]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        return [], [f"{where}.{key}: must be a JSON array"]
    return value, []


def _id_problem(value: Any, nbytes: int, where: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        return f"{where}: required" if required else None
    digits = 2 * nbytes
    if not isinstance(value, str) or len(value) != digits or not _HEX.match(value):
        return (
            f"{where}: must be {digits} hex digits (OTLP/JSON ids are hex, not base64): {value!r}"
        )
    if int(value, 16) == 0:
        return f"{where}: an all-zero id is invalid"
    return None


def _uint32_problem(value: Any, where: str) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 32:
        return f"{where}: a 32-bit unsigned integer must be a JSON number: {value!r}"
    return None


def _int64(value: Any, where: str, *, unsigned: bool = False) -> tuple[int | None, str | None]:
    """A 64-bit integer, which the JSON mapping writes as a decimal string."""
    if not isinstance(value, str) or not _DECIMAL.match(value):
        return None, f"{where}: a 64-bit integer must be a decimal string: {value!r}"
    number = int(value)
    low, high = (0, 1 << 64) if unsigned else (-(1 << 63), 1 << 63)
    if not low <= number < high:
        return None, f"{where}: out of range: {value!r}"
    return number, None


def any_value_problems(value: Any, where: str) -> list[str]:
    """Problems of an ``AnyValue`` (exactly one of its fields, each well-formed)."""
    out = _fields(value, _ANY_VALUE, where)
    if out:
        return out
    if len(value) != 1:
        return [f"{where}: must hold exactly one of {sorted(_ANY_VALUE)}, has {sorted(value)}"]
    ((kind, v),) = value.items()
    if kind == "stringValue" and not isinstance(v, str):
        out.append(f"{where}.stringValue: must be a string: {v!r}")
    elif kind == "boolValue" and not isinstance(v, bool):
        out.append(f"{where}.boolValue: must be true or false: {v!r}")
    elif kind == "intValue":
        out += [p for p in [_int64(v, f"{where}.intValue")[1]] if p]
    elif kind == "doubleValue" and not (
        (isinstance(v, int | float) and not isinstance(v, bool))
        or v in ("NaN", "Infinity", "-Infinity")
    ):
        out.append(f"{where}.doubleValue: must be a number: {v!r}")
    elif kind == "bytesValue":
        try:
            base64.b64decode(v, validate=True)
        except (TypeError, ValueError):
            out.append(f"{where}.bytesValue: must be base64: {v!r}")
    elif kind == "arrayValue":
        out += _fields(v, {"values"}, f"{where}.arrayValue")
        if not out:
            values, problems = _list(v, "values", f"{where}.arrayValue")
            out += problems
            for i, item in enumerate(values):
                out += any_value_problems(item, f"{where}.arrayValue.values[{i}]")
    elif kind == "kvlistValue":
        out += _fields(v, {"values"}, f"{where}.kvlistValue")
        if not out:
            values, problems = _list(v, "values", f"{where}.kvlistValue")
            out += problems + attributes_problems(values, f"{where}.kvlistValue.values")
    return out


def attributes_problems(attrs: Any, where: str) -> list[str]:
    """Problems of a ``repeated KeyValue`` (keys non-empty and unique)."""
    if not isinstance(attrs, list):
        return [f"{where}: must be a JSON array"]
    out = []
    seen = set()
    for i, kv in enumerate(attrs):
        at = f"{where}[{i}]"
        problems = _fields(kv, _KEY_VALUE, at)
        if problems:
            out += problems
            continue
        key = kv.get("key")
        if not isinstance(key, str) or not key:
            out.append(f"{at}.key: must be a non-empty string: {key!r}")
        elif key in seen:
            out.append(f"{at}.key: duplicate attribute key {key!r}")
        seen.add(key)
        if "value" not in kv:
            out.append(f"{at}: no value")
        else:
            out += any_value_problems(kv["value"], f"{at}.value")
    return out


def _dropped(obj: dict[str, Any], where: str, *keys: str) -> list[str]:
    return [p for k in keys if k in obj for p in [_uint32_problem(obj[k], f"{where}.{k}")] if p]


def span_problems(span: Any, where: str = "span") -> list[str]:
    """What makes ``span`` invalid in OTLP's JSON encoding (empty: valid)."""
    out = _fields(span, _SPAN, where)
    if not isinstance(span, dict):
        return out
    for key, nbytes, required in (("traceId", 16, True), ("spanId", 8, True)):
        problem = _id_problem(span.get(key), nbytes, f"{where}.{key}", required=required)
        if problem:
            out.append(problem)
    problem = _id_problem(span.get("parentSpanId"), 8, f"{where}.parentSpanId", required=False)
    if problem:
        out.append(problem)
    if "traceState" in span and not isinstance(span["traceState"], str):
        out.append(f"{where}.traceState: must be a string")
    name = span.get("name")
    if not isinstance(name, str) or not name:
        out.append(f"{where}.name: required, a non-empty string: {name!r}")
    kind = span.get("kind")
    if not isinstance(kind, int) or isinstance(kind, bool) or kind not in _SPAN_KINDS:
        out.append(
            f"{where}.kind: must be an integer 1..5 (enums are integers in OTLP/JSON; "
            f"0 is SPAN_KIND_UNSPECIFIED): {kind!r}"
        )
    times: list[int] = []
    for key in ("startTimeUnixNano", "endTimeUnixNano"):
        number, problem = _int64(span.get(key), f"{where}.{key}", unsigned=True)
        if problem or number is None:
            out.append(problem or f"{where}.{key}: required")
        elif number < _EPOCH_NS_MIN:
            out.append(f"{where}.{key}: must be nanoseconds since the epoch: {number}")
        else:
            times.append(number)
    if len(times) == 2 and times[1] < times[0]:
        out.append(f"{where}: endTimeUnixNano is before startTimeUnixNano")
    if "flags" in span:
        problem = _uint32_problem(span["flags"], f"{where}.flags")
        if problem:
            out.append(problem)
        elif span["flags"] >> 10:
            out.append(f"{where}.flags: bits 10-31 must be zero: {span['flags']:#x}")
    if "attributes" in span:
        out += attributes_problems(span["attributes"], f"{where}.attributes")
    out += _dropped(
        span, where, "droppedAttributesCount", "droppedEventsCount", "droppedLinksCount"
    )
    events, problems = _list(span, "events", where)
    out += problems
    for i, event in enumerate(events):
        at = f"{where}.events[{i}]"
        out += _fields(event, _EVENT, at)
        if isinstance(event, dict):
            problem = _int64(event.get("timeUnixNano"), f"{at}.timeUnixNano", unsigned=True)[1]
            out += [problem] if problem else []
            if not isinstance(event.get("name"), str) or not event["name"]:
                out.append(f"{at}.name: required, a non-empty string")
            out += attributes_problems(event.get("attributes", []), f"{at}.attributes")
            out += _dropped(event, at, "droppedAttributesCount")
    links, problems = _list(span, "links", where)
    out += problems
    for i, link in enumerate(links):
        at = f"{where}.links[{i}]"
        out += _fields(link, _LINK, at)
        if isinstance(link, dict):
            for key, nbytes in (("traceId", 16), ("spanId", 8)):
                problem = _id_problem(link.get(key), nbytes, f"{at}.{key}")
                out += [problem] if problem else []
            out += attributes_problems(link.get("attributes", []), f"{at}.attributes")
            out += _dropped(link, at, "droppedAttributesCount", "flags")
    if "status" in span:
        status = span["status"]
        out += _fields(status, _STATUS, f"{where}.status")
        if isinstance(status, dict):
            code = status.get("code", 0)
            if not isinstance(code, int) or isinstance(code, bool) or code not in _STATUS_CODES:
                out.append(
                    f"{where}.status.code: must be an integer 0..2 (enums are integers in "
                    f"OTLP/JSON): {code!r}"
                )
            if not isinstance(status.get("message", ""), str):
                out.append(f"{where}.status.message: must be a string")
    return out


def request_problems(request: Any) -> list[str]:
    """What makes ``request`` an invalid ``ExportTraceServiceRequest`` (empty: valid)."""
    out = _fields(request, _REQUEST, "request")
    if out:
        return out
    resource_spans, out = _list(request, "resourceSpans", "request")
    spans = 0
    for i, rs in enumerate(resource_spans):
        at = f"resourceSpans[{i}]"
        out += _fields(rs, _RESOURCE_SPANS, at)
        if not isinstance(rs, dict):
            continue
        if "schemaUrl" in rs and not isinstance(rs["schemaUrl"], str):
            out.append(f"{at}.schemaUrl: must be a string")
        if "resource" in rs:
            resource = rs["resource"]
            out += _fields(resource, _RESOURCE, f"{at}.resource")
            if isinstance(resource, dict):
                out += attributes_problems(
                    resource.get("attributes", []), f"{at}.resource.attributes"
                )
                out += _dropped(resource, f"{at}.resource", "droppedAttributesCount")
        scope_spans, problems = _list(rs, "scopeSpans", at)
        out += problems
        for j, ss in enumerate(scope_spans):
            sat = f"{at}.scopeSpans[{j}]"
            out += _fields(ss, _SCOPE_SPANS, sat)
            if not isinstance(ss, dict):
                continue
            if "scope" in ss:
                scope = ss["scope"]
                out += _fields(scope, _SCOPE, f"{sat}.scope")
                if isinstance(scope, dict):
                    for key in ("name", "version"):
                        if key in scope and not isinstance(scope[key], str):
                            out.append(f"{sat}.scope.{key}: must be a string")
                    out += attributes_problems(
                        scope.get("attributes", []), f"{sat}.scope.attributes"
                    )
            items, problems = _list(ss, "spans", sat)
            out += problems
            for k, span in enumerate(items):
                out += span_problems(span, f"{sat}.spans[{k}]")
            spans += len(items)
    if not out and spans == 0:
        out.append("request: no spans (senders should not send empty envelopes)")
    return out


def attribute_dict(attrs: list[dict[str, Any]]) -> dict[str, Any]:
    """``[{key, value}]`` as ``{key: python value}`` (``intValue`` as an int)."""
    out: dict[str, Any] = {}
    for kv in attrs:
        ((kind, value),) = kv["value"].items()
        if kind == "intValue":
            value = int(value)
        elif kind == "arrayValue":
            value = [attribute_dict([{"key": "", "value": v}])[""] for v in value["values"]]
        elif kind == "kvlistValue":
            value = attribute_dict(value["values"])
        out[kv["key"]] = value
    return out


@dataclass
class Export:
    """One POST the double received."""

    at: float  # time.monotonic()
    headers: dict[str, str]
    status: int  # what the double answered
    spans: int  # spans in the request (valid or not)


class OtlpCollector(SpanCollector):
    """See the module docstring. ``spans`` holds every accepted span (dicts, in order), each
    with the resource attributes and scope it came with in ``resources`` and ``scopes``."""

    path = "/v1/traces"
    name = "OTLP collector"
    max_body = MAX_BODY

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.resources: list[dict[str, Any]] = []  # per span: its resource's attributes
        self.scopes: list[dict[str, Any]] = []  # per span: its scope
        self.exports: list[Export] = []
        #: answer every POST with this status instead of 200 (with ``retry_after``); None: normal
        self.status: int | None = None
        self.retry_after: str | None = None
        #: reject this many spans of each request, with a partialSuccess
        self.reject_spans = 0
        self.reject_message = "rejected by the test collector"
        #: seconds to wait before answering
        self.delay = 0.0
        self._failures: list[tuple[int, str | None]] = []

    @property
    def endpoint(self) -> str:
        """The base URL to configure (``endpoint:``); spans go to ``/v1/traces`` below it."""
        return f"http://{self.host}:{self.port}"

    @property
    def posts(self) -> int:
        return len(self.exports)

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``)."""
        with self._lock:
            self._failures += [(status, retry_after)] * times

    # -- the server ------------------------------------------------------------------------
    def _status(self, status: int, message: str, retry_after: str | None = None) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after else None
        # a failure's body is a google.rpc.Status, in the request's encoding
        body = json.dumps({"code": 14 if status in (429, 502, 503, 504) else 3, "message": message})
        return web.Response(
            status=status, text=body, content_type="application/json", headers=headers
        )

    def _problem(self, message: str, status: int = 400) -> web.Response:
        with self._lock:
            self.errors.append(message)
        return self._status(status, message)

    async def _post(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        record = Export(time.monotonic(), dict(request.headers), 0, 0)
        with self._lock:
            self.exports.append(record)
        response = await self._check(request, record)
        record.status = response.status
        return response

    async def _check(self, request: web.Request, record: Export) -> web.Response:
        if request.content_type != "application/json":
            return self._problem(
                f"Content-Type must be application/json, not {request.content_type!r}", 415
            )
        encoding = request.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("identity", "gzip"):  # aiohttp has decoded gzip already
            return self._problem(f"unsupported Content-Encoding {encoding!r}", 415)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._problem("request larger than 20 MiB", 413)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return self._problem(f"malformed JSON: {e}")
        problems = request_problems(data)
        if isinstance(data, dict) and isinstance(data.get("resourceSpans"), list):
            record.spans = sum(
                len(ss.get("spans", []))
                for rs in data["resourceSpans"]
                if isinstance(rs, dict)
                for ss in rs.get("scopeSpans", [])
                if isinstance(ss, dict) and isinstance(ss.get("spans", []), list)
            )
        if problems:
            return self._problem("; ".join(problems[:10]))
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is None and self.status is not None:
            failure = (self.status, self.retry_after)
        if failure is not None:
            return self._status(failure[0], "injected failure", failure[1])
        rejected = 0
        with self._lock:
            for rs in data["resourceSpans"]:
                resource = attribute_dict(rs.get("resource", {}).get("attributes", []))
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        if rejected < self.reject_spans:
                            rejected += 1
                            continue
                        self.spans.append(span)
                        self.resources.append(resource)
                        self.scopes.append(ss.get("scope", {}))
        answer: dict[str, Any] = {}
        if rejected:
            answer["partialSuccess"] = {
                "rejectedSpans": str(rejected),
                "errorMessage": self.reject_message,
            }
        return web.json_response(answer)
