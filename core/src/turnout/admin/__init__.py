"""The admin server: health, metrics, config, delegation and control endpoints.

It runs on its own listener (``admin.ip``/``admin.port``, loopback:9990 by default) on the
same event loop as the routers; handlers only read state the data path already keeps.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
from typing import TYPE_CHECKING, Any

from ..admin_routes import AdminRoute, category
from ..errors import BindingError, ParseError, TurnoutError
from ..naming import Address, ConfiguredNamersInterpreter, Dtab, NameInterpreter, Path, delegate
from .http import IDLE_TIMEOUT, AdminApp, AdminHttpServer, AdminRequest, AdminResponse
from .ui import ui_routes

if TYPE_CHECKING:
    # the linker builds the admin server (importing this module when it starts): its type only
    from ..linker import Linker
    from ..telemetry import Telemeter

log = logging.getLogger("turnout.admin")


def _json(data: Any, status: int = 200, pretty: bool = False) -> AdminResponse:
    text = json.dumps(data, indent=2 if pretty else None, sort_keys=pretty)
    return AdminResponse(text=text, status=status, content_type="application/json")


class AdminGate:
    """``admin.security``: which paths are served (categories and path lists, Linkerd's
    SecurityFilter) and which state-changing requests are refused as cross-site. One per admin
    server: a linker's and the supervisor's of ``workers: N``."""

    def __init__(self, config: Any, categories: dict[str, str] | None = None) -> None:
        self.config = config
        #: the declared security category of each route path
        self.categories: dict[str, str] = dict(categories or {})
        sec = config.security
        self.allow = [re.compile(p) for p in sec.path_whitelist]
        self.deny = [re.compile(p) for p in sec.path_blacklist]
        #: host names a browser may use for a state-changing request (see cross_site)
        self.own_names = {"localhost", socket.gethostname().lower(), config.ip.lower()}

    def allowed(self, path: str, declared: str | None = None) -> bool:
        """Whether ``admin.security`` lets ``path`` be served: its category (``declared``,
        else the route's, else Linkerd's rules) enabled and the path not blacklisted, or
        the category disabled and the path whitelisted."""
        sec = self.config.security
        cat = declared or self.categories.get(path) or category(path)
        enabled = {"ui": sec.ui_enabled, "control": sec.control_enabled}.get(
            cat, sec.diagnostics_enabled
        )
        # Linkerd's SecurityFilter: a pattern must match the whole path
        return (enabled and not any(p.fullmatch(path) for p in self.deny)) or (
            not enabled and any(p.fullmatch(path) for p in self.allow)
        )

    def cross_site(self, request: AdminRequest) -> str | None:
        """Why a state-changing request must be refused as coming from another site (a
        page that posts to the admin, or a DNS-rebinding one), or None.

        Browsers say where a request comes from (``Sec-Fetch-Site``, ``Origin``); clients that
        are not browsers (curl, scripts) send neither and are not affected. A browser request
        must come from the admin's own origin, reached by an address that DNS cannot rebind:
        an IP literal, ``localhost``, this machine's name, or the configured ``admin.ip``.
        """
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return f"a {site} request"
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        host = request.host.lower()
        if origin.lower() != f"http://{host}":
            return f"origin {origin} is not this admin server (http://{host})"
        try:  # the Host header: host, host:port, [v6] or [v6]:port
            name = Address.parse(host, default_port=80).host
        except ValueError:
            return f"the admin was reached as {host!r}, which is not a host name"
        if name not in self.own_names and not _ip_literal(name):
            return f"the admin was reached as {name!r}, a name that is not this machine's"
        return None

    def check(self, request: AdminRequest, declared: str | None) -> AdminResponse | None:
        """The answer to send instead of serving ``request`` (its path's category
        ``declared``, else Linkerd's): 404 when ``admin.security`` hides the path, 403 for a
        cross-site state-changing request; None to serve it."""
        if not self.allowed(request.path, declared):
            return AdminResponse(status=404, text="404: Not Found")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            refused = self.cross_site(request)
            if refused is not None:
                log.warning("refused %s %s: %s", request.method, request.path, refused)
                return AdminResponse(status=403, text=f"cross-site request refused: {refused}\n")
        return None


class AdminServer:
    """Serves the admin endpoints of one :class:`~turnout.linker.Linker`."""

    def __init__(self, linker: Linker) -> None:
        self.linker = linker
        self.config = linker.config.admin
        self.app = AdminApp(before=self._security)
        self.http: AdminHttpServer | None = None
        self.tls_watcher: Any = None  # (a turnout.tls.FileWatcher with admin.tls)
        self.port: int | None = None
        added = [
            route
            for extra in linker.plugins.hook.turnout_admin_routes(linker=linker)
            for route in (extra or ())
        ]
        # a plugin's route replaces a built-in one of the same method and path (namerd's
        # admin serves its own page at "/")
        replaced = {(r.method, r.path) for r in added}
        self.routes: list[AdminRoute] = [
            r for r in self._builtin_routes() if (r.method, r.path) not in replaced
        ]
        self.routes.extend(added)
        self.gate = AdminGate(self.config)
        for route in self.routes:
            self.app.add_route(route.method, route.path, route.handler)
            self.gate.categories.setdefault(route.path, route.category)
        #: the routes each telemeter added (by id), removed with it by a reload
        self._telemeter_routes: dict[int, list[AdminRoute]] = {}
        for telemeter in linker.telemeters:
            self.add_telemeter(telemeter)

    def _builtin_routes(self) -> list[AdminRoute]:
        r = AdminRoute
        return [
            r("GET", "/admin", self.index, "diagnostics"),
            r("GET", "/admin/ping", self.ping, "diagnostics"),
            r("GET", "/admin/live", self.live, "diagnostics"),
            r("GET", "/admin/ready", self.ready_handler, "diagnostics"),
            r("GET", "/admin/metrics.json", self.metrics_json, "ui"),
            r("GET", "/metrics.json", self.metrics_json, "ui"),
            r("GET", "/admin/metrics/raw.json", self.metrics_raw, "ui"),
            r("GET", "/config.json", self.config_json, "ui"),
            r("GET", "/delegator.json", self.delegator_json, "ui"),
            r("POST", "/delegator.json", self.delegator_json, "ui"),
            r("GET", "/client_state.json", self.client_state, "diagnostics"),
            r("GET", "/bound-names.json", self.bound_names, "diagnostics"),
            r("GET", "/admin/announcer.json", self.announcer_json, "diagnostics"),
            r("GET", "/namer_state/{prefix:.*}.json", self.namer_state, "diagnostics"),
            r("POST", "/admin/shutdown", self.shutdown, "control"),
            r("POST", "/admin/reload", self.reload, "control"),
            r("GET", "/admin/reload", self.method_not_allowed, "control"),
            r("GET", "/admin/config/status", self.config_status, "ui"),
            r("GET", "/admin/shutdown", self.method_not_allowed, "control"),
            r("GET", "/logging.json", self.logging_json, "control"),
            r("POST", "/logging.json", self.logging_json, "control"),
            r("GET", "/admin/index.txt", self.index, "diagnostics"),
            *ui_routes(self),
        ]

    # -- lifecycle -------------------------------------------------------------------------
    def add_telemeter(self, telemeter: Telemeter) -> None:
        """Serve ``telemeter``'s admin routes (at start-up, or when a reload adds it)."""
        routes = list(telemeter.admin_routes())
        self._telemeter_routes[id(telemeter)] = routes
        for route in routes:
            self.routes.append(route)
            self.app.add_route(route.method, route.path, route.handler)
            self.gate.categories.setdefault(route.path, route.category)

    def remove_telemeter(self, telemeter: Telemeter) -> None:
        """Stop serving the routes ``telemeter`` added (a reload removed or changed it)."""
        routes = self._telemeter_routes.pop(id(telemeter), [])
        ids = {id(r) for r in routes}
        self.routes = [r for r in self.routes if id(r) not in ids]
        self.app.remove_routes({id(r.handler) for r in routes})
        self.gate.categories = {}
        for route in self.routes:
            self.gate.categories.setdefault(route.path, route.category)

    async def start(self) -> None:
        ssl_context = None
        if self.config.tls is not None:
            ssl_context, self.tls_watcher = admin_tls(self.config.tls, self.linker.metrics)
        opts = self.config.socket_options
        if opts is None:
            self.http = AdminHttpServer(self.app)
            self.port = await self.http.start(self.config.ip, self.config.port, ssl_context)
            return
        idle = opts.read_timeout_ms / 1000 if opts.read_timeout_ms else IDLE_TIMEOUT
        write = opts.write_timeout_ms / 1000 if opts.write_timeout_ms else None
        self.http = AdminHttpServer(self.app, idle_timeout=idle, write_timeout=write)
        self.port = await self.http.start(
            self.config.ip,
            self.config.port,
            ssl_context,
            reuse_port=opts.reuse_port,
            backlog=opts.backlog or 100,
            no_delay=opts.no_delay,
            keep_alive=opts.keep_alive,
        )

    async def close(self) -> None:
        if self.tls_watcher is not None:
            self.tls_watcher.stop()
            self.tls_watcher = None
        if self.http is not None:
            await self.http.close()
            self.http = None

    # -- security (admin.security: see AdminGate) ------------------------------------------
    def allowed(self, path: str, declared: str | None = None) -> bool:
        return self.gate.allowed(path, declared)

    def _security(self, request: AdminRequest, route_path: str | None) -> AdminResponse | None:
        # a route's declared category (plugins and telemeters choose theirs); Linkerd's rules
        # for everything else
        canonical = route_path if route_path is not None else request.path
        return self.gate.check(request, self.gate.categories.get(canonical))

    # -- handlers --------------------------------------------------------------------------
    async def index(self, request: AdminRequest) -> AdminResponse:
        paths = sorted({r.path for r in self.routes})
        return AdminResponse(text="\n".join(paths) + "\n")

    async def ping(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse(text="pong")

    async def live(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse(text="ok")

    async def ready_handler(self, request: AdminRequest) -> AdminResponse:
        if self.linker.ready and not self.linker.draining:
            return AdminResponse(text="ready")
        return AdminResponse(text="draining" if self.linker.draining else "starting", status=503)

    async def method_not_allowed(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse(text="use POST\n", status=405, headers={"Allow": "POST"})

    async def metrics_json(self, request: AdminRequest) -> AdminResponse:
        q = request.query.get("q", "").strip("/")
        prefix = tuple(q.split("/")) if q else ()
        pretty = request.query.get("pretty") in ("1", "true")
        tree = request.query.get("tree") in ("1", "true")
        data = self.linker.metrics.tree(prefix) if tree else self.linker.metrics.flat(prefix)
        if prefix and not data:
            return _json({"error": f"No such subtree: {q}"}, status=404)
        return _json(data, pretty=pretty)

    async def metrics_raw(self, request: AdminRequest) -> AdminResponse:
        """Every metric with its histogram buckets (``MetricsTree.export_raw``): what the
        supervisor of ``workers: N`` merges into the instance's ``/admin/metrics.json``."""
        return _json(self.linker.metrics.export_raw())

    async def config_json(self, request: AdminRequest) -> AdminResponse:
        return _json(self.linker.config.to_dict(redact=True))

    async def client_state(self, request: AdminRequest) -> AdminResponse:
        out: dict[str, Any] = {}
        for router in self.linker.routers:
            out.update(router.client_state())
        return _json(out)

    async def announcer_json(self, request: AdminRequest) -> AdminResponse:
        """What is announced (Linkerd's ``/admin/announcer``): one entry per announcement."""
        return _json(
            [
                {
                    "router": a.router,
                    "name": a.name.show,
                    "address": f"{a.host}:{a.port}",
                    "announcer": a.scheme,
                    "withdrawn": a.withdrawn,
                    **a.announcement.state(),
                }
                for a in self.linker.announcements
            ]
        )

    async def bound_names(self, request: AdminRequest) -> AdminResponse:
        names: set[str] = set()
        for _, namer in self.linker.namers:
            for path in namer.bound_names() or ():
                names.add(str(path))
        return _json(sorted(names))

    async def namer_state(self, request: AdminRequest) -> AdminResponse:
        prefix = "/" + request.match_info["prefix"].strip("/")
        for namer_prefix, namer in self.linker.namers:
            if str(Path.of("#") + namer_prefix) == prefix or str(namer_prefix) == prefix:
                return _json(namer.state())
        return _json({"error": f"no namer at {prefix}"}, status=404)

    async def reload(self, request: AdminRequest) -> AdminResponse:
        """Reload the config file (see turnout.reload): 200 and the status, or 400 and the
        errors (nothing changed). Cross-site requests were refused by the middleware."""
        status = await self.linker.reloader.reload()
        return _json(status.as_json(), 200 if status.ok else 400)

    async def config_status(self, request: AdminRequest) -> AdminResponse:
        return _json(self.linker.reloader.status.as_json())

    async def shutdown(self, request: AdminRequest) -> AdminResponse:
        # cross-site requests were refused by the security middleware
        grace: float | None = None
        if "grace" in request.query:
            try:
                grace = _duration(request.query["grace"])
            except ValueError:
                return AdminResponse(text="grace must be like 10s or 500ms\n", status=400)
        asyncio.get_running_loop().call_soon(self.linker.request_shutdown, grace)
        return AdminResponse(text="shutting down\n")

    async def logging_json(self, request: AdminRequest) -> AdminResponse:
        """Linkerd's ``/logging.json``: GET lists ``[{"logger", "level"}]`` (root first, then
        every logger with a level of its own); POST ``?logger=<name|root>&level=<LEVEL>``
        changes one (form fields or a JSON object work too)."""
        if request.method == "POST":
            params: dict[str, Any] = dict(request.query)
            if request.content_type == "application/json":
                try:
                    body = json.loads(await request.text() or "{}")
                except ValueError:
                    return AdminResponse(status=400, text="malformed JSON body\n")
                if isinstance(body, dict):
                    params.update(body)
            elif request.can_read_body:
                params.update(await request.post())
            name, level = params.get("logger"), str(params.get("level", "")).upper()
            if not name or not level:
                return AdminResponse(status=400, text="logger and level are required\n")
            level = _LEVEL_ALIASES.get(level, level)
            if level not in _LEVELS:
                known = ", ".join(_LEVELS)
                return AdminResponse(status=400, text=f"unknown level {level!r} (known: {known})\n")
            target = logging.getLogger() if name == "root" else logging.getLogger(str(name))
            target.setLevel(level)
            log.info("log level of %s set to %s", name, level)
        return _json(_loggers())

    async def delegator_json(self, request: AdminRequest) -> AdminResponse:
        read = await read_delegation_request(request)
        if isinstance(read, AdminResponse):
            return read
        params, dtab, path = read
        namespace = params.get("namespace")
        interpreter = self._interpreter(namespace)
        if interpreter is not None and not interpreter.can_delegate:  # it binds elsewhere
            try:
                remote = await interpreter.remote_delegate(dtab, path)
            except ValueError as e:
                return AdminResponse(status=400, text=str(e))
            except Exception as e:
                log.warning("delegating %s through %s failed: %s", path.show, namespace, e)
                return AdminResponse(status=502, text=f"Delegation failed: {e}")
            if remote is not None:
                return _json(remote)
        if interpreter is None or not interpreter.can_delegate:
            return AdminResponse(
                status=501, text=f"Name Interpreter for {namespace} cannot show delegations"
            )
        try:
            tree = await delegate(interpreter, dtab, path, timeout=2.0)
        except TimeoutError:
            return AdminResponse(status=503, text="Request timed out.")
        except BindingError as e:
            return AdminResponse(status=400, text=str(e))
        return _json(tree.to_json())

    def _interpreter(self, namespace: str | None) -> NameInterpreter | None:
        if namespace:
            return self.linker.interpreters.get(namespace)
        return ConfiguredNamersInterpreter([], self.linker.global_namer)


async def read_delegation_request(
    request: AdminRequest,
) -> tuple[dict[str, Any], Dtab, Path] | AdminResponse:
    """A ``/delegator.json`` request (Linkerd's: a POST of a JSON object with ``dtab`` and
    ``path``, or a GET with them in the query): its parameters, dtab and path, or the 4xx
    answer to send."""
    if request.method == "POST":
        if request.content_type != "application/json":
            return AdminResponse(status=415, text="Content-Type must be application/json")
        body = await request.text()
        try:
            params = json.loads(body)
            if not isinstance(params, dict) or "dtab" not in params or "path" not in params:
                raise ValueError
        except ValueError:
            return AdminResponse(status=400, text=f"Malformed delegation request: {body}")
    else:
        params = dict(request.query)
    try:
        dtab = Dtab.read(str(params.get("dtab") or ""))
    except ParseError as e:
        return AdminResponse(status=400, text=f"Invalid dtab: {e}")
    try:
        path = Path.read(str(params.get("path") or ""))
    except ParseError as e:
        return AdminResponse(status=400, text=f"Invalid path: {e}")
    return params, dtab, path


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")
#: the names Linkerd's (twitter-util's) /logging page uses for Python's levels
_LEVEL_ALIASES = {"FATAL": "CRITICAL", "WARN": "WARNING", "TRACE": "DEBUG", "ALL": "DEBUG"}


def _loggers() -> list[dict[str, str]]:
    root = logging.getLogger()
    out = [{"logger": "root", "level": logging.getLevelName(root.level)}]
    manager = logging.Logger.manager
    for name in sorted(manager.loggerDict):
        logger = manager.loggerDict[name]
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            out.append({"logger": name, "level": logging.getLevelName(logger.level)})
    return out


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not m:
        raise ValueError(text)
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


def admin_tls(cfg: Any, metrics: Any) -> tuple[Any, Any]:
    """The SSL context of an admin server with ``admin.tls`` ``cfg``, and the started
    :class:`turnout.tls.FileWatcher` that loads a rotated certificate into it (stop it when the
    server closes). Shared by a linker's admin and the workers' supervisor. Raises
    :class:`TurnoutError` naming the bad key."""
    from .. import tls

    try:
        ssl_context = tls.server_context(cfg)
    except tls.TlsError as e:
        raise TurnoutError(f"admin.tls.{e.key}: {e.message}") from None
    live = ssl_context

    def install(new: object) -> None:
        # the listening server keeps its context: the new pair is loaded into it (OpenSSL allows it
        # on a context in use; new handshakes get the new certificate)
        tls.load_chain_into(live, cfg)

    paths = [cfg.cert_path, cfg.key_path]
    if cfg.intermediate_certs_path is not None:
        paths.append(cfg.intermediate_certs_path)
    watcher = tls.FileWatcher(
        "admin server",
        paths,
        lambda: tls.server_context(cfg),
        install,
        metrics.counter("admin", "tls", "reloads"),
        metrics.counter("admin", "tls", "reload_failures"),
    )
    watcher.start()
    return ssl_context, watcher
