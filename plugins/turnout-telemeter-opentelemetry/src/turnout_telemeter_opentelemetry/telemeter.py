"""``io.l5d.opentelemetry``: spans of sampled requests, exported over OTLP/HTTP (JSON).

Spans are queued by the routers (a bounded deque: a slow or dead collector costs memory up to
``maxQueuedSpans`` and then drops the oldest, never blocks a request) and posted in batches
every ``flushIntervalMs`` as an ``ExportTraceServiceRequest`` in OTLP's JSON encoding
(``POST <endpoint>/v1/traces``, ``Content-Type: application/json``): ids in hex, field names
in lowerCamelCase, enums as integers, 64-bit integers as decimal strings.

The collector's answer is handled as the OTLP specification says: ``200`` with a
``partialSuccess`` counts the rejected spans and is never retried; ``429``, ``502``, ``503``,
``504`` and transport errors are retried, after ``Retry-After`` when the collector gives one
and with jittered exponential backoff otherwise; every other ``4xx``/``5xx`` drops the batch
(counted).

OpenTelemetry has no "shared" spans (Zipkin's server span that reuses the caller's client
span id): here the server span gets its own id, derived from the trace id and turnout's span
id so that the client spans recorded before it name it as their parent, and it is a child of
the caller's span. Client span ids are the ones the backends received in ``traceparent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
import time
import urllib.parse
from collections import deque
from datetime import UTC
from typing import TYPE_CHECKING, Any

import turnout
from turnout.api import (
    BuildContext,
    Counter,
    MetricsTree,
    Span,
    Telemeter,
    TelemeterConfig,
    Tracer,
    option,
)

from . import __version__

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import aiohttp  # (imported when spans are first sent)


log = logging.getLogger("turnout.opentelemetry")

#: the path OTLP/HTTP appends to the collector's base URL for traces
TRACES_PATH = "/v1/traces"
USER_AGENT = f"turnout-telemeter-opentelemetry/{__version__}"
#: statuses after which the same request is sent again (OTLP/HTTP "Retryable Response Codes")
RETRYABLE = frozenset({429, 502, 503, 504})
#: the longest wait a collector's Retry-After may impose, in seconds
MAX_RETRY_AFTER = 60.0
#: the longest backoff between retries when the collector gives no Retry-After, in seconds
MAX_BACKOFF = 30.0
#: largest request body before it is split (the OTLP spec recommends clients stay under 20 MiB)
MAX_BODY_BYTES = 4 << 20
#: spans encoded between two yields to the event loop while a batch is built
ENCODE_SLICE = 16  # about 0.4 ms of encoding at a time

# OTLP enums, as integers (the JSON encoding forbids their names)
SPAN_KIND = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
STATUS_CODE_ERROR = 2
# Span.flags: W3C trace flags in bits 0-7 (sampled), then "is the parent remote?" known / yes
FLAG_SAMPLED = 0x01
FLAG_HAS_IS_REMOTE = 0x100
FLAG_IS_REMOTE = 0x200

#: methods the HTTP semantic conventions name; any other is "_OTHER" (+ the original)
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
#: turnout's tags that become semantic-convention attributes (see span_json)
_CONVERTED_TAGS = frozenset({"http.method", "http.path", "http.status_code"})
_INT_TAGS = frozenset({"l5d.retries", "l5d.attempt"})
#: RFC 9110 token
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: headers the exporter sets itself
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding", "connection"}
)
_USERINFO = re.compile(r"//[^/@]*@")


class OpenTelemetryConfig(TelemeterConfig):
    """Trace sampled requests to an OpenTelemetry collector (OTLP/HTTP with JSON encoding)."""

    kind = "io.l5d.opentelemetry"
    endpoint: str = option(
        "http://127.0.0.1:4318",
        doc="Collector base URL (http or https); spans are posted to <endpoint>/v1/traces.",
    )
    sample_rate: float = option(
        0.001, min=0.0, max=1.0, doc="Share of new traces recorded (callers' decisions win)."
    )
    headers: dict[str, str] = option(
        default_factory=dict,
        secret=True,
        doc="HTTP headers sent with every export (authentication, tenant); redacted in "
        "/config.json.",
    )
    service_name: str = option("turnout", doc="The resource's service.name.")
    resource_attributes: dict[str, str] = option(
        default_factory=dict,
        doc="More resource attributes (deployment.environment.name, host.name, ...).",
    )
    batch_size: int = option(512, min=1, max=10_000, doc="Most spans per export request.")
    flush_interval_ms: int = option(
        1000, min=10, max=60_000, doc="How often queued spans are sent."
    )
    max_queued_spans: int = option(
        10_000, min=1, doc="Spans kept while the collector is slow or down; beyond, the oldest go."
    )
    timeout_ms: int = option(10_000, min=100, max=120_000, doc="Time limit of one export request.")

    def check(self) -> Iterator[tuple[Any, str]]:
        problem = endpoint_problem(self.endpoint)
        if problem:
            yield "endpoint", problem
        for name, value in self.headers.items():
            # never echo a value: headers hold credentials
            if not _HEADER_NAME.match(name):
                yield ("headers", name), f"{name!r} is not a valid HTTP header name"
            elif name.lower() in _RESERVED_HEADERS:
                yield ("headers", name), f"{name} is set by the exporter and cannot be configured"
            if not all(c == "\t" or " " <= c <= "~" for c in value):
                yield ("headers", name), "a header value must be printable ASCII (no line breaks)"
        if not self.service_name.strip():
            yield "serviceName", "must not be empty"
        for key in self.resource_attributes:
            if not key:
                yield "resourceAttributes", "attribute names must not be empty"
            elif key == "service.name":
                yield ("resourceAttributes", key), "set service.name with serviceName"

    def new_telemeter(self, ctx: BuildContext) -> OpenTelemetryTelemeter:
        return OpenTelemetryTelemeter(self, ctx.metrics)


def endpoint_problem(text: str) -> str | None:
    """Why ``text`` is not a usable collector base URL, or None."""
    example = "such as http://otel-collector:4318"
    shown = _USERINFO.sub("//***@", text)
    if not text or any(c.isspace() for c in text):
        return f"expected the collector's base URL, {example}, not {shown!r}"
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as e:
        return f"not a valid URL ({e}): expected the collector's base URL, {example}"
    if parts.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, {example}, not {shown!r}"
    if not parts.hostname:
        return f"the URL has no host: expected the collector's base URL, {example}"
    if parts.username is not None or parts.password is not None:
        return (
            "do not put credentials in the URL (it is shown in /config.json); "
            "send them with 'headers', which are redacted"
        )
    if parts.query or parts.fragment:
        return f"the collector's base URL takes no query or fragment, {example}"
    if parts.path.rstrip("/").endswith(TRACES_PATH):
        return (
            f"give the collector's base URL: {TRACES_PATH} is appended to it "
            f"(write {shown.rstrip('/').removesuffix(TRACES_PATH)!r})"
        )
    return None


def traces_url(endpoint: str) -> str:
    """Where spans are posted: the base URL plus ``/v1/traces``."""
    return endpoint.rstrip("/") + TRACES_PATH


class OpenTelemetryTelemeter(Telemeter, Tracer):
    """Queues spans (:meth:`record`, on the request path: one append) and exports them."""

    exports = True

    def __init__(self, config: OpenTelemetryConfig, metrics: MetricsTree | None = None) -> None:
        self.config = config
        self.sample_rate = config.sample_rate
        self.url = traces_url(config.endpoint)
        self.queue: deque[Span] = deque(maxlen=config.max_queued_spans)
        self._headers = {
            "User-Agent": USER_AGENT,
            **config.headers,
            "Content-Type": "application/json",
        }
        resource = {"service.name": config.service_name}
        resource.update(
            (k, v) for k, v in config.resource_attributes.items() if k != "service.name"
        )
        scope_json = {"name": "turnout", "version": turnout.__version__}
        # the body is head + spans + tail: the envelope is encoded once
        self._head = (
            '{"resourceSpans":[{"resource":'
            + json.dumps({"attributes": attributes(resource)}, separators=(",", ":"))
            + ',"scopeSpans":[{"scope":'
            + json.dumps(scope_json, separators=(",", ":"))
            + ',"spans":['
        ).encode()
        self._tail = b"]}]}]}"
        self._session: aiohttp.ClientSession | None = None
        self._flushing = asyncio.Lock()  # one export at a time (run() and close())
        self._closing = False
        self._closed = False
        self._retry_at = 0.0  # monotonic time before which nothing is sent
        self._throttled = False  # the wait comes from the collector's Retry-After
        self._backoff = 0.0
        self._last_error_log = 0.0
        scope = ("telemetry", "opentelemetry")
        if metrics is not None:
            self._sent = metrics.counter(*scope, "spans_sent")
            self._dropped = metrics.counter(*scope, "spans_dropped")
            self._rejected = metrics.counter(*scope, "spans_rejected")
            self._failures = metrics.counter(*scope, "send_failures")
            self._retries = metrics.counter(*scope, "send_retries")
            metrics.gauge(*scope, "queued", fn=lambda: len(self.queue))
        else:
            self._sent, self._dropped, self._rejected = Counter(), Counter(), Counter()
            self._failures, self._retries = Counter(), Counter()

    # -- Telemeter -------------------------------------------------------------------------
    def tracer(self) -> Tracer:
        return self

    async def run(self) -> None:
        interval = self.config.flush_interval_ms / 1000
        while not self._closing:
            await asyncio.sleep(interval)
            if self.closing():  # close() may have begun while this task slept
                return
            try:
                await self.flush()
            except Exception as e:  # keep exporting whatever happened to one flush
                self._warn("exporting spans failed unexpectedly: %r", e, exc_info=True)

    def closing(self) -> bool:
        """Whether :meth:`close` has begun."""
        return self._closing

    async def close(self) -> None:
        """A last flush (at most 2 s, and none while the collector asked us to wait), then
        release the connection. Called while :meth:`run` may still be exporting."""
        self._closing = True
        if not self._throttled:
            self._retry_at = 0.0
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), 2.0)
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- Tracer ----------------------------------------------------------------------------
    def record(self, span: Span) -> None:
        queue = self.queue
        if len(queue) == queue.maxlen:
            self._dropped.value += 1  # the oldest goes
        queue.append(span)

    # -- export ----------------------------------------------------------------------------
    async def flush(self) -> None:
        """Send what is queued, a batch at a time, unless a retry is not due yet. A batch
        that may be retried goes back to the front of the queue (within its bound)."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        while self.queue and time.monotonic() >= self._retry_at and not self._closed:
            batch = [
                self.queue.popleft() for _ in range(min(len(self.queue), self.config.batch_size))
            ]
            try:
                body, sent, rest = await self._encode(batch)
                self._requeue(rest)
                batch = sent
                retry = await self._export(body, len(batch))
            except asyncio.CancelledError:  # shutting down: close() sends it
                self._requeue(batch)
                raise
            except Exception:  # a bug, not the collector: do not try this batch forever
                self._dropped.value += len(batch)
                raise
            if retry:
                self._requeue(batch)
                return

    async def _encode(self, batch: list[Span]) -> tuple[bytes, list[Span], list[Span]]:
        """``(request body, the spans in it, the rest)``: a body holds the whole batch, or
        its first spans when it would pass :data:`MAX_BODY_BYTES`. Yields to the event loop
        every few spans, so that requests never wait for it."""
        pieces: list[bytes] = []
        size = len(self._head) + len(self._tail)
        for i, span in enumerate(batch):
            if i and i % ENCODE_SLICE == 0:
                await asyncio.sleep(0)
            piece = json.dumps(span_json(span), separators=(",", ":")).encode()
            if pieces and size + len(piece) + 1 > MAX_BODY_BYTES:
                return self._head + b",".join(pieces) + self._tail, batch[:i], batch[i:]
            pieces.append(piece)
            size += len(piece) + 1
        return self._head + b",".join(pieces) + self._tail, batch, []

    async def _export(self, body: bytes, count: int) -> bool:
        """POST one request; True when it must be sent again later."""
        import aiohttp  # (not at import time: every turnout process loads this plugin)

        if self._closed:
            return True
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_ms / 1000)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers, allow_redirects=False
            ) as response:
                status = response.status
                text = await _read_some(response)
                retry_after = response.headers.get("Retry-After")
                content_type = response.content_type
        except (OSError, aiohttp.ClientError, TimeoutError) as e:
            self._failures.value += 1
            self._retry_later(None)
            self._warn("cannot send spans to %s: %s", self.url, str(e) or type(e).__name__)
            return True
        if 200 <= status < 300:
            self._backoff = 0.0
            self._throttled = False
            rejected, message = partial_success(text, content_type, count)
            self._sent.value += count - rejected
            self._rejected.value += rejected
            if rejected or message:
                self._warn(
                    "the collector at %s rejected %d of %d spans: %s",
                    self.url,
                    rejected,
                    count,
                    message or "(no message)",
                )
            return False
        self._failures.value += 1
        reason = _status_message(text, content_type)
        if status in RETRYABLE:
            self._retry_later(retry_after_seconds(retry_after))
            self._warn("the collector at %s answered %d, will retry: %s", self.url, status, reason)
            return True
        # 400 (bad data), 401/403 (credentials), 404, 413 (too large), 500...: never retried
        self._rejected.value += count
        self._warn(
            "the collector at %s answered %d, %d spans dropped: %s", self.url, status, count, reason
        )
        return False

    def _retry_later(self, delay: float | None) -> None:
        self._retries.value += 1
        if delay is None:  # exponential backoff with jitter
            base = self.config.flush_interval_ms / 1000
            self._backoff = min(max(self._backoff * 2, base), MAX_BACKOFF)
            delay = self._backoff * random.uniform(0.8, 1.2)
            self._throttled = False
        else:
            delay = min(delay, MAX_RETRY_AFTER)
            self._throttled = True
        self._retry_at = time.monotonic() + delay

    def _requeue(self, batch: list[Span]) -> None:
        """Put ``batch`` back in front of the queue; what does not fit (the oldest) goes."""
        room = (self.queue.maxlen or 0) - len(self.queue)
        keep = batch[-room:] if room > 0 else []
        self._dropped.value += len(batch) - len(keep)
        self.queue.extendleft(reversed(keep))

    def _warn(self, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 30:  # once per 30 s, not once per batch
            self._last_error_log = now
            log.warning("opentelemetry: " + message, *args, exc_info=exc_info)


# -- the collector's answers --------------------------------------------------------------------


def partial_success(body: bytes, content_type: str, count: int) -> tuple[int, str]:
    """``(rejected spans, error message)`` of an ``ExportTraceServiceResponse`` (JSON);
    ``(0, "")`` for a full success, an empty body or a body that is not JSON."""
    if not body.strip() or content_type != "application/json":
        return 0, ""
    try:
        data = json.loads(body)
    except ValueError:
        return 0, ""
    partial = data.get("partialSuccess") if isinstance(data, dict) else None
    if not isinstance(partial, dict):
        return 0, ""
    value = partial.get("rejectedSpans", 0)  # an int64: a string, or a number
    try:
        rejected = int(value) if isinstance(value, int | str) else 0
    except ValueError:
        rejected = 0
    message = partial.get("errorMessage", "")
    return min(max(rejected, 0), count), message if isinstance(message, str) else ""


async def _read_some(response: aiohttp.ClientResponse, limit: int = 65536) -> bytes:
    """The response body, up to ``limit`` bytes (a collector's answers are small)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16384):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _status_message(body: bytes, content_type: str) -> str:
    """The message of a failure's ``google.rpc.Status`` body, or the start of the body."""
    if content_type == "application/json":
        with contextlib.suppress(ValueError):
            data = json.loads(body)
            message = data.get("message") if isinstance(data, dict) else None
            if isinstance(message, str):
                return message[:200]
    return body[:200].decode("utf-8", errors="replace") or "(no body)"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` value (delay-seconds or an HTTP date) in seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        import email.utils  # (only for a Retry-After date)

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# -- spans in OTLP's JSON encoding --------------------------------------------------------------


def attributes(values: Mapping[str, str | int | bool]) -> list[dict[str, Any]]:
    """``[{key, value: AnyValue}]``; ints are ``intValue`` (an int64: a decimal string)."""
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            any_value: dict[str, Any] = {"boolValue": value}
        elif isinstance(value, int):
            any_value = {"intValue": str(value)}
        else:
            any_value = {"stringValue": str(value)}
        out.append({"key": key, "value": any_value})
    return out


def server_span_id(trace_id: int, span_id: int) -> int:
    """The OTLP id of a server span whose turnout id is ``span_id``: turnout's server span
    may share its id with the caller's client span (Zipkin's model), which OTLP does not
    allow, so it gets its own, derived one (a client span's parent is derived the same way)."""
    digest = hashlib.blake2b(
        trace_id.to_bytes(16, "big") + span_id.to_bytes(8, "big"),
        digest_size=8,
        person=b"turnout-otlp-srv",
    ).digest()
    return int.from_bytes(digest, "big") or 1


def span_json(span: Span) -> dict[str, Any]:
    """A span in OTLP's JSON encoding (an element of ``scopeSpans[].spans``)."""
    server = span.kind == "SERVER"
    if server:
        span_id = server_span_id(span.trace_id, span.span_id)
        # a shared server span continues the caller's span: that span is its (remote) parent
        parent = span.span_id if span.shared else span.parent_id
        flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | (FLAG_IS_REMOTE if parent else 0)
    else:
        span_id = span.span_id
        parent = server_span_id(span.trace_id, span.parent_id) if span.parent_id else None
        flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE
    tags = span.tags
    attrs: dict[str, str | int | bool] = {}
    name = span.name
    method = tags.get("http.method")
    if method is not None:
        if method in KNOWN_METHODS:
            attrs["http.request.method"] = name = method
        else:
            attrs["http.request.method"] = "_OTHER"
            attrs["http.request.method_original"] = method
            name = "HTTP"
    path = tags.get("http.path")
    if path is not None:
        attrs["url.path"] = _url_path(path)
    status = tags.get("http.status_code")
    if status is not None and status.isdigit():
        attrs["http.response.status_code"] = int(status)
    if server:
        if span.remote_ip:
            attrs["network.peer.address"] = span.remote_ip
        if span.remote_port:
            attrs["network.peer.port"] = span.remote_port
    else:
        if span.remote_ip:
            attrs["server.address"] = span.remote_ip
        if span.remote_port:
            attrs["server.port"] = span.remote_port
    if "l5d.router" not in tags:
        attrs["l5d.router"] = span.local_service
    for key, value in tags.items():
        if key in _CONVERTED_TAGS:
            continue
        attrs[key] = int(value) if key in _INT_TAGS and value.isdigit() else value
    attempt = attrs.get("l5d.attempt")
    if not server and isinstance(attempt, int) and attempt > 1:
        attrs["http.request.resend_count"] = attempt - 1
    if span.error:
        attrs["error.type"] = _error_type(span.error)
    start_ns = span.timestamp_us * 1000
    out: dict[str, Any] = {
        "traceId": f"{span.trace_id:032x}",
        "spanId": f"{span_id:016x}",
    }
    if parent:
        out["parentSpanId"] = f"{parent:016x}"
    out.update(
        {
            "flags": flags,
            "name": name or "request",
            "kind": SPAN_KIND.get(span.kind, SPAN_KIND["INTERNAL"]),
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(start_ns + max(span.duration_us, 0) * 1000),
            "attributes": attributes(attrs),
        }
    )
    if span.error:
        out["status"] = {"code": STATUS_CODE_ERROR, "message": span.error}
    return out


def _url_path(target: str) -> str:
    if target.startswith(("http://", "https://")):  # absolute-form (a proxy request)
        return urllib.parse.urlsplit(target).path or "/"
    return target


def _error_type(error: str) -> str:
    """``error.type``: the status code for "status 503", else turnout's failure kind
    (``no_route``, ``connect``, ``total_timeout``...), both of low cardinality."""
    kind, _, code = error.partition(" ")
    return code if kind == "status" and code.isdigit() else error
