"""The plugin contract: every hook a turnout plugin can implement.

This module is the one document a plugin author needs to read. A plugin is a module of
functions decorated with :data:`turnout.hookimpl`, named after the hooks below, and published
through the ``turnout`` entry-point group::

    # pyproject.toml of the distribution "turnout-namer-example"
    [project.entry-points.turnout]
    namer-example = "turnout_namer_example.plugin"

    # turnout_namer_example/plugin.py
    import turnout

    @turnout.hookimpl
    def turnout_register_namers():
        return [ExampleNamerConfig]

Rules that hold for every hook:

- Hooks are synchronous functions, called by the control side of turnout: while loading plugins,
  reading the configuration, starting and stopping. **No hook is ever called per request**; the
  request path is made of the plain objects that the registered config classes build.
- Registration hooks (``turnout_register_*``) are called once, when plugins are loaded and
  before any configuration is read. They return config *classes* (a class or a list of them).
  Each class names its ``kind`` (the value of ``kind:`` in YAML, ``protocol:`` for routers), its
  options as annotated attributes (see :func:`turnout.api.option`), and a factory method that builds
  the runtime object. Two plugins registering the same kind in the same family is a start-up
  error naming both distributions.
- Built-in kinds (``io.l5d.fs``, ``default``, ``p2c``, ...) are registered through these same
  hooks by modules listed in :data:`turnout.plugin_manager.BUILTIN_PLUGINS`.
- A hook implementation may accept any subset of the arguments of its specification, so
  arguments may be added to a hook later without breaking plugins.

Environment switches (read by :func:`turnout.plugin_manager.load_plugins`):

- ``TURNOUT_DISABLE_PLUGIN_AUTOLOAD=1``: load no plugin from entry points (built-ins only).
- ``TURNOUT_PLUGINS=dist-a,dist-b``: load only these distributions (or entry-point names).
- ``TURNOUT_DISABLED_PLUGINS=dist-a``: load every plugin but these.
- ``TURNOUT_PLUGIN_MODULES=pkg.mod``: also load these modules as plugins (no packaging needed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING

from ._markers import PROJECT as PROJECT
from ._markers import hookimpl as hookimpl
from ._markers import hookspec as hookspec
from .admin_routes import AdminRoute
from .config.model import (
    AnnouncerConfig,
    FailureAccrualConfig,
    IdentifierConfig,
    InterpreterConfig,
    LinkerConfig,
    LoadBalancerConfig,
    NamerConfig,
    ResponseClassifierConfig,
    RouterConfig,
    TelemeterConfig,
    TransformerConfig,
)
from .naming.namer import Namer

if TYPE_CHECKING:
    # the linker calls these hooks (through the plugin manager, which loads this module): its
    # type only, here
    from .linker import Linker


# ---------------------------------------------------------------------------------------------
# Registration hooks: called once while plugins load, before the configuration is read.
# ---------------------------------------------------------------------------------------------


@hookspec
def turnout_register_namers() -> type[NamerConfig] | Sequence[type[NamerConfig]]:
    """Register namers: the service-discovery adapters reached at ``/#/<prefix>/...``.

    Called once at plugin load time.

    :return: one or more subclasses of :class:`turnout.api.NamerConfig`. Each sets ``kind``
        (``"io.l5d.consul"``), declares its options, and implements
        ``new_namer(self, ctx) -> turnout.api.Namer``. The namer is mounted at
        ``/#<prefix>`` where ``prefix`` defaults to ``/<kind>``.

    Example::

        class ExampleNamerConfig(turnout.api.NamerConfig):
            kind = "com.example.static"
            addresses: list[str] = turnout.option(doc="host:port entries")

            def new_namer(self, ctx):
                return ExampleNamer(self.addresses)

        @turnout.hookimpl
        def turnout_register_namers():
            return [ExampleNamerConfig]
    """


@hookspec
def turnout_register_global_namers() -> Mapping[str, Namer]:
    """Register global namers, reached by name at ``/$/<name>/...`` from any dtab.

    Called once at plugin load time. This is how Linkerd's class-named namers
    (``/$/io.buoyant.rinet/...``, ``/$/io.buoyant.http.status/...``) are provided.

    :return: a mapping from the name (the path element after ``/$``) to a
        :class:`turnout.api.Namer` whose ``lookup`` receives the rest of the path.

    Example::

        @turnout.hookimpl
        def turnout_register_global_namers():
            return {"com.example.upper": UpperCaseNamer()}
    """


@hookspec
def turnout_register_protocols() -> type[RouterConfig] | Sequence[type[RouterConfig]]:
    """Register protocols: router config classes selected by ``protocol:`` in a router.

    Called once at plugin load time.

    :return: one or more subclasses of :class:`turnout.api.RouterConfig` whose ``kind`` is
        the protocol name (``"http"``). The class declares the protocol's router options,
        its server and identifier option types, and ``new_router(self, ctx)`` which returns
        the router runtime (a :class:`turnout.api.RouterRuntime`: ``start``, ``servers``,
        ``stop_accepting``, ``drain``, ``close``, ``client_state``).

    The runtime subclasses :class:`turnout.api.RequestStack` (the request stack, see
    ``docs/architecture.md``) and its requests subclass :class:`turnout.api.Call`. The
    protocol owns bytes: accept, identify, frame, write, read, classify. It implements the
    stack's protocol hooks (``send`` an attempt to an endpoint, ``cancel_attempt``, ``fail``
    with turnout's own answer, ``resendable``, ``server_stats``, ``finished`` and the span
    names) and calls the stack when a request is named (``route_to`` then ``routed``), when
    a response is classified (``complete``, or ``may_retry`` + ``release_endpoint`` +
    ``retry``) and when an attempt breaks (``requeue_or_fail``). Deadlines, retries within
    the budget and backoff, requeues, failure accrual and balancer feedback, stats and spans
    then come from the stack. ``core_router(config, ctx, new_pool)`` builds the binding cache
    the stack routes with; ``housekeeping()`` expires unused routes.
    ``examples/turnout-example-lines`` is a complete protocol in about 450 lines.

    Example::

        @turnout.hookimpl
        def turnout_register_protocols():
            return [HttpRouterConfig]
    """


@hookspec
def turnout_register_identifiers() -> type[IdentifierConfig] | Sequence[type[IdentifierConfig]]:
    """Register identifiers: objects that turn a request into a logical name (``/svc/web``).

    Called once at plugin load time. Identifiers belong to a protocol: a protocol plugin
    defines an identifier base class with its own ``family`` (``"http identifier"``) and the
    identifiers for that protocol subclass it.

    :return: one or more identifier config classes with ``kind`` set and
        ``new_identifier(self, ctx)`` implemented.

    Example::

        @turnout.hookimpl
        def turnout_register_identifiers():
            return [HeaderTokenIdentifierConfig, PathIdentifierConfig]
    """


@hookspec
def turnout_register_load_balancers() -> (
    type[LoadBalancerConfig] | Sequence[type[LoadBalancerConfig]]
):
    """Register load balancers, selected by ``client.loadBalancer.kind`` (``p2c``, ``ewma``).

    Called once at plugin load time.

    :return: one or more subclasses of :class:`turnout.api.LoadBalancerConfig` that
        implement ``new_balancer(self, ctx=None)`` (clients are built while routing, with no
        build context), returning a new
        :class:`turnout.router.Balancer` for one client. A balancer gets the client's
        endpoints in ``update(endpoints)`` whenever they change and answers ``pick(now)`` for
        every request: the endpoint to use, skipping those whose ``available(now)`` is false
        (ejected), or ``self.fallback(now)`` when none is. ``pick`` runs on the request path:
        no I/O, no allocation it can avoid. Set ``wants_latency = True`` to be told each
        response's latency in ``observe(endpoint, latency, now)``; ``load(endpoint, now)``
        is what ``/client_state.json`` shows.

    Example::

        @turnout.hookimpl
        def turnout_register_load_balancers():
            return [RoundRobinConfig]
    """


@hookspec
def turnout_register_failure_accrual() -> (
    type[FailureAccrualConfig] | Sequence[type[FailureAccrualConfig]]
):
    """Register failure accrual policies (circuit breakers), ``client.failureAccrual.kind``.

    Called once at plugin load time.

    :return: one or more subclasses of :class:`turnout.api.FailureAccrualConfig`
        (``io.l5d.consecutiveFailures``, ``io.l5d.successRate``, ...) that implement
        ``new_policy(self)``, returning a new :class:`turnout.router.FailureAccrual` for one
        client. Subclasses decide when to eject in ``should_eject(endpoint, success, now)``;
        the base class does the ejection, the backoff (``self.backoff``, from the config's
        ``backoff``), the single probe and the revival.

    Example::

        @turnout.hookimpl
        def turnout_register_failure_accrual():
            return [ConsecutiveFailuresConfig]
    """


@hookspec
def turnout_register_response_classifiers() -> (
    type[ResponseClassifierConfig] | Sequence[type[ResponseClassifierConfig]]
):
    """Register response classifiers, ``service.responseClassifier.kind``.

    Called once at plugin load time. A classifier decides whether a response is a success,
    a failure, or a retryable failure (``io.l5d.http.retryableRead5XX``).

    :return: one or more subclasses of :class:`turnout.api.ResponseClassifierConfig`.

    Example::

        @turnout.hookimpl
        def turnout_register_response_classifiers():
            return [RetryableRead5XXConfig]
    """


@hookspec
def turnout_register_interpreters() -> type[InterpreterConfig] | Sequence[type[InterpreterConfig]]:
    """Register interpreters, ``router.interpreter.kind``: how a router binds names.

    Called once at plugin load time. The ``default`` interpreter binds through the router's
    dtab and the configured namers; others read the dtab from a file or a remote store.

    :return: one or more subclasses of :class:`turnout.api.InterpreterConfig` that
        implement ``new_interpreter(self, ctx)``.

    Example::

        @turnout.hookimpl
        def turnout_register_interpreters():
            return [FsInterpreterConfig]
    """


@hookspec
def turnout_register_transformers() -> type[TransformerConfig] | Sequence[type[TransformerConfig]]:
    """Register transformers: rewrites of bound address sets (``io.l5d.port``).

    Called once at plugin load time. Transformers are listed under ``transformers:`` of an
    interpreter or a namer and applied in order.

    :return: one or more subclasses of :class:`turnout.api.TransformerConfig`.

    Example::

        @turnout.hookimpl
        def turnout_register_transformers():
            return [PortTransformerConfig]
    """


@hookspec
def turnout_register_telemeters() -> type[TelemeterConfig] | Sequence[type[TelemeterConfig]]:
    """Register telemeters, listed under ``telemetry:`` (``io.l5d.prometheus``).

    Called once at plugin load time. A telemeter reads the metrics tree or receives trace
    spans; it never runs on the request path itself.

    :return: one or more subclasses of :class:`turnout.api.TelemeterConfig` that
        implement ``new_telemeter(self, ctx)``, returning a :class:`turnout.api.Telemeter`:
        its ``admin_routes()`` join the admin server, ``run()`` runs in the background while
        turnout serves, ``close()`` runs at shutdown once ``run()`` has been cancelled, and a
        ``tracer()`` (a :class:`turnout.api.Tracer` with a ``sample_rate`` and
        ``record(span)``) receives
        the server and client spans of the requests it samples. ``record`` is called on the
        request path: queue the span and return.

    Example::

        @turnout.hookimpl
        def turnout_register_telemeters():
            return [StatsdConfig]
    """


@hookspec
def turnout_register_announcers() -> type[AnnouncerConfig] | Sequence[type[AnnouncerConfig]]:
    """Register announcers, ``router.announcers``: register servers in a discovery system.

    Called once at plugin load time.

    :return: one or more subclasses of :class:`turnout.api.AnnouncerConfig` that
        implement ``new_announcer(self, ctx)``, returning a :class:`turnout.api.Announcer`:
        ``await announce(host, port, name)`` (the name without ``/#/<prefix>``) returns at
        once an :class:`~turnout.api.Announcement` whose ``withdraw()`` the linker
        awaits when draining starts; ``close()`` after the routers closed.

    Example::

        @turnout.hookimpl
        def turnout_register_announcers():
            return [ServersetsAnnouncerConfig]
    """


# ---------------------------------------------------------------------------------------------
# Configuration and lifecycle hooks.
# ---------------------------------------------------------------------------------------------


@hookspec
def turnout_configure(config: LinkerConfig) -> None:
    """Inspect the validated configuration before anything is built.

    Called once per configuration, after it was read and validated (also by
    ``turnout check``), before any router, namer or telemeter is created.

    :param config: the validated :class:`turnout.api.LinkerConfig`.
    :return: nothing. Raise :class:`turnout.api.ConfigError` to refuse the configuration.

    Example::

        @turnout.hookimpl
        def turnout_configure(config):
            if len(config.routers) > 10:
                raise ConfigError([ConfigProblem("too many routers")])
    """


@hookspec
def turnout_startup(linker: Linker) -> Awaitable[None] | None:
    """Run code when a linker starts serving.

    Called once, inside the event loop, after namers, routers and the admin server were
    built and before servers accept connections. May return an awaitable, which is awaited.

    :param linker: the running :class:`turnout.api.Linker`; ``linker.spawn(coro)`` starts
        a background task owned by the linker (cancelled at shutdown).
    :return: ``None`` or an awaitable.

    Example::

        @turnout.hookimpl
        def turnout_startup(linker):
            linker.spawn(report_every_minute(linker))
    """


@hookspec
def turnout_shutdown(linker: Linker) -> Awaitable[None] | None:
    """Run code when a linker stops.

    Called once, inside the event loop, after servers stopped accepting and in-flight
    requests finished (or the grace period ended), before namers are closed.

    :param linker: the stopping :class:`turnout.api.Linker`.
    :return: ``None`` or an awaitable, which is awaited.

    Example::

        @turnout.hookimpl
        async def turnout_shutdown(linker):
            await flush_spans()
    """


@hookspec
def turnout_admin_routes(linker: Linker) -> Sequence[AdminRoute] | None:
    """Add endpoints to the admin server.

    Called once when the admin server is built.

    :param linker: the :class:`turnout.api.Linker` being served.
    :return: :class:`turnout.api.AdminRoute` objects: method, path, a handler
        (``async def handler(request: AdminRequest) -> AdminResponse``, both from
        :mod:`turnout.api`; a handler written for aiohttp, returning ``web.Response``, works
        too, but importing aiohttp costs every turnout process about 16 MB), the security
        category (``"ui"``, ``"control"`` or ``"diagnostics"``) and an optional
        dashboard navigation label.

    Example::

        @turnout.hookimpl
        def turnout_admin_routes(linker):
            return [AdminRoute("GET", "/example.json", example_handler, nav="example")]
    """


@hookspec
def turnout_build_info() -> str | None:
    """Say how this plugin was built, for ``turnout plugins`` and ``turnout --version``.

    Called once when ``turnout plugins`` or ``turnout --version`` runs (never while serving).
    For plugins whose speed depends on how they were installed: the HTTP plugin answers
    ``"data path: compiled"`` or ``"data path: pure Python (...)"``.

    :return: one line, or ``None`` to say nothing.

    Example::

        @turnout.hookimpl
        def turnout_build_info():
            return "codec: libfoo 1.2 (C)" if HAVE_C else "codec: pure Python"
    """


# ---------------------------------------------------------------------------------------------
# namerd: registration hooks of the kinds only namerd uses (``turnout namerd``).
# ---------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    # namerd's config bases import the linker's config model: their types only, here
    from .namerd.config import DtabStoreConfig, NamerdInterfaceConfig


@hookspec
def turnout_register_dtab_stores() -> type[DtabStoreConfig] | Sequence[type[DtabStoreConfig]]:
    """Register namerd dtab stores, selected by ``storage.kind`` of a namerd config.

    Called once at plugin load time (read by ``turnout namerd`` and by ``turnout check`` of
    a namerd file).

    :return: one or more subclasses of :class:`turnout.namerd.DtabStoreConfig` that
        implement ``new_store(self, ctx)``, returning a :class:`turnout.namerd.DtabStore`:
        async ``list()``, ``get(ns)`` → ``(dtab, version)`` or None, ``create(ns, dtab)``,
        ``put(ns, dtab, expected=None)`` (``expected`` set: write only at that version, else
        :class:`~turnout.namerd.VersionMismatch`), ``delete(ns)``, and ``watch(ns)`` /
        ``watch_list()``: async iterators that yield the current state first, then each
        change. ``ctx`` is a :class:`turnout.namerd.NamerdContext`. The contract tests in
        :mod:`turnout.namerd.store_contract` run against any store given a fixture.

    Example::

        @turnout.hookimpl
        def turnout_register_dtab_stores():
            return [EtcdDtabStoreConfig]
    """


@hookspec
def turnout_register_namerd_interfaces() -> (
    type[NamerdInterfaceConfig] | Sequence[type[NamerdInterfaceConfig]]
):
    """Register namerd interfaces, the ``interfaces:`` entries of a namerd config.

    Called once at plugin load time.

    :return: one or more subclasses of :class:`turnout.namerd.NamerdInterfaceConfig` (which
        holds ``ip``, ``port``, ``tls``; set the class attribute ``default_port``) that
        implement ``new_interface(self, ctx)``, returning a
        :class:`turnout.namerd.NamerdInterface` (``async start()``, ``address()``,
        ``async close()``). ``ctx`` is a :class:`turnout.namerd.NamerdContext` whose
        ``store`` is the dtab store and whose ``interpreters.interpreter(ns)`` binds names
        with a namespace's dtab.

    Example::

        @turnout.hookimpl
        def turnout_register_namerd_interfaces():
            return [MeshInterfaceConfig]
    """
