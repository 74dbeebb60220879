"""Unit tests of the namer's pure parts: paths, blocking indexes, address choice, weights,
health filtering, metadata, the rate limiter."""

from __future__ import annotations

import asyncio
import time

import pytest
from turnout.naming import AddrBound, Address, AddrNeg, Path
from turnout.naming.addr import WEIGHT_KEY
from turnout_namer_consul.client import TokenBucket, consistency_params
from turnout_namer_consul.namer import (
    AUTHORITY_KEY,
    NODE_META_KEY,
    SERVICE_META_KEY,
    Instance,
    SvcKey,
    authority,
    check_status,
    choose_host,
    filter_health,
    from_catalog,
    from_health,
    next_index,
    parse_index,
    parse_path,
    to_addr,
    weight_of,
    worst_status,
)

# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "include_tag", "key", "consumed"),
    [
        ("/dc1/web", False, SvcKey("dc1", "web"), 2),
        ("/dc1/web/api/v1", False, SvcKey("dc1", "web"), 2),
        ("/.local/Web", False, SvcKey(".local", "web"), 2),  # names lower-cased (Linkerd)
        ("/dc1/Canary/Web", True, SvcKey("dc1", "web", "canary"), 3),
        ("/dc1/canary/web/rest", True, SvcKey("dc1", "web", "canary"), 3),
    ],
)
def test_paths_name_a_datacenter_an_optional_tag_and_a_service(path, include_tag, key, consumed):
    assert parse_path(Path.read(path), include_tag) == (key, consumed)


@pytest.mark.parametrize(
    ("path", "include_tag"), [("/dc1", False), ("/", False), ("/dc1/web", True)]
)
def test_short_paths_are_not_names(path, include_tag):
    assert parse_path(Path.read(path), include_tag) is None


def test_non_utf8_labels_are_not_names():
    assert parse_path(Path.of(b"dc1", b"\xff\xfe"), False) is None


def test_key_labels_show_the_path():
    assert str(SvcKey("dc1", "web")) == "/dc1/web"
    assert str(SvcKey(".local", "web", "canary")) == "/.local/canary/web"


# -- blocking indexes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "returned", "expected"),
    [
        (0, 7, 7),  # first answer
        (7, 7, 7),  # timeout: the same index, block again
        (7, 9, 9),  # a change
        (9, 4, 0),  # backwards: reset to 0 (a non-blocking query next)
        (0, 0, 1),  # index 0 is treated as 1
        (5, 0, 0),  # 0 after 5: counts as 1, which is backwards: reset
        (1, 0, 1),  # stays at 1 while Consul keeps answering 0
        (3, None, 0),  # no index at all: start over
    ],
)
def test_next_index_follows_consuls_blocking_query_rules(previous, returned, expected):
    assert next_index(previous, returned) == expected


def test_index_header_is_required():
    assert parse_index("42") == 42
    with pytest.raises(ValueError, match="did not return an index"):
        parse_index(None)
    with pytest.raises(ValueError, match="malformed"):
        parse_index("x")


# -- address choice ------------------------------------------------------------------------------


def test_service_address_is_preferred_and_empty_means_the_node_address():
    with_service = Instance("10.0.0.1", "10.1.1.1", 80)
    without = Instance("10.0.0.1", "", 80)
    assert choose_host(with_service, True) == "10.1.1.1"
    assert choose_host(without, True) == "10.0.0.1"
    assert choose_host(with_service, False) == "10.0.0.1"  # preferServiceAddress: false
    assert choose_host(Instance("", "", 80), True) is None


def test_instances_without_address_or_port_are_skipped():
    addr = to_addr(
        [Instance("", "", 80), Instance("10.0.0.1", "", 0), Instance("10.0.0.2", "", 81)]
    )
    assert addr == AddrBound([Address("10.0.0.2", 81)])


def test_no_instances_is_neg():
    assert to_addr([]) is AddrNeg
    assert to_addr([Instance("", "", 80)]) is AddrNeg


def test_catalog_entries():
    node = {
        "Node": "n1",
        "Address": "10.0.0.1",
        "ServiceID": "web-1",
        "ServiceName": "web",
        "ServiceTags": ["a", "b"],
        "ServiceAddress": "",
        "ServicePort": 8080,
        "ServiceMeta": {"v": "1"},
        "NodeMeta": {"rack": "r1"},
    }
    inst = from_catalog(node)
    assert inst == Instance("10.0.0.1", "", 8080, ("a", "b"), {"v": "1"}, {"rack": "r1"})
    assert from_catalog({"ServiceTags": None}).tags == ()  # older Consul sends null


def test_health_entries_carry_the_worst_check_status():
    entry = {
        "Node": {"Node": "n1", "Address": "10.0.0.1", "Meta": {"rack": "r1"}},
        "Service": {
            "ID": "web-1",
            "Service": "web",
            "Tags": ["a"],
            "Address": "10.1.1.1",
            "Port": 80,
        },
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing"},
            {"CheckID": "service:web-1", "Status": "warning"},
        ],
    }
    inst = from_health(entry)
    assert (inst.node_address, inst.service_address, inst.port, inst.tags) == (
        "10.0.0.1",
        "10.1.1.1",
        80,
        ("a",),
    )
    assert inst.status == "warning" and inst.node_meta == {"rack": "r1"}


# -- health filtering ----------------------------------------------------------------------------


def test_worst_status_order():
    def checks(*statuses):
        return [{"CheckID": f"c{i}", "Status": s} for i, s in enumerate(statuses)]

    assert worst_status([]) == "passing"
    assert worst_status(checks("passing", "warning")) == "warning"
    assert worst_status(checks("critical", "warning", "passing")) == "critical"
    assert worst_status(checks("maintenance", "critical")) == "maintenance"


def test_maintenance_mode_checks_count_as_maintenance():
    assert (
        check_status({"CheckID": "_service_maintenance:web-1", "Status": "critical"})
        == "maintenance"
    )
    assert check_status({"CheckID": "_node_maintenance", "Status": "critical"}) == "maintenance"
    assert check_status({"CheckID": "x", "Status": "Critical"}) == "critical"
    assert check_status({"CheckID": "x", "Status": "bogus"}) == "passing"  # Linkerd's withNameSafe


def test_health_statuses_filter_on_the_worst_status():
    insts = [Instance("h", "", 1 + i, status=s) for i, s in enumerate(HEALTH)]
    kept = filter_health(insts, ["passing", "warning"])
    assert [i.status for i in kept] == ["passing", "warning"]
    assert [i.status for i in filter_health(insts, ["critical", "maintenance"])] == [
        "critical",
        "maintenance",
    ]
    # exactly [passing]: Consul filtered already (?passing=1), nothing is dropped here
    assert filter_health(insts, ["passing"]) == insts


HEALTH = ["passing", "warning", "critical", "maintenance"]


# -- weights and metadata ------------------------------------------------------------------------


def test_weights_by_tag_take_the_heaviest():
    weights = {"canary": 0.1, "big": 3.0}
    assert weight_of(["canary"], weights) == 0.1
    assert weight_of(["canary", "big", "x"], weights) == 3.0
    assert weight_of(["x"], weights) is None
    addr = to_addr(
        [Instance("10.0.0.1", "", 80, ("canary",)), Instance("10.0.0.2", "", 80, ("x",))],
        weights=weights,
    )
    assert isinstance(addr, AddrBound)
    by_host = {a.host: a for a in addr.addresses}
    assert by_host["10.0.0.1"].weight == 0.1 and by_host["10.0.0.1"].meta[WEIGHT_KEY] == 0.1
    assert by_host["10.0.0.2"].weight == 1.0 and WEIGHT_KEY not in by_host["10.0.0.2"].meta


def test_set_host_authority():
    assert authority(SvcKey("dc1", "web"), "dc1", "consul") == "web.service.dc1.consul"
    assert (
        authority(SvcKey(".local", "web", "v2"), "dc1", "example") == "v2.web.service.dc1.example"
    )
    addr = to_addr([Instance("10.0.0.1", "", 80)], host_authority="web.service.dc1.consul")
    assert isinstance(addr, AddrBound)
    assert addr.meta == {AUTHORITY_KEY: "web.service.dc1.consul"}
    assert next(iter(addr.addresses)).meta[AUTHORITY_KEY] == "web.service.dc1.consul"


def test_transfer_metadata():
    inst = Instance("10.0.0.1", "", 80, service_meta={"version": "2"}, node_meta={"rack": "r1"})
    (plain,) = to_addr([inst]).addresses  # type: ignore[union-attr]
    assert plain.meta == {}
    (meta,) = to_addr([inst], transfer_metadata=True).addresses  # type: ignore[union-attr]
    assert meta.meta == {SERVICE_META_KEY: {"version": "2"}, NODE_META_KEY: {"rack": "r1"}}


# -- client helpers ------------------------------------------------------------------------------


def test_consistency_params():
    assert consistency_params("default") == []
    assert consistency_params("stale") == [("stale", "1")]
    assert consistency_params("consistent") == [("consistent", "1")]


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=10.0, burst=2)
    delays = [bucket.delay() for _ in range(4)]
    assert delays[0] == 0 and delays[1] == 0
    assert delays[2] == pytest.approx(0.1, abs=0.02) and delays[3] == pytest.approx(0.2, abs=0.02)


def test_token_bucket_limits_a_loop():
    async def main() -> int:
        bucket = TokenBucket(rate=20.0, burst=2)
        n = 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            await bucket.acquire()
            n += 1
        return n

    n = asyncio.run(main())
    assert 2 <= n <= 2 + 20 * 0.5 + 2, n
