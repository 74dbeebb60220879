"""A small client of the Kubernetes API over plain HTTP (``kubectl proxy``), on aiohttp.

Only what the namers need: the list of one named object (``fieldSelector=metadata.name=...``,
optionally a ``labelSelector``) and the watch of that list from a resourceVersion, read as
newline-delimited JSON events. No Kubernetes client library is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

#: the longest watch event line accepted (an Endpoints object of thousands of pods fits)
MAX_EVENT_BYTES = 16 << 20
#: seconds a list request (or the head of a watch response) may take
REQUEST_TIMEOUT = 10.0
#: seconds to connect
CONNECT_TIMEOUT = 5.0


class K8sApiError(Exception):
    """The API answered with an error (an HTTP status or an ``ERROR`` watch event)."""

    def __init__(self, what: str, code: int, reason: str = "", message: str = "") -> None:
        self.code = code
        self.reason = reason
        text = f"{what}: {code}"
        if reason:
            text += f" {reason}"
        if message:
            text += f": {message}"
        super().__init__(text)


class ResourceExpired(K8sApiError):
    """410 Gone / ``Expired``: the resourceVersion is too old to watch from; re-list."""


class WatchEnded(Exception):
    """The server ended a watch stream at once, without an event."""


def _status_fields(body: Any) -> tuple[str, str]:
    if isinstance(body, Mapping) and body.get("kind") == "Status":
        return str(body.get("reason") or ""), str(body.get("message") or "")
    return "", ""


class KubeApi:
    """Requests to one API server (``http://host:port``) through one aiohttp session."""

    def __init__(self, host: str, port: int, *, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.base = f"http://{host}:{port}"
        self.request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use (inside the running loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # one connection per open watch: no pool limit (a limit would queue watches)
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                headers={"Accept": "application/json", "User-Agent": "turnout-namer-k8s"},
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, resource: str, namespace: str) -> str:
        return f"{self.base}/api/v1/namespaces/{quote(namespace, safe='')}/{resource}"

    @staticmethod
    def params(name: str, label_selector: str | None) -> dict[str, str]:
        params = {"fieldSelector": f"metadata.name={name}"}
        if label_selector:
            params["labelSelector"] = label_selector
        return params

    async def list_one(
        self, resource: str, namespace: str, name: str, label_selector: str | None
    ) -> tuple[dict[str, Any] | None, str]:
        """The object ``name`` (None when absent or not matching the label selector) and the
        list's resourceVersion, to watch from."""
        url = self.url(resource, namespace)
        what = f"list {resource} {namespace}/{name}"
        async with self.session().get(
            url,
            params=self.params(name, label_selector),
            timeout=aiohttp.ClientTimeout(
                total=self.request_timeout, sock_connect=min(CONNECT_TIMEOUT, self.request_timeout)
            ),
        ) as response:
            body = await _json_body(response)
            if response.status != 200:
                reason, message = _status_fields(body)
                error = ResourceExpired if response.status == 410 else K8sApiError
                raise error(what, response.status, reason or response.reason or "", message)
        if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
            raise K8sApiError(what, 200, "", "not a list object")
        meta = body.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if not isinstance(rv, str) or not rv:
            raise K8sApiError(what, 200, "", "the list has no resourceVersion")
        found = None
        for item in body["items"]:
            item_meta = item.get("metadata") if isinstance(item, Mapping) else None
            if isinstance(item_meta, Mapping) and item_meta.get("name") == name:
                found = dict(item)
        return found, rv

    @contextlib.asynccontextmanager
    async def watch(
        self,
        resource: str,
        namespace: str,
        name: str,
        label_selector: str | None,
        resource_version: str,
        timeout_seconds: int,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open the watch of ``name`` from ``resource_version``; yields the events (dicts with
        ``type`` and ``object``). Raises :class:`ResourceExpired` for a 410 status and for an
        ``ERROR`` event with code 410, :class:`K8sApiError` for other errors."""
        params = self.params(name, label_selector)
        params.update(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds),
        )
        what = f"watch {resource} {namespace}/{name}"
        try:
            # the head must come soon; the body is a stream that may stay quiet for minutes
            async with asyncio.timeout(self.request_timeout):
                response = await self.session().get(self.url(resource, namespace), params=params)
        except TimeoutError:
            raise K8sApiError(
                what, 0, "Timeout", f"no answer in {self.request_timeout:g}s"
            ) from None
        try:
            if response.status != 200:
                body = await _json_body(response)
                reason, message = _status_fields(body)
                error = ResourceExpired if response.status == 410 else K8sApiError
                raise error(what, response.status, reason or response.reason or "", message)
            events = _events(response, what)
            try:
                yield events
            finally:
                await events.aclose()
        finally:
            response.close()


async def _json_body(response: aiohttp.ClientResponse) -> Any:
    data = await response.read()
    try:
        return json.loads(data)
    except ValueError:
        return None


async def _events(
    response: aiohttp.ClientResponse, what: str
) -> AsyncGenerator[dict[str, Any], None]:
    buffer = bytearray()
    async for chunk in response.content.iter_any():
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield _event(line, what)
        if len(buffer) > MAX_EVENT_BYTES:
            raise K8sApiError(what, 200, "", f"a watch event over {MAX_EVENT_BYTES} bytes")
    if buffer.strip():
        yield _event(bytes(buffer), what)


def _event(line: bytes, what: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        raise K8sApiError(what, 200, "", f"malformed watch event {line[:100]!r}") from None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise K8sApiError(what, 200, "", f"malformed watch event {line[:100]!r}")
    if event.get("type") == "ERROR":
        status = event["object"]
        code = status.get("code")
        reason, message = _status_fields(status)
        if code == 410 or reason in ("Expired", "Gone"):
            raise ResourceExpired(what, 410, reason, message)
        raise K8sApiError(what, code if isinstance(code, int) else 0, reason, message)
    return event


def watch_timeout(low: int = 300, high: int = 600, rng: random.Random | None = None) -> int:
    """``timeoutSeconds`` of one watch: random between ``low`` and ``high`` (as client-go's
    reflectors do, so that many clients do not reconnect at the same moment)."""
    return (rng or random).randint(low, high)
