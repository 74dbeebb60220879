"""Unit tests: configuration, path → app id, address choice, health filtering, credentials."""

from __future__ import annotations

import base64
import json
import random

import pytest
from marathon_test_helpers import path, rsa_key_pair
from turnout.config import NamerConfig
from turnout.naming import Address, Path
from turnout.testing.config import build_context, plugin_registry, read_entry
from turnout_namer_marathon import plugin
from turnout_namer_marathon.api import (
    MarathonError,
    app_addresses,
    app_id_path,
    parse_app_ids,
    task_healthy,
)
from turnout_namer_marathon.auth import (
    BASIC_ENV,
    DCOS_ENV,
    MarathonCredentialError,
    ServiceAccount,
    basic_authorization,
    credentials_from_env,
)
from turnout_namer_marathon.config import MarathonConfig, normalize_uri_prefix, parse_dst
from turnout_namer_marathon.namer import MarathonNamer, match_app

# -- configuration -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read_namer(registry, text: str):
    return read_entry(registry, NamerConfig, text, "namer.yaml")


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("namer", "io.l5d.marathon")
    assert registration.cls is MarathonConfig
    assert registration.provider.plugin == "turnout_namer_marathon.plugin"


def test_linkerd_defaults(registry):
    config, problems = read_namer(registry, "kind: io.l5d.marathon\n")
    assert problems == []
    assert (config.host, config.port, config.dst, config.uri_prefix) == (
        "marathon.mesos",
        80,
        None,
        "",
    )
    assert (config.ttl_ms, config.jitter_ms, config.use_health_check) == (5000, 50, False)
    assert config.tls is None and config.request_timeout_ms == 10_000
    assert config.effective_prefix == Path.read("/io.l5d.marathon")


def test_every_linkerd_key_is_read(registry, tmp_path):
    import trustme

    ca = tmp_path / "ca.pem"  # (trust files are read by turnout check: a real CA)
    trustme.CA().cert_pem.write_to_path(str(ca))
    config, problems = read_namer(
        registry,
        f"""
        kind: io.l5d.marathon
        prefix: /marathon
        host: marathon.example
        port: 8080
        dst: /$/inet/10.0.0.5/8080
        uriPrefix: /marathon
        ttlMs: 1000
        jitterMs: 20
        useHealthCheck: true
        tls:
          commonName: marathon.example
          disableValidation: false
          trustCerts: [{ca}]
        """,
    )
    assert problems == []
    assert config.effective_prefix == Path.read("/marathon")
    assert (config.host, config.port, config.dst) == (
        "marathon.example",
        8080,
        "/$/inet/10.0.0.5/8080",
    )
    assert (config.uri_prefix, config.ttl_ms, config.jitter_ms) == ("/marathon", 1000, 20)
    assert config.use_health_check is True
    assert config.tls.common_name == "marathon.example" and config.tls.trust_certs == [str(ca)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dst: marathon.mesos\n", "is not a path"),
        ("dst: /marathon/leader\n", "cannot be bound: expected /$/inet/<host>/<port>"),
        ("dst: /$/inet/host/99999\n", "with a port from 1 to 65535"),
        ("port: 0\n", "port"),
        ("ttlMs: 0\n", "ttlMs"),
        ("jitterMs: -1\n", "jitterMs"),
        ("ttl: 5\n", "ttl"),
        ("tls: {protocols: [SSLv3]}\n", "unknown TLS protocol"),
    ],
)
def test_config_errors(registry, text, message):
    config, problems = read_namer(registry, "kind: io.l5d.marathon\n" + text)
    assert config is None
    assert any(message in p.message or message in p.path for p in problems), problems


def test_dst_and_uri_prefix_forms():
    assert parse_dst("/$/inet/marathon.mesos/8080") == ("marathon.mesos", 8080)
    with pytest.raises(ValueError, match="not supported as a fixed address"):
        parse_dst("/$/inet/host/99999")
    assert normalize_uri_prefix("marathon/") == "/marathon"
    assert normalize_uri_prefix("/") == ""
    assert normalize_uri_prefix("") == ""


def test_dst_decides_where_to_connect_and_host_stays_the_host_header():
    namer = MarathonConfig(host="marathon.mesos", dst="/$/inet/127.0.0.1/8080").new_namer_with(
        build_context(), environ={}
    )
    assert namer.api.base_url == "http://127.0.0.1:8080"
    assert namer.api.host_header == "marathon.mesos"
    plain = MarathonConfig(host="10.1.2.3", port=81, uri_prefix="marathon").new_namer_with(
        build_context(), environ={}
    )
    assert plain.api.base_url == "http://10.1.2.3:81" and plain.api.host_header is None
    assert plain.api.api_prefix == "/marathon/v2"


def test_poll_interval_is_ttl_plus_or_minus_jitter():
    namer = MarathonConfig(ttl_ms=1000, jitter_ms=100).new_namer_with(build_context(), environ={})
    namer.rng = random.Random(7)
    waits = [namer.next_ttl() for _ in range(500)]
    assert all(0.9 <= w <= 1.1 for w in waits)
    assert min(waits) < 0.92 and max(waits) > 1.08  # the jitter is used in both directions
    tight = MarathonConfig(ttl_ms=10, jitter_ms=50).new_namer_with(build_context(), environ={})
    assert all(tight.next_ttl() >= 0.001 for _ in range(100))


# -- path → app id -------------------------------------------------------------------------------

APPS = frozenset(app_id_path(a) for a in ["/web", "/prod/api", "/prod/api/v2", "/Team/Svc"])


@pytest.mark.parametrize(
    ("name", "app", "residual"),
    [
        ("/web", "/web", "/"),
        ("/web/extra/labels", "/web", "/extra/labels"),
        ("/prod/api", "/prod/api", "/"),
        # the shortest leading part that is an app id wins (Linkerd's rule)
        ("/prod/api/v2", "/prod/api", "/v2"),
        # matched lower-cased: ids are lower-cased, the residual keeps its case
        ("/WEB/Rest", "/web", "/Rest"),
        ("/team/svc", "/team/svc", "/"),
    ],
)
def test_the_shortest_matching_app_id_names_the_app(name, app, residual):
    key, consumed = match_app(path(name), APPS)
    assert key == Path.read(app)
    assert path(name).drop(consumed) == Path.read(residual)


@pytest.mark.parametrize("name", ["/", "/prod", "/nope/web", "/webx"])
def test_no_matching_app_id_is_no_app(name):
    assert match_app(path(name), APPS) is None


def test_app_ids_are_lower_cased_paths():
    doc = {"apps": [{"id": "/Prod/Web"}, {"id": "/db"}, {"id": ""}, {"cmd": "no id"}, "junk"]}
    assert parse_app_ids(doc) == {Path.read("/prod/web"), Path.read("/db")}
    assert parse_app_ids({"apps": []}) == frozenset()
    with pytest.raises(MarathonError, match="no 'apps' list"):
        parse_app_ids({"message": "oops"})


def test_key_of_uses_the_known_app_list():
    namer = MarathonConfig().new_namer_with(build_context(), environ={})
    assert namer.key_of(path("/web")) is None  # the list is not known yet
    namer.apps.var.update(APPS)
    assert namer.key_of(path("/prod/api/v2/x")) == (Path.read("/prod/api"), 2)
    assert namer.key_of(path("/other")) is None


# -- address choice ------------------------------------------------------------------------------


def app_doc(tasks, **app):
    return {"app": {"id": "/foo", **app, "tasks": tasks}}


def test_host_and_first_port():
    doc = app_doc(
        [
            {"id": "a", "host": "1.2.3.4", "ports": [7000, 7001, 7002]},
            {"id": "b", "host": "agent-2.mesos", "ports": [7003]},
            {"id": "no-ports", "host": "5.6.7.8", "ports": []},
            {"id": "no-host", "ports": [7005]},
            {"id": "bad-port", "host": "5.6.7.8", "ports": ["x"]},
        ]
    )
    assert app_addresses(doc, False) == {Address("1.2.3.4", 7000), Address("agent-2.mesos", 7003)}


def test_ip_per_task_uses_the_task_ip_and_the_discovery_port():
    ip_app = {"ipAddress": {"discovery": {"ports": [{"number": 8080, "name": "http"}]}}}
    doc = app_doc(
        [
            # the host's ports are ignored for an IP-per-task app
            {"host": "1.2.3.4", "ports": [31000], "ipAddresses": [{"ipAddress": "250.1.62.0"}]},
            {"host": "1.2.3.5", "ports": [], "ipAddresses": [{"ipAddress": "250.1.62.1"}, {}]},
            {"host": "1.2.3.6", "ports": [], "ipAddresses": []},
        ],
        **ip_app,
    )
    assert app_addresses(doc, False) == {Address("250.1.62.0", 8080), Address("250.1.62.1", 8080)}


def test_an_ip_per_task_app_without_discovery_ports_uses_host_ports():
    doc = app_doc(
        [{"host": "1.2.3.4", "ports": [31000], "ipAddresses": [{"ipAddress": "250.1.62.0"}]}],
        ipAddress={"discovery": {"ports": []}},
    )
    assert app_addresses(doc, False) == {Address("1.2.3.4", 31000)}


def test_no_app_or_no_tasks_gives_no_addresses():
    assert app_addresses({"message": "App '/foo' does not exist"}, False) == frozenset()
    assert app_addresses({"app": {"id": "/foo"}}, False) == frozenset()
    assert app_addresses(app_doc([]), True) == frozenset()


# -- health filtering (the cases of Linkerd's ApiTest) ------------------------------------------

TWO_CHECKS = [{"path": "/health"}, {"path": "/health2"}]


def task(n, state="TASK_RUNNING", alive=None):
    out = {"id": f"t{n}", "host": f"10.0.0.{n}", "ports": [7000 + n], "state": state}
    if alive is not None:
        out["healthCheckResults"] = [{"alive": a} for a in alive]
    return out


HEALTH_TASKS = [
    task(1, alive=[True, True]),  # healthy
    task(2, alive=[True, False]),  # one check failing
    task(3, "TASK_KILLING", alive=[True, True]),  # being killed
    task(4, alive=[]),  # no result yet
    task(5, alive=[True]),  # fewer passing results than checks
]


def test_without_use_health_check_every_task_counts():
    doc = app_doc(HEALTH_TASKS, healthChecks=TWO_CHECKS)
    assert {a.port for a in app_addresses(doc, False)} == {7001, 7002, 7003, 7004, 7005}


def test_use_health_check_keeps_running_tasks_whose_checks_all_pass():
    doc = app_doc(HEALTH_TASKS, healthChecks=TWO_CHECKS)
    assert app_addresses(doc, True) == {Address("10.0.0.1", 7001)}


@pytest.mark.parametrize("checks", [None, []])
def test_use_health_check_without_health_checks_keeps_running_tasks(checks):
    tasks = [task(1, alive=[]), task(2, "TASK_KILLING", alive=[]), task(3, "TASK_STAGING")]
    doc = app_doc(tasks) if checks is None else app_doc(tasks, healthChecks=checks)
    assert app_addresses(doc, True) == {Address("10.0.0.1", 7001)}


def test_task_health_rules():
    assert task_healthy(task(1, alive=[True]), 1)
    assert not task_healthy(task(1), 1)  # no healthCheckResults at all
    assert not task_healthy({"host": "h", "ports": [1]}, 0)  # no state: not running
    assert task_healthy(task(1, alive=[True, True, False]), 2)  # N passing results suffice


# -- credentials -------------------------------------------------------------------------------


def test_basic_credential_is_sent_as_linkerd_sends_it():
    encoded = base64.b64encode(b"user:secret").decode()
    assert basic_authorization(encoded) == f"Basic {encoded}"
    # turnout also takes user:password and encodes it
    assert basic_authorization("user:secret") == f"Basic {encoded}"
    with pytest.raises(MarathonCredentialError, match="empty"):
        basic_authorization("  ")


def test_credentials_from_the_environment():
    assert credentials_from_env({}).kind == "none"
    basic = credentials_from_env({BASIC_ENV: "dXNlcjpzZWNyZXQ="})
    assert basic.kind == "basic" and basic.basic == "Basic dXNlcjpzZWNyZXQ="
    private, _ = rsa_key_pair()
    secret = {
        "login_endpoint": "https://leader.mesos/acs/api/v1/auth/login",
        "private_key": private,
        "scheme": "RS256",
        "uid": "linkerd",
    }
    both = credentials_from_env({DCOS_ENV: json.dumps(secret), BASIC_ENV: "dXNlcjpzZWNyZXQ="})
    assert both.kind == "dcos" and both.basic is None  # the service account wins
    assert both.account.uid == "linkerd"


def test_the_login_token_is_an_rs256_jwt_of_the_uid():
    import jwt

    private, public = rsa_key_pair()
    account = ServiceAccount("https://x/acs/api/v1/auth/login", private, "svc")
    body = account.login_body()
    assert body["uid"] == "svc"
    assert jwt.get_unverified_header(body["token"])["alg"] == "RS256"
    assert jwt.decode(body["token"], public, algorithms=["RS256"]) == {"uid": "svc"}


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"login_endpoint": "x", "scheme": "RS256", "uid": "u"}', "lacks private_key"),
        (
            '{"login_endpoint": "x", "private_key": "SECRET-KEY", "scheme": "HS256", "uid": "u"}',
            "only RS256",
        ),
        (
            '{"login_endpoint": "x", "private_key": "SECRET-KEY", "scheme": "RS256", "uid": "u"}',
            "cannot sign",
        ),
    ],
)
def test_bad_service_account_secrets_are_refused(secret, message):
    with pytest.raises(MarathonCredentialError, match=message) as info:
        credentials_from_env({DCOS_ENV: secret})
    assert "SECRET-KEY" not in str(info.value)  # the key is never shown


def test_state_shows_the_kind_of_credentials_never_the_secret():
    namer = MarathonConfig().new_namer_with(build_context(), environ={BASIC_ENV: "user:secret"})
    assert isinstance(namer, MarathonNamer)
    shown = json.dumps(namer.state())
    assert '"auth": {"kind": "basic"}' in shown and "secret" not in shown
    assert base64.b64encode(b"user:secret").decode() not in shown
