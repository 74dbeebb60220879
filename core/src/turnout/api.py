"""The public plugin API: every name of turnout a plugin may use, in one module.

A plugin (a namer, telemeter, announcer, transformer, interpreter or protocol distribution)
imports turnout's names from here (``from turnout.api import Namer, Path``) or, equally, from
the package itself (``turnout.Namer``: the same objects). The modules these names live in are
turnout's internals: they may be moved, split or renamed in any release; this list changes
only with notice. A test (``core/tests/test_import_boundary.py``) fails when a plugin of this
repository imports anything else of turnout at run time. Plugins' tests also use the test kit
:mod:`turnout.testing`, which is public for tests only.

What is here, by the part of a plugin that needs it:

- **Registering**: :data:`hookimpl` (the hooks are documented in :mod:`turnout.hookspecs`).
- **Configuration**: :class:`ConfigObject` and :func:`option` (declaring options), the base of
  each family a plugin can add a kind to (:class:`NamerConfig`, :class:`TelemeterConfig`,
  :class:`AnnouncerConfig`, :class:`TransformerConfig`, :class:`InterpreterConfig`,
  :class:`RouterConfig`, :class:`IdentifierConfig`, :class:`LoadBalancerConfig`,
  :class:`FailureAccrualConfig`, :class:`ResponseClassifierConfig`), the shared option groups
  (:class:`ServerConfig`, :class:`ClientTlsConfig`, :class:`TlsServerConfig`; a router's
  ``client:`` section: :class:`ClientConfig`, :class:`GlobalClientConfig` and
  :class:`StaticClientConfig` with its :class:`StaticClientEntry` s, whose options are
  :class:`ClientParams`, for protocols that add client options of their own; the same for
  ``service:``: :class:`GlobalServiceConfig`, :class:`StaticServiceConfig`,
  :class:`StaticServiceEntry`, :class:`ServiceParams`) and the whole
  file (:class:`LinkerConfig`, what ``turnout_configure`` receives).
- **Building**: :class:`BuildContext`, the ``ctx`` every factory receives; :class:`Linker`,
  what the lifecycle hooks receive; :class:`RouterRuntime`, what ``new_router`` returns.
- **Naming**: :class:`Path`, :class:`Dtab`, :class:`Dentry`, :class:`NameTree` and its nodes
  (:class:`Leaf`, :class:`Alt`, :class:`Union`, :class:`Weighted`, :data:`Neg`,
  :data:`Fail`, :data:`Empty`), :class:`Name` and :class:`NameBound`, the address states
  (:class:`Addr`: :data:`AddrPending`, :data:`AddrNeg`, :class:`AddrFailed`,
  :class:`AddrBound` of :class:`Address` es, whose weight is the :data:`WEIGHT_KEY` metadata),
  :class:`Namer`, :class:`NameInterpreter` and the transformers' bases
  (:class:`NameTreeTransformer`, :class:`AddrTransformer`).
- **Observable values**: :class:`Var`, :class:`Activity` and its :class:`State` s
  (:data:`Pending`, :class:`Ok`, :class:`Failed`), :func:`derive`, :func:`derive_activity`.
- **Service discovery**: :class:`DiscoveryNamer` (the base of every namer that watches a
  discovery system), :data:`Publish`, :func:`reconnect_backoff`, :class:`Freshness`,
  :func:`cancelled`; :class:`Announcer` and :class:`Announcement`; connecting:
  :func:`open_connection`, :class:`InetResolver`, :func:`default_resolver`,
  :func:`ip_literal`, :data:`Lookup`; TLS to a back-end: :func:`client_ssl_context`.
- **Telemetry**: :class:`Telemeter`, :class:`Tracer`, :class:`Span`, :class:`MetricsTree`
  and its :class:`Counter`, :class:`SumCounter`, :class:`Gauge`, :class:`Histogram`
  (bucket :data:`BOUNDS` and :data:`VALUES`, the :data:`WINDOW` of histograms), the scopes
  of its keys for telemeters that relabel them (:func:`split_metric_key` into a
  :class:`MetricScope`, given the tree's :func:`metric_anchors`), :class:`AdminRoute`
  with the :class:`AdminRequest` its handler takes and the :class:`AdminResponse` it returns.
- **Protocols**: the request stack (see docs/architecture.md): :class:`RequestStack` and
  :class:`Call` (subclass them), :class:`Counts`, :class:`Tally`, :class:`ServerStats`,
  :class:`RouteCache`, the classifier verdicts :data:`SUCCESS`, :data:`FAILURE`,
  :data:`RETRYABLE`, :data:`MAX_RETRIES`, :data:`MAX_REQUEUES`; the binding cache it
  routes with (:func:`core_router`, :class:`Router`, :class:`Route`, :class:`Client`,
  :class:`Endpoint`, :class:`RouteError`, :class:`ClientPolicy`, :func:`take_over_servers`,
  :data:`DEFAULT_POOL_IDLE_TIME_MS`) and the request dtab limits
  (:data:`MAX_REQUEST_DTAB_BYTES`, :data:`MAX_REQUEST_DTAB_ENTRIES`); tracing a request
  (:func:`tracing_of`, :class:`Tracing`, :class:`ServerTrace`, :data:`TRACE_HEADERS`);
  TLS of servers and clients (:func:`server_context`, :func:`client_tls`,
  :class:`ClientTls`, :class:`FileWatcher`).
- **Load balancers and failure accrual**: :class:`Balancer`, :class:`FailureAccrual`,
  :class:`Endpoint`, :data:`Backoff` (:func:`constant_backoff`,
  :func:`equal_jittered_backoff`, :func:`decorrelated_jittered_backoff`,
  :data:`DEFAULT_ACCRUAL_BACKOFF`), :func:`balancer_for`, :func:`accrual_for`.
- **namerd** (dtab store and interface plugins, see docs/namerd.md): the config bases
  :class:`DtabStoreConfig` and :class:`NamerdInterfaceConfig`, what their factories
  receive (:class:`NamerdContext`) and return (:class:`DtabStore`, :class:`NamerdInterface`),
  the store's :data:`Versioned` states, its errors (:class:`NamespaceExists`,
  :class:`NamespaceNotFound`, :class:`VersionMismatch`, :class:`InvalidNamespace`),
  :func:`check_namespace` (what a namespace name may be), :class:`ChangeFeed`, a helper to
  implement its watches, and :func:`encode_decimal_version` / :func:`decode_decimal_version`
  for stores that number their writes.
- **Access logs** (protocol routers): :class:`LineLog` (a batched log file, rolled by a
  :class:`RollPolicy`; a protocol subclasses it with its line format),
  :func:`access_log_problem` (for a config check), :func:`open_access_log`,
  :class:`AccessLogError`.
- **Errors**: :class:`TurnoutError` and its kinds (:class:`ParseError`,
  :class:`ConfigError` with :class:`ConfigProblem` s, :class:`PluginError`,
  :class:`BindingError`), :class:`TlsError`.

Importing this module imports the parts of turnout these names come from (about what
``turnout run`` loads anyway); ``import turnout`` alone stays cheap and imports this module the
first time one of its names is asked for.
"""

from __future__ import annotations

from .accesslog import (
    AccessLogError,
    LineLog,
    RollPolicy,
    access_log_problem,
    open_access_log,
)
from .admin.http import AdminRequest, AdminResponse
from .admin_routes import AdminRoute
from .announcer import Announcement, Announcer
from .config import (
    AnnouncerConfig,
    ConfigObject,
    FailureAccrualConfig,
    IdentifierConfig,
    InterpreterConfig,
    LinkerConfig,
    LoadBalancerConfig,
    NamerConfig,
    ResponseClassifierConfig,
    RouterConfig,
    ServerConfig,
    TelemeterConfig,
    TransformerConfig,
    option,
)
from .config.model import (
    BackoffConfig,
    ClientConfig,
    ClientParams,
    ClientTlsConfig,
    GlobalClientConfig,
    GlobalServiceConfig,
    ServiceParams,
    StaticClientConfig,
    StaticClientEntry,
    StaticServiceConfig,
    StaticServiceEntry,
    TlsServerConfig,
)
from .context import BuildContext
from .discovery import DiscoveryNamer, Freshness, Publish, cancelled, reconnect_backoff
from .errors import (
    BindingError,
    ConfigError,
    ConfigProblem,
    ParseError,
    PluginError,
    TurnoutError,
)
from .hookspecs import hookimpl
from .linker import Linker, RouterRuntime
from .metric_scopes import MetricScope, metric_anchors, split_metric_key
from .metrics import (
    BOUNDS,
    VALUES,
    WINDOW,
    Counter,
    Gauge,
    Histogram,
    MetricsTree,
    SumCounter,
)
from .namerd import (
    ChangeFeed,
    DtabStore,
    DtabStoreConfig,
    DtabStoreError,
    DtabStoreForbidden,
    InvalidNamespace,
    NamerdContext,
    NamerdInterface,
    NamerdInterfaceConfig,
    NamespaceExists,
    NamespaceNotFound,
    Versioned,
    VersionMismatch,
    check_namespace,
    decode_decimal_version,
    encode_decimal_version,
)
from .naming import (
    Activity,
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Alt,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Failed,
    InetResolver,
    Leaf,
    Name,
    NameBound,
    NameInterpreter,
    Namer,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    Union,
    Var,
    Weighted,
    derive,
    derive_activity,
)
from .naming.addr import WEIGHT_KEY
from .naming.dtab import MAX_REQUEST_DTAB_BYTES, MAX_REQUEST_DTAB_ENTRIES
from .naming.inet import Lookup, default_resolver, ip_literal, open_connection
from .naming.transformer import AddrTransformer, NameTreeTransformer
from .router import (
    DEFAULT_ACCRUAL_BACKOFF,
    Backoff,
    Balancer,
    Client,
    ClientPolicy,
    Endpoint,
    FailureAccrual,
    Route,
    RouteError,
    Router,
    accrual_for,
    balancer_for,
    constant_backoff,
    decorrelated_jittered_backoff,
    equal_jittered_backoff,
    take_over_servers,
)
from .router.policy import DEFAULT_POOL_IDLE_TIME_MS
from .router.stack import (
    FAILURE,
    MAX_REQUEUES,
    MAX_RETRIES,
    RETRYABLE,
    SUCCESS,
    Call,
    Counts,
    RequestStack,
    RouteCache,
    ServerStats,
    Tally,
    core_router,
    tracing_of,
)
from .telemetry import Telemeter
from .tls import (
    ClientTls,
    FileWatcher,
    TlsError,
    client_ssl_context,
    client_tls,
    server_context,
)
from .tracing import TRACE_HEADERS, ServerTrace, Span, Tracer, Tracing

__all__ = [
    "BOUNDS",
    "DEFAULT_ACCRUAL_BACKOFF",
    "DEFAULT_POOL_IDLE_TIME_MS",
    "FAILURE",
    "MAX_REQUEST_DTAB_BYTES",
    "MAX_REQUEST_DTAB_ENTRIES",
    "MAX_REQUEUES",
    "MAX_RETRIES",
    "RETRYABLE",
    "SUCCESS",
    "TRACE_HEADERS",
    "VALUES",
    "WEIGHT_KEY",
    "WINDOW",
    "AccessLogError",
    "Activity",
    "Addr",
    "AddrBound",
    "AddrFailed",
    "AddrNeg",
    "AddrPending",
    "AddrTransformer",
    "Address",
    "AdminRequest",
    "AdminResponse",
    "AdminRoute",
    "Alt",
    "Announcement",
    "Announcer",
    "AnnouncerConfig",
    "Backoff",
    "BackoffConfig",
    "Balancer",
    "BindingError",
    "BuildContext",
    "Call",
    "ChangeFeed",
    "Client",
    "ClientConfig",
    "ClientParams",
    "ClientPolicy",
    "ClientTls",
    "ClientTlsConfig",
    "ConfigError",
    "ConfigObject",
    "ConfigProblem",
    "Counter",
    "Counts",
    "Dentry",
    "DiscoveryNamer",
    "Dtab",
    "DtabStore",
    "DtabStoreConfig",
    "DtabStoreError",
    "DtabStoreForbidden",
    "Empty",
    "Endpoint",
    "Fail",
    "Failed",
    "FailureAccrual",
    "FailureAccrualConfig",
    "FileWatcher",
    "Freshness",
    "Gauge",
    "GlobalClientConfig",
    "GlobalServiceConfig",
    "Histogram",
    "IdentifierConfig",
    "InetResolver",
    "InterpreterConfig",
    "InvalidNamespace",
    "Leaf",
    "LineLog",
    "Linker",
    "LinkerConfig",
    "LoadBalancerConfig",
    "Lookup",
    "MetricScope",
    "MetricsTree",
    "Name",
    "NameBound",
    "NameInterpreter",
    "NameTree",
    "NameTreeTransformer",
    "Namer",
    "NamerConfig",
    "NamerdContext",
    "NamerdInterface",
    "NamerdInterfaceConfig",
    "NamespaceExists",
    "NamespaceNotFound",
    "Neg",
    "Ok",
    "ParseError",
    "Path",
    "Pending",
    "PluginError",
    "Publish",
    "RequestStack",
    "ResponseClassifierConfig",
    "RollPolicy",
    "Route",
    "RouteCache",
    "RouteError",
    "Router",
    "RouterConfig",
    "RouterRuntime",
    "ServerConfig",
    "ServerStats",
    "ServerTrace",
    "ServiceParams",
    "Span",
    "State",
    "StaticClientConfig",
    "StaticClientEntry",
    "StaticServiceConfig",
    "StaticServiceEntry",
    "SumCounter",
    "Tally",
    "Telemeter",
    "TelemeterConfig",
    "TlsError",
    "TlsServerConfig",
    "Tracer",
    "Tracing",
    "TransformerConfig",
    "TurnoutError",
    "Union",
    "Var",
    "VersionMismatch",
    "Versioned",
    "Weighted",
    "access_log_problem",
    "accrual_for",
    "balancer_for",
    "cancelled",
    "check_namespace",
    "client_ssl_context",
    "client_tls",
    "constant_backoff",
    "core_router",
    "decode_decimal_version",
    "decorrelated_jittered_backoff",
    "default_resolver",
    "derive",
    "derive_activity",
    "encode_decimal_version",
    "equal_jittered_backoff",
    "hookimpl",
    "ip_literal",
    "metric_anchors",
    "open_access_log",
    "open_connection",
    "option",
    "reconnect_backoff",
    "server_context",
    "split_metric_key",
    "take_over_servers",
    "tracing_of",
]
