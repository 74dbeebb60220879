"""Unit tests without ZooKeeper: paths, ServerSet member JSON, leader data, configuration,
registration."""

from __future__ import annotations

import json
import logging

import pytest
from turnout.config import NamerConfig
from turnout.naming import AddrBound, Address, AddrNeg, Path
from turnout.testing.config import build_context, plugin_registry, read_entry
from turnout_namer_zk import plugin
from turnout_namer_zk.config import ServersetsConfig, ZkAddrConfig, ZkLeaderConfig
from turnout_namer_zk.namer import ServersetsNamer, ZkLeaderNamer
from turnout_namer_zk.serverset import (
    BadData,
    Member,
    is_member,
    leader_of,
    parse_leader_data,
    parse_member,
    sequence_of,
    serverset_addr,
    serverset_key,
    show_key,
    zk_path,
)
from turnout_namer_zk.testing import member_json

# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/discovery/prod/web", ("/discovery/prod/web", None)),
        ("/discovery/prod/web:http", ("/discovery/prod/web", "http")),
        ("/web", ("/web", None)),
        ("/web:admin", ("/web", "admin")),
        ("/a:b/web", ("/a:b/web", None)),  # only the last label selects an endpoint
        ("/web:a:b", ("/web", "a:b")),  # split at the first colon, like Linkerd
        ("/twitter/service/web-1.2_x", ("/twitter/service/web-1.2_x", None)),
    ],
)
def test_serverset_paths(path, key):
    assert serverset_key(Path.read(path)) == key


@pytest.mark.parametrize("path", ["/", "/web:", "/:http", "/a/..", "/./b"])
def test_paths_that_name_no_serverset(path):
    assert serverset_key(Path.read(path)) is None


def test_labels_that_are_not_utf8_name_nothing():
    assert serverset_key(Path(b"a", b"\xff")) is None
    assert zk_path(Path(b"\xfe")) is None


def test_zk_leader_paths():
    assert zk_path(Path.read("/aurora/scheduler")) == "/aurora/scheduler"
    assert zk_path(Path.read("/group:x")) == "/group:x"  # no endpoints for leader groups
    assert zk_path(Path.read("/")) is None


def test_show_key():
    assert show_key(("/a/web", None)) == "/a/web"
    assert show_key(("/a/web", "http")) == "/a/web:http"


def test_namers_consume_the_whole_path():
    namer = ServersetsNamer(Path.read("/#/io.l5d.serversets"), "127.0.0.1:1")
    assert namer.key_of(Path.read("/a/b/web:http")) == (("/a/b/web", "http"), 3)
    assert namer.key_of(Path.read("/")) is None
    assert namer.label_of(("/a/b/web", "http")) == "/a/b/web:http"
    leader = ZkLeaderNamer(Path.read("/#/io.l5d.zkLeader"), "127.0.0.1:1")
    assert leader.key_of(Path.read("/aurora/scheduler")) == ("/aurora/scheduler", 2)
    assert leader.key_of(Path.read("/a/..")) is None


# -- ServerSet members -------------------------------------------------------------------------


def test_member_json_is_parsed():
    member = parse_member(member_json(8080, endpoints={"http": 8081, "admin": 9990}, shard=3))
    assert member == Member(
        {None: ("127.0.0.1", 8080), "http": ("127.0.0.1", 8081), "admin": ("127.0.0.1", 9990)},
        "ALIVE",
        3,
    )
    assert member.alive
    assert member.address(None) == Address("127.0.0.1", 8080)
    assert member.address("admin") == Address("127.0.0.1", 9990)
    assert member.address("thrift") is None  # no such endpoint


def test_the_serverset_format_written_by_finagle():
    # as written by com.twitter.common.zookeeper.ServerSetImpl / Finagle's ZkAnnouncer
    data = (
        b'{"serviceEndpoint":{"host":"10.0.0.3","port":31000},'
        b'"additionalEndpoints":{"aurora":{"host":"10.0.0.1","port":31000},'
        b'"http":{"host":"10.0.0.2","port":31001}},"status":"ALIVE","shard":0}'
    )
    member = parse_member(data)
    assert member.address(None) == Address("10.0.0.3", 31000)
    assert member.address("aurora") == Address("10.0.0.1", 31000)
    assert member.address("http") == Address("10.0.0.2", 31001)


@pytest.mark.parametrize(
    "status", ["STARTING", "STOPPING", "STOPPED", "DEAD", "WARNING", "UNKNOWN", "alive", None]
)
def test_only_alive_members_are_used(status):
    member = parse_member(member_json(8080, status=status))
    assert not member.alive
    assert member.address(None) is None
    assert serverset_addr([member], None) is AddrNeg


@pytest.mark.parametrize(
    "endpoint",
    [
        {"host": "10.0.0.1"},  # no port
        {"port": 80},  # no host
        {"host": "10.0.0.1", "port": "80"},  # a string port (Finagle wants an integer)
        {"host": "10.0.0.1", "port": 80.5},
        {"host": "10.0.0.1", "port": True},
        {"host": "10.0.0.1", "port": 0},
        {"host": "10.0.0.1", "port": 70000},
        {"host": "", "port": 80},
        {"host": 10, "port": 80},
        "10.0.0.1:80",
        None,
    ],
)
def test_malformed_endpoints_are_left_out(endpoint):
    doc = {
        "serviceEndpoint": endpoint,
        "additionalEndpoints": {"http": {"host": "10.0.0.1", "port": 81}, "bad": endpoint},
        "status": "ALIVE",
    }
    member = parse_member(json.dumps(doc).encode())
    assert member.address(None) is None
    assert member.address("bad") is None
    assert member.address("http") == Address("10.0.0.1", 81)  # the good one still counts


@pytest.mark.parametrize(
    "data", [b"", b"not json", b"{", b"[1, 2]", b'"ALIVE"', b"null", b"\xff\xfe", b"42"]
)
def test_bad_member_data_is_refused(data):
    with pytest.raises(BadData):
        parse_member(data)


def test_missing_optional_fields():
    member = parse_member(b'{"serviceEndpoint": {"host": "h", "port": 1}, "status": "ALIVE"}')
    assert member == Member({None: ("h", 1)}, "ALIVE", None)
    member = parse_member(b'{"status": "ALIVE", "additionalEndpoints": []}')
    assert member.endpoints == {}


def test_serverset_address_set():
    members = [
        parse_member(member_json(1, endpoints={"http": 11})),
        parse_member(member_json(2)),  # no http endpoint: skipped for :http
        parse_member(member_json(3, endpoints={"http": 13}, status="STOPPING")),
        None,  # unreadable member
        parse_member(member_json(1, endpoints={"http": 11})),  # announced twice: one address
    ]
    assert serverset_addr(members, None) == AddrBound(
        [Address("127.0.0.1", 1), Address("127.0.0.1", 2)]
    )
    assert serverset_addr(members, "http") == AddrBound([Address("127.0.0.1", 11)])
    assert serverset_addr(members, "thrift") is AddrNeg
    assert serverset_addr([], None) is AddrNeg


def test_member_node_names():
    assert is_member("member_0000000001")
    assert not is_member("vector_0000000001")
    assert not is_member("_c_1234-member_0000000001")


# -- leader groups -----------------------------------------------------------------------------


def test_sequence_numbers_and_the_leader():
    assert sequence_of("member_0000000042") == 42
    assert sequence_of("n_0000000007__lock__0000000011") == 11
    assert sequence_of("member_") is None
    assert leader_of(["member_0000000010", "member_0000000002", "member_0000000003"]) == (
        "member_0000000002"
    )
    # kazoo Election and Curator LeaderLatch names: the sequence number decides, not the prefix
    assert leader_of(["b__lock__0000000005", "a__lock__0000000009", "readme"]) == (
        "b__lock__0000000005"
    )
    assert leader_of(["readme", "config"]) is None
    assert leader_of([]) is None


@pytest.mark.parametrize(
    ("data", "addresses"),
    [
        (b"10.0.0.1:8080", [Address("10.0.0.1", 8080)]),
        (b" 10.0.0.1:8080\n", [Address("10.0.0.1", 8080)]),
        (b"a:1,b:2", [Address("a", 1), Address("b", 2)]),
        (b"a:1 b:2", [Address("a", 1), Address("b", 2)]),
        (b"[::1]:9000", [Address("::1", 9000)]),
        (member_json(7000, host="10.0.0.9"), [Address("10.0.0.9", 7000)]),
    ],
)
def test_leader_data(data, addresses):
    assert parse_leader_data(data) == addresses


@pytest.mark.parametrize(
    "data", [b"", b"10.0.0.1", b"10.0.0.1:http", b"10.0.0.1:0", b"h:99999", b"{}", b"{bad", b"\xff"]
)
def test_bad_leader_data(data):
    with pytest.raises(BadData):
        parse_leader_data(data)


# -- configuration and registration ------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read_namer(registry, text: str):
    return read_entry(registry, NamerConfig, text, "namer.yaml")


def test_the_plugin_registers_both_kinds(registry):
    assert registry.registration("namer", "io.l5d.serversets").cls is ServersetsConfig
    assert registry.registration("namer", "io.l5d.zkLeader").cls is ZkLeaderConfig


def test_linkerd_serversets_config_is_read(registry):
    config, problems = read_namer(
        registry,
        """
        kind: io.l5d.serversets
        zkAddrs:
        - host: 127.0.0.1
          port: 2181
        - host: zk2.example.com
        """,
    )
    assert problems == []
    assert isinstance(config, ServersetsConfig)
    assert config.zk_addrs == [
        ZkAddrConfig(host="127.0.0.1", port=2181),
        ZkAddrConfig(host="zk2.example.com", port=2181),  # Linkerd's default port
    ]
    assert config.connect_string == "127.0.0.1:2181,zk2.example.com:2181"
    assert config.effective_prefix == Path.read("/io.l5d.serversets")
    assert config.session_timeout_ms == 10_000


def test_zk_leader_config_and_prefix(registry):
    config, problems = read_namer(
        registry,
        "kind: io.l5d.zkLeader\nprefix: /leader\nzkAddrs: [{host: '::1', port: 2182}]\n",
    )
    assert problems == []
    assert isinstance(config, ZkLeaderConfig)
    assert config.effective_prefix == Path.read("/leader")
    assert config.connect_string == "[::1]:2182"
    namer = config.new_namer(build_context())
    assert isinstance(namer, ZkLeaderNamer)
    assert namer.id_prefix == Path.read("/#/leader")
    assert namer.zk.hosts == "[::1]:2182"
    assert not namer.zk.started  # nothing connects before a route needs a name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: io.l5d.serversets\n", "missing required key 'zkAddrs'"),
        ("kind: io.l5d.serversets\nzkAddrs: []\n", "give at least one ZooKeeper server"),
        ("kind: io.l5d.serversets\nzkAddrs: [{port: 2181}]\n", "missing required key 'host'"),
        ("kind: io.l5d.zkLeader\nzkAddrs: [{host: a, port: 0}]\n", "port"),
        ("kind: io.l5d.zkLeader\nzkAddr: [{host: a}]\n", "did you mean 'zkAddrs'?"),
        (
            "kind: io.l5d.serversets\nzkAddrs: [{host: a}]\nsessionTimeoutMs: 10\n",
            "sessionTimeoutMs",
        ),
    ],
)
def test_config_errors(registry, text, message):
    config, problems = read_namer(registry, text)
    assert config is None
    assert any(message in f"{p.path} {p.message}" for p in problems), problems


def test_bad_member_is_logged_once_per_version(caplog):
    namer = ServersetsNamer(Path.read("/#/io.l5d.serversets"), "127.0.0.1:1")
    key = ("/web", None)
    with caplog.at_level(logging.WARNING, logger="turnout.namer.zk"):
        assert namer._member(key, "/web/member_0000000001", b"{oops", 7) is None
        assert namer._member(key, "/web/member_0000000001", b"{oops", 7) is None
        assert namer._member(key, "/web/member_0000000001", b"[]", 8) is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "io.l5d.serversets /web: /web/member_0000000001 skipped" in messages[0]
    assert "bad ServerSet member data (not JSON" in messages[0]
    assert "not a JSON object but list" in messages[1]
