"""A Marathon REST API double for tests: Marathon needs Mesos, which cannot run here.

Written from Marathon's REST API and event-bus documentation and from what Linkerd 1's
``io.l5d.marathon`` namer and the ``marathon`` Python client call. It serves, on 127.0.0.1,
from its own thread and event loop:

- ``GET /v2/apps[?id=&label=&cmd=&embed=apps.tasks]`` → ``{"apps": [app...]}``
- ``GET /v2/apps/<id>[?embed=app.tasks]`` → ``{"app": {...}}`` (ids are hierarchical:
  ``/prod/web``), or 404 ``{"message": "App '/x' does not exist"}``
- ``GET /v2/apps/<id>/tasks`` and ``GET /v2/tasks`` → ``{"tasks": [task...]}``
- ``GET /v2/events[?event_type=...]`` (``Accept: text/event-stream``) → server-sent events:
  ``event_stream_attached`` first, then ``status_update_event``, ``health_status_changed_event``,
  ``app_terminated_event`` and ``api_post_event`` as the tests change things, and a blank-line
  keep-alive every ``keepalive`` seconds
- ``GET /ping`` → ``pong``; ``GET /v2/info``
- optionally all of it under a ``uri_prefix`` (DC/OS serves Marathon at ``/marathon``), behind
  HTTP basic auth (``basic_auth=(user, password)``: 401 without it), or behind DC/OS
  service-account auth (``dcos_public_key=PEM``: ``POST /acs/api/v1/auth/login`` with
  ``{"uid", "token": <RS256 JWT>}`` issues a token, then ``Authorization: token=<token>``;
  verifying the JWT needs PyJWT with ``cryptography``, imported only then: the plugin's
  ``dcos`` extra)

A task is ``{id, appId, host, ports, servicePorts, ipAddresses, state, slaveId, stagedAt,
startedAt, version, healthCheckResults}``; an app carries ``healthChecks`` (one per check the
test asked for) and, for IP-per-task apps, ``ipAddress.discovery.ports``.

Test controls (plain methods, callable from any thread): :meth:`MarathonDouble.add_app`,
:meth:`~MarathonDouble.add_task`, :meth:`~MarathonDouble.kill_task`,
:meth:`~MarathonDouble.set_health`, :meth:`~MarathonDouble.set_task_state`,
:meth:`~MarathonDouble.remove_app`, :meth:`~MarathonDouble.fail` (answer 5xx),
:meth:`~MarathonDouble.delay`, :meth:`~MarathonDouble.stop` / :meth:`~MarathonDouble.start`
(refused while stopped; the state survives a restart on the same port, as Marathon's state
survives in ZooKeeper) and :meth:`~MarathonDouble.expire_tokens`. Every API request is
recorded in :attr:`~MarathonDouble.calls`.

It does not reproduce deployments, groups (``/v2/groups``), pods, queues, leader election,
scaling by ``instances`` (tasks exist only when a test adds them) or writes through the API.

It ships with the io.l5d.marathon namer (``from turnout_namer_marathon.testing import
MarathonDouble``), so that users of the plugin can test their own configurations against it.
Run it by hand with ``python -m turnout_namer_marathon.testing --port 8080``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import itertools
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from turnout.api import Address
from turnout.testing.loop import LoopThread
from turnout.testing.net import LOCALHOST, free_port

TASK_RUNNING = "TASK_RUNNING"
TASK_KILLED = "TASK_KILLED"
LOGIN_PATH = "/acs/api/v1/auth/login"

_ids = itertools.count(1)


def _now() -> str:
    """Marathon's timestamp format: ``2017-03-01T10:11:12.123Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def normalize_id(app_id: str) -> str:
    """``prod/web/`` → ``/prod/web`` (Marathon ids are absolute paths)."""
    return "/" + "/".join(p for p in app_id.split("/") if p)


@dataclass
class DoubleTask:
    """One task of an app (see the module docstring for its JSON form)."""

    id: str
    app_id: str
    host: str
    ports: list[int]
    ip_addresses: list[str]
    state: str
    #: one ``alive`` flag per health check result (empty: no result yet)
    alive: list[bool]
    version: str
    staged_at: str = field(default_factory=_now)
    started_at: str = field(default_factory=_now)
    slave_id: str = "agent-1"

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "appId": self.app_id,
            "host": self.host,
            "ports": list(self.ports),
            "servicePorts": [10000 + i for i, _ in enumerate(self.ports)],
            "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"} for ip in self.ip_addresses],
            "state": self.state,
            "slaveId": self.slave_id,
            "stagedAt": self.staged_at,
            "startedAt": self.started_at,
            "version": self.version,
            "healthCheckResults": [
                {
                    "alive": alive,
                    "taskId": self.id,
                    "consecutiveFailures": 0 if alive else 1,
                    "firstSuccess": self.started_at,
                    "lastSuccess": self.started_at if alive else None,
                    "lastFailure": None if alive else _now(),
                }
                for alive in self.alive
            ],
        }


@dataclass
class DoubleApp:
    """One app: its definition and its tasks."""

    id: str
    health_checks: int = 0
    ip_per_task_port: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cmd: str = "sleep 1000"
    version: str = field(default_factory=_now)
    tasks: dict[str, DoubleTask] = field(default_factory=dict)

    def json(self, *, embed_tasks: bool) -> dict[str, Any]:
        tasks = list(self.tasks.values())
        running = [t for t in tasks if t.state == TASK_RUNNING]
        healthy = [t for t in running if self.health_checks and _healthy(t, self.health_checks)]
        out: dict[str, Any] = {
            "id": self.id,
            "cmd": self.cmd,
            "instances": len(tasks),
            "cpus": 0.1,
            "mem": 64.0,
            "disk": 0.0,
            "labels": dict(self.labels),
            "healthChecks": [
                {
                    "protocol": "MESOS_HTTP",
                    "path": "/health",
                    "portIndex": 0,
                    "gracePeriodSeconds": 300,
                    "intervalSeconds": 10,
                    "timeoutSeconds": 20,
                    "maxConsecutiveFailures": 3,
                }
                for _ in range(self.health_checks)
            ],
            "portDefinitions": (
                []
                if self.ip_per_task_port is not None
                else [{"port": 10000, "protocol": "tcp", "name": "http", "labels": {}}]
            ),
            "version": self.version,
            "tasksRunning": len(running),
            "tasksStaged": sum(1 for t in tasks if t.state == "TASK_STAGING"),
            "tasksHealthy": len(healthy),
            "tasksUnhealthy": len(running) - len(healthy) if self.health_checks else 0,
        }
        if self.ip_per_task_port is not None:
            out["ipAddress"] = {
                "groups": [],
                "labels": {},
                "networkName": "dcos",
                "discovery": {
                    "ports": [{"number": self.ip_per_task_port, "name": "http", "protocol": "tcp"}]
                },
            }
        if embed_tasks:
            out["tasks"] = [t.json() for t in tasks]
        return out


def _healthy(task: DoubleTask, checks: int) -> bool:
    return len(task.alive) >= checks and all(task.alive)


@dataclass(frozen=True)
class Call:
    """One API request the double received."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    status: int


class MarathonDouble:
    """The Marathon API double (see the module docstring). Use as a context manager, or call
    :meth:`start` and :meth:`stop`.

    :param port: the port (a free one by default); kept across :meth:`stop` / :meth:`start`.
    :param uri_prefix: serve the API under this path (``/marathon``); ``""`` for the root.
    :param basic_auth: ``(user, password)`` required on every API request.
    :param dcos_public_key: PEM public key of the DC/OS service account: requests then need a
        token from ``POST /acs/api/v1/auth/login``.
    :param keepalive: seconds between blank-line keep-alives on event streams.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        uri_prefix: str = "",
        basic_auth: tuple[str, str] | None = None,
        dcos_public_key: str | bytes | None = None,
        dcos_uid: str | None = None,
        keepalive: float = 1.0,
        ssl_context: Any = None,
    ) -> None:
        self.host = LOCALHOST
        self.port = port or free_port()
        self.uri_prefix = "/" + uri_prefix.strip("/") if uri_prefix.strip("/") else ""
        self.basic_auth = basic_auth
        self.dcos_public_key = dcos_public_key
        self.dcos_uid = dcos_uid
        self.keepalive = keepalive
        self.ssl_context = ssl_context
        self.apps: dict[str, DoubleApp] = {}
        self._calls: collections.deque[Call] = collections.deque(maxlen=100_000)
        #: DC/OS tokens issued by the login endpoint and still valid
        self.tokens: set[str] = set()
        self.logins = 0
        self._lock = threading.RLock()
        self._fail_status: int | None = None
        self._fail_count: int | None = None
        self._delay = 0.0
        self._loops = LoopThread(f"marathon-{self.port}")
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = set()

    # -- addresses -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The API's base URL, with the URI prefix (``http://127.0.0.1:<port>/marathon``)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{self.uri_prefix}"

    @property
    def login_url(self) -> str:
        """The DC/OS login endpoint (for ``login_endpoint`` in a service-account secret)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{LOGIN_PATH}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def calls(self) -> list[Call]:
        """Every API request received (the last 100,000), oldest first."""
        with self._lock:
            return list(self._calls)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loops.loop

    def start(self, timeout: float = 10.0) -> MarathonDouble:
        """Serve (again) on :attr:`port`; returns when it accepts connections."""
        if self._runner is not None:
            return self
        self._loops.start(timeout)
        self._call(self._serve(), timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: open connections (event streams too) are closed and new ones are
        refused until :meth:`start`. The apps and tasks are kept."""
        if self._runner is not None and self._loop is not None:
            self._call(self._unserve(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving and end the double's thread (idempotent)."""
        self.stop(timeout)
        self._loops.close(timeout)

    def __enter__(self) -> MarathonDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Any, timeout: float) -> Any:
        return self._loops.call(coro, timeout)

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        p = self.uri_prefix
        app.router.add_get(f"{p}/ping", self._ping)
        app.router.add_get(f"{p}/v2/info", self._info)
        app.router.add_get(f"{p}/v2/apps", self._list_apps)
        app.router.add_get(f"{p}/v2/apps/{{id:.+}}/tasks", self._app_tasks)
        app.router.add_get(f"{p}/v2/apps/{{id:.+}}", self._get_app)
        app.router.add_get(f"{p}/v2/tasks", self._tasks)
        app.router.add_get(f"{p}/v2/events", self._events)
        app.router.add_post(LOGIN_PATH, self._login)
        runner = web.AppRunner(
            app, shutdown_timeout=0.2, handler_cancellation=True, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.host,
            self.port,
            reuse_address=True,
            ssl_context=self.ssl_context,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def _unserve(self) -> None:
        runner, self._runner = self._runner, None
        for queue in list(self._streams):
            queue.put_nowait(None)  # end every event stream
        if runner is not None:
            await runner.cleanup()

    # -- test controls ---------------------------------------------------------------------
    def add_app(
        self,
        app_id: str,
        *,
        health_checks: int = 0,
        ip_per_task_port: int | None = None,
        labels: Mapping[str, str] | None = None,
        cmd: str = "sleep 1000",
    ) -> str:
        """Create (or redefine, keeping its tasks) an app; returns its normalized id."""
        app_id = normalize_id(app_id)
        with self._lock:
            old = self.apps.get(app_id)
            self.apps[app_id] = DoubleApp(
                app_id,
                health_checks=health_checks,
                ip_per_task_port=ip_per_task_port,
                labels=dict(labels or {}),
                cmd=cmd,
                tasks=old.tasks if old else {},
            )
        self._publish(
            "api_post_event",
            {"clientIp": LOCALHOST, "uri": f"/v2/apps{app_id}", "appDefinition": {"id": app_id}},
        )
        return app_id

    def remove_app(self, app_id: str) -> None:
        """Delete an app and its tasks (``app_terminated_event``)."""
        app_id = normalize_id(app_id)
        with self._lock:
            app = self.apps.pop(app_id)
        for task in app.tasks.values():
            self._status_event(task, TASK_KILLED)
        self._publish("app_terminated_event", {"appId": app_id})

    def add_task(
        self,
        app_id: str,
        host: str = LOCALHOST,
        ports: int | Sequence[int] = (),
        *,
        ip_address: str | None = None,
        state: str = TASK_RUNNING,
        alive: bool | Sequence[bool] | None = None,
        task_id: str | None = None,
    ) -> str:
        """Add a task to an app (created if missing); returns the task id.

        ``alive``: None gives one result per health check of the app, all alive; a bool gives
        that for each; a list gives exactly those results (``[]``: no result yet).
        """
        app_id = normalize_id(app_id)
        with self._lock:
            app = self.apps.get(app_id)
            if app is None:
                self.add_app(app_id)
                app = self.apps[app_id]
            if alive is None:
                results = [True] * app.health_checks
            elif isinstance(alive, bool):
                results = [alive] * app.health_checks
            else:
                results = list(alive)
            tid = task_id or f"{app_id.strip('/').replace('/', '_')}.{next(_ids):08d}"
            task = DoubleTask(
                id=tid,
                app_id=app_id,
                host=host,
                ports=[ports] if isinstance(ports, int) else list(ports),
                ip_addresses=[ip_address] if ip_address else [],
                state=state,
                alive=results,
                version=app.version,
            )
            app.tasks[tid] = task
        self._status_event(task, state)
        return tid

    def set_tasks(self, app_id: str, addresses: Iterable[tuple[str, int]]) -> list[str]:
        """Replace an app's tasks by one running task per ``(host, port)``; returns their ids."""
        app_id = normalize_id(app_id)
        with self._lock:
            app = self.apps.get(app_id)
            old = list(app.tasks) if app else []
        for tid in old:
            self.kill_task(tid)
        return [self.add_task(app_id, host, port) for host, port in addresses]

    def find_task(self, task_id: str) -> DoubleTask:
        with self._lock:
            for app in self.apps.values():
                if task_id in app.tasks:
                    return app.tasks[task_id]
        raise KeyError(task_id)

    def kill_task(self, task_id: str) -> None:
        """Remove a task (``status_update_event`` TASK_KILLED)."""
        with self._lock:
            task = self.find_task(task_id)
            del self.apps[task.app_id].tasks[task_id]
        self._status_event(task, TASK_KILLED)

    def set_task_state(self, task_id: str, state: str) -> None:
        """Change a task's Mesos state (``TASK_STAGING``, ``TASK_KILLING``...)."""
        with self._lock:
            task = self.find_task(task_id)
            task.state = state
        self._status_event(task, state)

    def set_health(self, task_id: str, alive: bool | Sequence[bool]) -> None:
        """Set a task's health check results (``health_status_changed_event``)."""
        with self._lock:
            task = self.find_task(task_id)
            checks = max(self.apps[task.app_id].health_checks, 1)
            task.alive = [alive] * checks if isinstance(alive, bool) else list(alive)
            now_alive = bool(task.alive) and all(task.alive)
        self._publish(
            "health_status_changed_event",
            {"appId": task.app_id, "taskId": task.id, "instanceId": task.id, "alive": now_alive},
        )

    def fail(self, status: int | None = 503, count: int | None = None) -> None:
        """Answer API requests with ``status`` (``{"message": ...}``), for the next ``count``
        requests or until ``fail(None)``."""
        with self._lock:
            self._fail_status = status
            self._fail_count = count

    def delay(self, seconds: float) -> None:
        """Wait this long before answering each API request (0: no delay)."""
        with self._lock:
            self._delay = seconds

    def expire_tokens(self) -> None:
        """Forget every DC/OS token issued: the next request with one gets 401."""
        with self._lock:
            self.tokens.clear()

    def count(self, path: str = "", method: str = "GET") -> int:
        """API requests received whose path (without the URI prefix) starts with ``path``."""
        return sum(1 for c in self.calls if c.method == method and c.path.startswith(path))

    # -- events ----------------------------------------------------------------------------
    def _status_event(self, task: DoubleTask, status: str) -> None:
        self._publish(
            "status_update_event",
            {
                "slaveId": task.slave_id,
                "taskId": task.id,
                "taskStatus": status,
                "message": "",
                "appId": task.app_id,
                "host": task.host,
                "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"} for ip in task.ip_addresses],
                "ports": list(task.ports),
                "version": task.version,
            },
        )

    def _publish(self, event_type: str, data: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None or self._runner is None:
            return
        event = {"eventType": event_type, "timestamp": _now(), **data}

        def deliver() -> None:
            for queue in list(self._streams):
                queue.put_nowait((event_type, event))

        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(deliver)

    # -- HTTP ------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        path = request.path
        if self.uri_prefix and path.startswith(self.uri_prefix):
            path = path[len(self.uri_prefix) :]
        headers = dict(request.headers.items())
        status = 200
        try:
            if request.path == LOGIN_PATH:
                response = await handler(request)
            else:
                with self._lock:
                    delay = self._delay
                    fail = self._fail_status
                    if fail is not None and self._fail_count is not None:
                        self._fail_count -= 1
                        if self._fail_count <= 0:
                            self._fail_status = self._fail_count = None
                if delay:
                    await asyncio.sleep(delay)
                denied = self._authorize(request)
                if denied is not None:
                    response = denied
                elif fail is not None:
                    response = web.json_response(
                        {"message": f"injected failure {fail}"}, status=fail
                    )
                else:
                    response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            with self._lock:
                self._calls.append(
                    Call(request.method, path, request.query_string, headers, status)
                )

    def _authorize(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if self.dcos_public_key is not None:
            scheme, _, token = header.partition("=")
            with self._lock:
                ok = scheme.strip().lower() == "token" and token in self.tokens
            if ok:
                return None
            return web.json_response(
                {"title": "Unauthorized", "description": "missing or invalid token"},
                status=401,
                headers={"WWW-Authenticate": "acsjwt"},
            )
        if self.basic_auth is not None:
            scheme, _, encoded = header.partition(" ")
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            if scheme.lower() != "basic" or (user, password) != self.basic_auth:
                return web.json_response(
                    {"message": "Unauthorized"},
                    status=401,
                    headers={"WWW-Authenticate": 'Basic realm="Marathon"'},
                )
        return None

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong", headers={"Cache-Control": "must-revalidate"})

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": "marathon",
                "version": "1.6.322",
                "buildref": "double",
                "elected": True,
                "leader": f"{self.host}:{self.port}",
                "frameworkId": "double-0000",
                "http_config": {"http_port": self.port, "https_port": 8443},
                "marathon_config": {
                    "checkpoint": True,
                    "framework_name": "marathon",
                    "ha": True,
                    "hostname": self.host,
                    "master": "zk://127.0.0.1:2181/mesos",
                    "task_launch_timeout": 300000,
                },
                "zookeeper_config": {
                    "zk": "zk://127.0.0.1:2181/marathon",
                    "zk_session_timeout": 10000,
                    "zk_timeout": 10000,
                },
                "event_subscriber": None,
            }
        )

    @staticmethod
    def _embeds(request: web.Request) -> set[str]:
        out: set[str] = set()
        for value in request.query.getall("embed", []):
            out.update(v.strip() for v in value.split(","))
        return out

    async def _list_apps(self, request: web.Request) -> web.Response:
        embed = self._embeds(request) & {"apps.tasks", "app.tasks"}
        id_filter = request.query.get("id", "").lower()
        cmd_filter = request.query.get("cmd", "")
        selector = _label_selector(request.query.get("label", ""))
        with self._lock:
            apps = [
                a.json(embed_tasks=bool(embed))
                for a in sorted(self.apps.values(), key=lambda a: a.id)
                if id_filter in a.id.lower()
                and cmd_filter in a.cmd
                and all(test(a.labels) for test in selector)
            ]
        return web.json_response({"apps": apps})

    def _app(self, request: web.Request) -> DoubleApp:
        app_id = normalize_id(request.match_info["id"])
        app = self.apps.get(app_id)
        if app is None:
            raise web.HTTPNotFound(
                text=json.dumps({"message": f"App '{app_id}' does not exist"}),
                content_type="application/json",
            )
        return app

    async def _get_app(self, request: web.Request) -> web.Response:
        embed = self._embeds(request) & {"app.tasks", "apps.tasks"}
        with self._lock:
            app = self._app(request).json(embed_tasks=bool(embed))
        return web.json_response({"app": app})

    async def _app_tasks(self, request: web.Request) -> web.Response:
        with self._lock:
            tasks = [t.json() for t in self._app(request).tasks.values()]
        return web.json_response({"tasks": tasks})

    async def _tasks(self, request: web.Request) -> web.Response:
        status = {s.strip().lower() for s in request.query.getall("status", [])}
        with self._lock:
            tasks = [
                t.json()
                for a in sorted(self.apps.values(), key=lambda a: a.id)
                for t in a.tasks.values()
                if not status or t.state.removeprefix("TASK_").lower() in status
            ]
        return web.json_response({"tasks": tasks})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if "text/event-stream" not in request.headers.get("Accept", ""):
            return web.json_response(
                {"message": "the event stream needs Accept: text/event-stream"}, status=406
            )
        wanted = set(request.query.getall("event_type", []))
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        self._streams.add(queue)
        remote = request.remote or LOCALHOST
        queue.put_nowait(
            (
                "event_stream_attached",
                {
                    "eventType": "event_stream_attached",
                    "timestamp": _now(),
                    "remoteAddress": remote,
                },
            )
        )
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.keepalive)
                except TimeoutError:
                    await response.write(b"\r\n")
                    continue
                if item is None:
                    break
                event_type, data = item
                if wanted and event_type not in wanted:
                    continue
                frame = f"event: {event_type}\r\ndata: {json.dumps(data)}\r\n\r\n"
                await response.write(frame.encode())
        except ConnectionError:
            pass  # the client went away
        finally:
            self._streams.discard(queue)
        return response

    async def _login(self, request: web.Request) -> web.Response:
        if self.dcos_public_key is None:
            raise web.HTTPNotFound()
        try:
            body = await request.json()
            uid, token = body["uid"], body["token"]
            import jwt  # PyJWT, only needed by tests of DC/OS service-account auth

            claims = jwt.decode(token, self.dcos_public_key, algorithms=["RS256"])
            valid = claims.get("uid") == uid and (self.dcos_uid is None or uid == self.dcos_uid)
        except Exception:
            valid = False
        if not valid:
            return web.json_response(
                {
                    "title": "Invalid authentication credentials",
                    "description": "The service account's login token is not valid.",
                    "code": "ERR_INVALID_CREDENTIALS",
                },
                status=401,
            )
        issued = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens.add(issued)
            self.logins += 1
        return web.json_response({"token": issued})


def _label_selector(text: str) -> list[Callable[[Mapping[str, Any]], bool]]:
    """Marathon's ``label`` query: ``key``, ``key==value``, ``key!=value``, comma-separated."""

    def differs(k: str, v: str) -> Callable[[Mapping[str, Any]], bool]:
        return lambda labels: labels.get(k) != v

    def equals(k: str, v: str) -> Callable[[Mapping[str, Any]], bool]:
        return lambda labels: labels.get(k) == v

    def has(k: str) -> Callable[[Mapping[str, Any]], bool]:
        return lambda labels: k in labels

    tests: list[Callable[[Mapping[str, Any]], bool]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            k, v = (s.strip() for s in part.split("!=", 1))
            tests.append(differs(k, v))
        elif "==" in part:
            k, v = (s.strip() for s in part.split("==", 1))
            tests.append(equals(k, v))
        else:
            tests.append(has(part))
    return tests


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a double with one app (``--app /web --task 127.0.0.1:8080``) until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--uri-prefix", default="")
    parser.add_argument("--app", default="/web")
    parser.add_argument("--task", action="append", default=[], help="host:port of a task")
    args = parser.parse_args(argv)
    with MarathonDouble(port=args.port, uri_prefix=args.uri_prefix) as double:
        double.add_app(args.app)
        for task in args.task:
            address = Address.parse(task)
            double.add_task(args.app, address.host, address.port)
        print(f"Marathon double on {double.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
