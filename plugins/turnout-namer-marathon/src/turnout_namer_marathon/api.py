"""The part of Marathon's v2 REST API the namer uses, on aiohttp, and how answers become
addresses (Linkerd 1's ``io.buoyant.marathon.v2.Api``).

Two calls: ``GET <uriPrefix>/v2/apps`` (every app id) and
``GET <uriPrefix>/v2/apps/<id>?embed=app.tasks`` (one app and its tasks).

How a task becomes an address:

- an app with ``ipAddress.discovery.ports`` (IP-per-task) → each task's
  ``ipAddresses[0].ipAddress`` with the first discovery port's ``number``;
- any other app → each task's ``host`` with its ``ports[0]``;
- tasks without what their case needs are left out.

With ``useHealthCheck`` a task is kept only when its ``state`` is ``TASK_RUNNING`` and, if the
app defines N health checks, at least N of its ``healthCheckResults`` are ``alive: true`` (a
task with no results yet is left out). An app without health checks keeps its running tasks.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from turnout.api import Address, Path

from .auth import Credentials

TASK_RUNNING = "TASK_RUNNING"


class MarathonError(Exception):
    """Marathon could not be reached or did not answer as expected."""


class UnauthorizedError(MarathonError):
    """Marathon (or the DC/OS login endpoint) answered 401."""


class AppNotFound(MarathonError):
    """``GET /v2/apps/<id>`` answered 404: the app does not exist (any more)."""


# -- answers → values --------------------------------------------------------------------------


def app_id_path(app_id: str) -> Path:
    """``/Prod/Web`` → ``Path('prod', 'web')`` (ids are matched lower-cased, as in Linkerd)."""
    return Path.of(*(label for label in app_id.lower().split("/") if label))


def parse_app_ids(doc: Any) -> frozenset[Path]:
    """The app ids of a ``GET /v2/apps`` answer, as lower-cased paths."""
    apps = doc.get("apps") if isinstance(doc, dict) else None
    if not isinstance(apps, list):
        raise MarathonError("GET /v2/apps: the answer has no 'apps' list")
    out = set()
    for app in apps:
        app_id = app.get("id") if isinstance(app, dict) else None
        if isinstance(app_id, str) and app_id.strip("/"):
            out.add(app_id_path(app_id))
    return frozenset(out)


def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _int_port(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def discovery_port(app: Mapping[str, Any]) -> int | None:
    """The IP-per-task port: ``ipAddress.discovery.ports[0].number``, or None."""
    ip_address = app.get("ipAddress")
    if not isinstance(ip_address, dict):
        return None
    discovery = ip_address.get("discovery")
    if not isinstance(discovery, dict):
        return None
    first = _first(discovery.get("ports"))
    return _int_port(first.get("number")) if isinstance(first, dict) else None


def task_address(task: Mapping[str, Any], ip_port: int | None) -> Address | None:
    """Where ``task`` serves: see the module docstring. None when it does not say."""
    if ip_port is not None:
        first = _first(task.get("ipAddresses"))
        ip = first.get("ipAddress") if isinstance(first, dict) else None
        return Address(ip, ip_port) if isinstance(ip, str) and ip else None
    host = task.get("host")
    port = _int_port(_first(task.get("ports")))
    if isinstance(host, str) and host and port is not None:
        return Address(host, port)
    return None


def task_healthy(task: Mapping[str, Any], health_checks: int) -> bool:
    """Linkerd's ``useHealthCheck`` test (see the module docstring)."""
    if task.get("state") != TASK_RUNNING:
        return False
    if health_checks == 0:
        return True
    results = task.get("healthCheckResults")
    if not isinstance(results, list):
        return False
    alive = sum(1 for r in results if isinstance(r, dict) and r.get("alive") is True)
    return alive >= health_checks


def app_addresses(doc: Any, use_health_check: bool) -> frozenset[Address]:
    """The addresses of a ``GET /v2/apps/<id>?embed=app.tasks`` answer."""
    app = doc.get("app") if isinstance(doc, dict) else None
    if not isinstance(app, dict):
        return frozenset()
    tasks = app.get("tasks")
    if not isinstance(tasks, list):
        return frozenset()
    ip_port = discovery_port(app)
    checks = app.get("healthChecks")
    count = len(checks) if isinstance(checks, list) else 0
    out = set()
    for task in tasks:
        if not isinstance(task, dict):
            continue
        if use_health_check and not task_healthy(task, count):
            continue
        address = task_address(task, ip_port)
        if address is not None:
            out.add(address)
    return frozenset(out)


# -- the client --------------------------------------------------------------------------------


class MarathonApi:
    """An aiohttp client of one Marathon: one ``ClientSession`` (created on first use, inside
    the event loop), closed by :meth:`close`.

    :param base_url: ``http(s)://<host>:<port>`` where the requests go.
    :param uri_prefix: ``/marathon`` when Marathon is served under a path (DC/OS).
    :param host_header: the ``Host`` header to send (None: the URL's).
    :param credentials: what to authenticate with.
    :param ssl_context: for https (None: plain HTTP).
    :param server_hostname: the name to verify the certificate against (TLS ``commonName``).
    :param timeout: seconds for a whole request (connect, send, read the answer).
    :param resolve: when Marathon's address is not fixed (a ``dst`` name such as a ZooKeeper
        leader), awaited before each request for the address to use (``base_url`` is then
        ignored); it raises :class:`LookupError` when there is none.
    :param scheme: ``http`` or ``https``, with ``resolve``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        uri_prefix: str = "",
        host_header: str | None = None,
        credentials: Credentials | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        resolve: Callable[[], Awaitable[Address]] | None = None,
        scheme: str = "http",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.resolve = resolve
        self.scheme = scheme
        self.api_prefix = f"{uri_prefix}/v2"
        self.host_header = host_header
        self.credentials = credentials or Credentials()
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.timeout_seconds = timeout
        self.session: aiohttp.ClientSession | None = None
        #: how many sessions this client opened (one, unless it was closed and used again)
        self.sessions_opened = 0
        self.requests = 0
        self.logins = 0
        self._token: str | None = None
        self._login_lock: asyncio.Lock | None = None

    # -- the two calls ---------------------------------------------------------------------
    async def app_ids(self) -> frozenset[Path]:
        """Every app id (lower-cased paths)."""
        status, doc = await self.get_json(f"{self.api_prefix}/apps")
        if status != 200:
            raise MarathonError(f"GET {self.api_prefix}/apps: {_status_text(status, doc)}")
        return parse_app_ids(doc)

    async def app(self, app_id: Path) -> Any:
        """``GET /v2/apps/<id>?embed=app.tasks``; :class:`AppNotFound` on 404."""
        path = f"{self.api_prefix}/apps/" + "/".join(quote(x, safe="") for x in app_id.labels())
        status, doc = await self.get_json(path, {"embed": "app.tasks"})
        if status == 404:
            raise AppNotFound(f"GET {path}: {_status_text(status, doc)}")
        if status != 200:
            raise MarathonError(f"GET {path}: {_status_text(status, doc)}")
        return doc

    # -- HTTP ------------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=16, ssl=self.ssl_context or False),
                headers={"Accept": "application/json"},
            )
            self.sessions_opened += 1
        return self.session

    def _headers(self) -> dict[str, str]:
        headers = {}
        if self.host_header:
            headers["Host"] = self.host_header
        if self.credentials.basic is not None:
            headers["Authorization"] = self.credentials.basic
        elif self._token is not None:
            headers["Authorization"] = f"token={self._token}"
        return headers

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """GET ``path``: (status, parsed JSON body or None). Raises :class:`MarathonError` when
        Marathon cannot be reached, times out or sends something that is not JSON."""
        if self.credentials.account is not None and self._token is None:
            await self._login()
        status, doc = await self._get(path, params)
        if status == 401 and self.credentials.account is not None:
            # the token may have expired: log in again and retry once
            await self._login(stale=self._token)
            status, doc = await self._get(path, params)
        if status == 401:
            raise UnauthorizedError(f"GET {path}: {_status_text(status, doc)}")
        return status, doc

    async def current_base_url(self) -> str:
        """Where requests go now: ``base_url``, or the address ``resolve`` gives."""
        if self.resolve is None:
            return self.base_url
        try:
            address = await self.resolve()
        except LookupError as e:
            raise MarathonError(str(e)) from None
        return f"{self.scheme}://{address}"

    async def _get(self, path: str, params: Mapping[str, str] | None) -> tuple[int, Any]:
        url = await self.current_base_url() + path
        self.requests += 1
        try:
            async with self._session().get(
                url,
                params=params,
                headers=self._headers(),
                server_hostname=self.server_hostname,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            raise MarathonError(f"GET {path}: no answer within {self.timeout_seconds:g}s") from None
        except aiohttp.ClientError as e:
            raise MarathonError(f"GET {path}: {str(e) or type(e).__name__}") from None
        return status, _json_or_none(body, status, path)

    async def _login(self, stale: str | None = None) -> None:
        """Get a DC/OS token (one login at a time; a request that waited for another's login
        uses its token)."""
        account = self.credentials.account
        assert account is not None
        if self._login_lock is None:
            self._login_lock = asyncio.Lock()
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return
            self._token = None
            endpoint = account.login_endpoint
            self.logins += 1
            try:
                async with self._session().post(
                    endpoint,
                    data=json.dumps(account.login_body()),
                    headers={"Content-Type": "application/json"},
                    server_hostname=self.server_hostname,
                ) as response:
                    body = await response.read()
                    status = response.status
            except TimeoutError:
                raise MarathonError(
                    f"POST {endpoint}: no answer within {self.timeout_seconds:g}s"
                ) from None
            except aiohttp.ClientError as e:
                raise MarathonError(f"POST {endpoint}: {str(e) or type(e).__name__}") from None
            doc = _json_or_none(body, status, endpoint)
            if status == 401:
                raise UnauthorizedError(f"POST {endpoint}: {_status_text(status, doc)}")
            if status != 200:
                raise MarathonError(f"POST {endpoint}: {_status_text(status, doc)}")
            token = doc.get("token") if isinstance(doc, dict) else None
            if not isinstance(token, str) or not token:
                raise MarathonError(f"POST {endpoint}: the answer has no token")
            self._token = token

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()


def _json_or_none(body: bytes, status: int, what: str) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        if status == 200:
            raise MarathonError(f"{what}: the answer is not JSON") from None
        return body.decode("utf-8", "replace")[:200]


def _status_text(status: int, doc: Any) -> str:
    """``HTTP 503: <Marathon's message>``."""
    message: Any = doc
    if isinstance(doc, dict):
        message = doc.get("message") or doc.get("title") or doc.get("description") or ""
    message = str(message or "").strip()
    return f"HTTP {status}" + (f": {message}" if message else "")
