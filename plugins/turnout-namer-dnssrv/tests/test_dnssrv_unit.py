"""Unit tests (no DNS server): path → SRV name, ``dnsHosts`` entries, answer parsing,
priority groups and weights, and the ``/$/inet`` lookup's install/uninstall chain."""

from __future__ import annotations

import asyncio

import dns.message
import dns.name
import pytest
from turnout.naming import Address, Path
from turnout.naming.addr import WEIGHT_KEY
from turnout.naming.inet import InetResolver
from turnout.testing.config import build_context
from turnout_namer_dnssrv.client import DnsClient, gather
from turnout_namer_dnssrv.config import parse_dns_host
from turnout_namer_dnssrv.inet import DnsInetLookup, install, is_localhost
from turnout_namer_dnssrv.namer import DnsSrvNamer
from turnout_namer_dnssrv.srv import (
    Srv,
    additional_hosts,
    group_addresses,
    missing_targets,
    priority_groups,
    srv_name,
    srv_records,
)

N = dns.name.from_text


def namer(**kw) -> DnsSrvNamer:
    return DnsSrvNamer(Path.read("/#/io.l5d.dnssrv"), DnsClient(["127.0.0.1:1"], 1.0), **kw)


# -- path → SRV name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("_http._tcp.web.svc.test", "_http._tcp.web.svc.test."),
        ("_http._tcp.web.svc.test.", "_http._tcp.web.svc.test."),  # the final dot is optional
        ("web", "web."),
        ("Web.Example.ORG", "Web.Example.ORG."),
    ],
)
def test_labels_are_absolute_names_by_default(label, expected):
    assert srv_name(label) == N(expected)


@pytest.mark.parametrize("label", ["", ".", "a..b", "x" * 64 + ".test", b"\xff\xfe"])
def test_invalid_labels_name_nothing(label):
    assert srv_name(label) is None


def test_relative_labels_use_the_domain_and_absolute_ones_do_not():
    origin = N("srv.dc-2.example.org")
    assert srv_name("_http._tcp.web", origin) == N("_http._tcp.web.srv.dc-2.example.org.")
    assert srv_name("_http._tcp.web.other.org.", origin) == N("_http._tcp.web.other.org.")


def test_first_label_is_the_name_and_the_rest_the_residual():
    n = namer()
    assert n.key_of(Path.read("/_http._tcp.web.svc.test/api/v1")) == (
        N("_http._tcp.web.svc.test."),
        1,
    )
    assert n.key_of(Path.empty) is None
    assert n.key_of(Path.read("/a..b")) is None


def test_names_differing_in_case_or_final_dot_share_one_watch():
    n = namer()
    assert n.key_of(Path.read("/WEB.svc.test"))[0] == n.key_of(Path.read("/web.svc.test."))[0]
    assert n.label_of(N("_http._tcp.web.svc.test.")) == "_http._tcp.web.svc.test"


def test_invalid_name_is_neg_without_a_watch():
    from turnout.naming import Neg, Ok

    n = namer()
    assert n.lookup(Path.read("/a..b")).value == Ok(Neg)
    assert n.lookup(Path.empty).value == Ok(Neg)
    assert n.watches == {}


def test_the_domain_option_sets_the_origin():
    from turnout_namer_dnssrv.config import DnsSrvNamerConfig

    config = DnsSrvNamerConfig(experimental=True, domain="srv.example.org")
    n = config.new_namer(build_context())
    assert n.key_of(Path.read("/web"))[0] == N("web.srv.example.org.")


# -- dnsHosts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("ns0.example.org", ("ns0.example.org", 53)),  # Linkerd's form: a host, port 53
        ("10.0.0.2", ("10.0.0.2", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("localhost:53", ("localhost", 53)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[fe80::1]", ("fe80::1", 53)),
        (" 10.0.0.2:54 ", ("10.0.0.2", 54)),
    ],
)
def test_dns_hosts_entries(entry, expected):
    assert parse_dns_host(entry) == expected


@pytest.mark.parametrize(
    "entry", ["", ":53", "host:", "host:0", "host:65536", "host:x", "[::1", "[::1]x", "a b"]
)
def test_bad_dns_hosts_entries(entry):
    with pytest.raises(ValueError, match="expected"):
        parse_dns_host(entry)


# -- answers -------------------------------------------------------------------------------

ANSWER = """\
id 1
opcode QUERY
rcode NOERROR
flags QR AA RD
;QUESTION
_http._tcp.web.example.org. IN SRV
;ANSWER
_http._tcp.web.example.org. 30 IN SRV 0 3 8080 a.example.org.
_http._tcp.web.example.org. 30 IN SRV 0 1 8081 b.example.org.
_http._tcp.web.example.org. 30 IN SRV 10 5 9090 backup.example.org.
_http._tcp.web.example.org. 30 IN SRV 20 5 9090 .
;AUTHORITY
example.org. 30 IN NS ns.example.org.
;ADDITIONAL
a.example.org. 30 IN AAAA 2001:db8::a
a.example.org. 30 IN A 10.0.0.1
ns.example.org. 30 IN A 10.0.0.53
"""


def parse(text: str = ANSWER) -> dns.message.Message:
    return dns.message.from_text(text)


def test_srv_records_of_an_answer_drop_dot_targets():
    message = parse()
    records = srv_records(message.answer[0])
    assert sorted(records, key=lambda r: r.port) == [
        Srv(0, 3, 8080, N("a.example.org.")),
        Srv(0, 1, 8081, N("b.example.org.")),
        Srv(10, 5, 9090, N("backup.example.org.")),
    ]
    assert srv_records(None) == []


def test_additional_section_addresses_ipv4_first():
    hosts = additional_hosts(parse())
    assert hosts[N("a.example.org.")] == ["10.0.0.1", "2001:db8::a"]
    assert N("b.example.org.") not in hosts  # the server left it out: it must be queried


def test_lowest_priority_group_first():
    groups = priority_groups(srv_records(parse().answer[0]))
    assert [[r.priority for r in g] for g in groups] == [[0, 0], [10]]
    assert missing_targets(groups[0], additional_hosts(parse())) == [N("b.example.org.")]


def test_srv_weights_become_endpoint_weights():
    group = [Srv(0, 3, 8080, N("a.")), Srv(0, 1, 8081, N("b."))]
    hosts = {N("a."): ["10.0.0.1"], N("b."): ["10.0.0.2"]}
    assert sorted(group_addresses(group, hosts), key=Address.sort_key) == [
        Address("10.0.0.1", 8080, {WEIGHT_KEY: 3.0}),
        Address("10.0.0.2", 8081, {WEIGHT_KEY: 1.0}),
    ]


def test_a_targets_weight_is_shared_by_its_addresses():
    group = [Srv(0, 4, 80, N("a.")), Srv(0, 2, 80, N("b."))]
    hosts = {N("a."): ["10.0.0.1", "2001:db8::1"], N("b."): ["10.0.0.2"]}
    weights = {a.host: a.weight for a in group_addresses(group, hosts)}
    assert weights == {"10.0.0.1": 2.0, "2001:db8::1": 2.0, "10.0.0.2": 2.0}


def test_records_reaching_the_same_endpoint_add_up():
    group = [Srv(0, 1, 80, N("a.")), Srv(0, 2, 80, N("alias."))]
    hosts = {N("a."): ["10.0.0.1"], N("alias."): ["10.0.0.1"]}
    assert group_addresses(group, hosts) == [Address("10.0.0.1", 80, {WEIGHT_KEY: 3.0})]


def test_zero_weights():
    hosts = {N("a."): ["10.0.0.1"], N("b."): ["10.0.0.2"]}
    all_zero = [Srv(0, 0, 80, N("a.")), Srv(0, 0, 80, N("b."))]
    assert {a.weight for a in group_addresses(all_zero, hosts)} == {1.0}  # all equal
    mixed = [Srv(0, 0, 80, N("a.")), Srv(0, 5, 80, N("b."))]
    weights = {a.host: a.weight for a in group_addresses(mixed, hosts)}
    assert weights == {"10.0.0.1": 0.0, "10.0.0.2": 5.0}  # 0: only when 10.0.0.2 is out


def test_unknown_targets_are_left_out():
    group = [Srv(0, 1, 80, N("a.")), Srv(0, 1, 80, N("gone."))]
    hosts = {N("a."): ["10.0.0.1"], N("gone."): []}
    assert [a.host for a in group_addresses(group, hosts)] == ["10.0.0.1"]
    assert group_addresses([Srv(0, 1, 80, N("gone."))], hosts) == []


# -- helpers -------------------------------------------------------------------------------


def test_gather_raises_the_first_error_unwrapped_and_cancels_the_rest():
    async def main():
        cancelled = []

        async def slow():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async def fail():
            raise OSError("boom")

        baseline = len(asyncio.all_tasks())
        with pytest.raises(OSError, match="boom"):
            await gather(slow(), fail())
        assert cancelled == [True]
        assert len(asyncio.all_tasks()) == baseline
        assert await gather(asyncio.sleep(0, "a"), asyncio.sleep(0, "b")) == ["a", "b"]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("host", "local"),
    [("localhost", True), ("LOCALHOST.", True), ("a.localhost", True), ("localhost.com", False)],
)
def test_localhost_names(host, local):
    assert is_localhost(host) is local


def test_localhost_and_literals_do_not_go_to_dns():
    async def main():
        calls = []

        async def system(host):
            calls.append(host)
            return ["127.0.0.1"], None

        lookup = DnsInetLookup(DnsClient(["127.0.0.1:1"], 0.1), system)
        assert await lookup("localhost") == (["127.0.0.1"], None)
        assert await lookup("10.1.2.3") == (["10.1.2.3"], None)
        assert calls == ["localhost"]

    asyncio.run(main())


def test_install_and_uninstall_restore_the_previous_lookup():
    resolver = InetResolver()
    original = resolver.lookup
    client = DnsClient(["127.0.0.1:1"], 0.1)
    first = install(resolver, client)
    assert resolver.lookup is first.lookup and first.lookup.fallback is original
    first.uninstall()
    assert resolver.lookup is original
    first.uninstall()  # idempotent
    assert resolver.lookup is original


def test_uninstall_out_of_order_keeps_the_chain_whole():
    resolver = InetResolver()
    original = resolver.lookup
    first = install(resolver, DnsClient(["127.0.0.1:1"], 0.1))
    second = install(resolver, DnsClient(["127.0.0.1:2"], 0.1))
    first.uninstall()  # the older one goes first: the newer one now falls back to the original
    assert resolver.lookup is second.lookup and second.lookup.fallback is original
    second.uninstall()
    assert resolver.lookup is original


# -- which servers ---------------------------------------------------------------------------


def test_without_dns_hosts_the_servers_come_from_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.org\nnameserver 10.1.2.3\nnameserver fd00::53\n")

    async def main():
        client = DnsClient([], 1.0, resolv_conf=str(conf))
        resolver = await client.resolver()
        assert client.servers == ["10.1.2.3:53", "[fd00::53]:53"]
        assert resolver.cache is None and resolver.search == []
        assert resolver.lifetime == 1.0 and resolver.timeout == 1.0

    asyncio.run(main())


def test_no_resolv_conf_is_a_dns_error_retried_later(tmp_path):
    from turnout_namer_dnssrv.client import DnsError

    async def main():
        client = DnsClient([], 1.0, resolv_conf=str(tmp_path / "missing.conf"))
        with pytest.raises(DnsError, match="no DNS server"):
            await client.query(N("x.example.org."), 33)
        (tmp_path / "missing.conf").write_text("nameserver 10.9.9.9\n")
        await client.resolver()  # not remembered as failed: read again
        assert client.servers == ["10.9.9.9:53"]

    asyncio.run(main())


def test_dns_hosts_names_are_resolved_ips_are_kept():
    async def main():
        client = DnsClient(["localhost:5353", "10.0.0.1", "[::1]:54"], 10.0)
        await client.resolver()
        assert client.servers[0] == "127.0.0.1:5353"
        assert client.servers[-2:] == ["10.0.0.1:53", "[::1]:54"]
        assert (await client.resolver()).timeout == 2.0  # one try of one server: 2 s at most

    asyncio.run(main())
