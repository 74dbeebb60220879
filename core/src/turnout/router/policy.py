"""Per-prefix client and service policy: resolving ``io.l5d.global`` / ``io.l5d.static``.

``io.l5d.static`` lists configs with a ``prefix`` pattern; every config whose prefix matches
(bound ids for clients, logical names for services) applies, later ones overriding earlier
ones key by key. The result for a given name is computed once (when its client or service is
created), never per request.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..config import model
from ..config.schema import ConfigObject
from ..naming import Path


def _merge(into: dict[str, Any], params: ConfigObject) -> None:
    for f in fields(params):  # type: ignore[arg-type]  # (config classes are dataclasses, made by ConfigObject.__init_subclass__)
        if f.name == "prefix":
            continue
        value = getattr(params, f.name)
        if value is not None:
            into[f.name] = value


#: the client's ``responseIdleTimeoutMs`` when no config sets it (nginx's proxy_read_timeout)
DEFAULT_RESPONSE_IDLE_TIMEOUT_MS = 60_000
#: how long pooled endpoint connections stay open unused when neither
#: ``hostConnectionPool.idleTimeMs`` nor ``clientSession.idleTimeMs`` says (nginx's upstream
#: keepalive_timeout)
DEFAULT_POOL_IDLE_TIME_MS = 60_000


@dataclass(frozen=True)
class ClientPolicy:
    """Effective client options for one bound id (defaults filled in)."""

    load_balancer: model.LoadBalancerConfig | None
    failure_accrual: model.FailureAccrualConfig | None
    host_connection_pool: model.PoolConfig
    request_attempt_timeout_ms: int | None
    #: the endpoint's longest silence while a response is awaited or streamed (ms)
    response_idle_timeout_ms: int
    requeue_budget: model.BudgetConfig
    fail_fast: bool
    client_session: model.SessionConfig | None
    socket_options: model.SocketOptionsConfig | None
    tls: model.ClientTlsConfig | None
    forward_client_cert: bool
    #: variables captured by the matching prefixes ({service} and the like)
    captures: dict[str, str]


@dataclass(frozen=True)
class ServicePolicy:
    """Effective service options for one logical name."""

    total_timeout_ms: int | None
    retries: model.RetriesConfig | None
    response_classifier: model.ResponseClassifierConfig | None


def client_policy(config: model.ClientConfig | None, bound_id: Path) -> ClientPolicy:
    values: dict[str, Any] = {}
    captures: dict[str, str] = {}
    if isinstance(config, model.GlobalClientConfig):
        _merge(values, config)
    elif isinstance(config, model.StaticClientConfig):
        for entry in config.configs:
            found = entry.prefix.extract(bound_id)
            if found is not None:
                captures.update(found)
                _merge(values, entry)
    return ClientPolicy(
        load_balancer=values.get("load_balancer"),
        failure_accrual=values.get("failure_accrual"),
        host_connection_pool=values.get("host_connection_pool") or model.PoolConfig(),
        request_attempt_timeout_ms=values.get("request_attempt_timeout_ms"),
        response_idle_timeout_ms=values.get("response_idle_timeout_ms")
        or DEFAULT_RESPONSE_IDLE_TIMEOUT_MS,
        requeue_budget=values.get("requeue_budget") or model.BudgetConfig(),
        fail_fast=bool(values.get("fail_fast", False)),
        client_session=values.get("client_session"),
        socket_options=values.get("socket_options"),
        tls=values.get("tls"),
        forward_client_cert=bool(values.get("forward_client_cert", False)),
        captures=captures,
    )


def service_policy(config: model.ServiceConfig | None, name: Path) -> ServicePolicy:
    values: dict[str, Any] = {}
    if isinstance(config, model.GlobalServiceConfig):
        _merge(values, config)
    elif isinstance(config, model.StaticServiceConfig):
        for entry in config.configs:
            if entry.prefix.extract(name) is not None:
                _merge(values, entry)
    return ServicePolicy(
        total_timeout_ms=values.get("total_timeout_ms"),
        retries=values.get("retries"),
        response_classifier=values.get("response_classifier"),
    )
