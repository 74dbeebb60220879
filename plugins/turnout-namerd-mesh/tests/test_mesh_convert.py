"""The conversions between turnout's naming values and the io.linkerd.mesh messages, and the
interpreter's reconnection backoff."""

from __future__ import annotations

import itertools

import pytest
from turnout.api import (
    WEIGHT_KEY,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Dtab,
    Leaf,
    NameBound,
    NameTree,
    Path,
    Var,
)
from turnout_namerd_mesh.convert import (
    from_bound_tree,
    from_dtab,
    from_path,
    from_path_tree,
    from_replicas,
    to_bound_tree,
    to_dtab,
    to_path,
    to_replicas,
)
from turnout_namerd_mesh.generated import dtab_pb2, resolver_pb2
from turnout_namerd_mesh.interpreter import exponential_jittered


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/s => /a",
        "/s/*/x => /a | /b & 0.3*/c;/t => !;/u => ~;/v => $",
        "/\\x00bin => /#/io.l5d.fs/web",
    ],
)
def test_dtabs_round_trip(text: str) -> None:
    dtab = Dtab.read(text)
    msg = to_dtab(dtab)
    again = dtab_pb2.Dtab.FromString(msg.SerializeToString())
    assert from_dtab(again) == dtab


def test_a_wildcard_is_its_own_element_and_a_star_label_is_a_label() -> None:
    msg = to_dtab(Dtab.read("/a/*/\\x2a => /b"))
    elems = msg.dentries[0].prefix.elems
    assert [e.WhichOneof("value") for e in elems] == ["label", "wildcard", "label"]
    assert elems[2].label == b"*"
    assert from_dtab(msg).show == Dtab.read("/a/*/\\x2a => /b").show


def test_bad_messages_are_value_errors() -> None:
    with pytest.raises(ValueError, match="label must not be empty"):
        from_path(dtab_pb2.Path(elems=[b""]))
    with pytest.raises(ValueError, match="illegal dentry"):
        from_dtab(dtab_pb2.Dtab(dentries=[dtab_pb2.Dtab.Dentry()]))
    deep = dtab_pb2.PathNameTree()
    node = deep
    for _ in range(200):
        node = node.alt.trees.add()
    node.neg.SetInParent()
    with pytest.raises(ValueError, match="deeper than"):  # (protobuf's decoder stops at 100)
        from_path_tree(deep)


def test_bound_trees_round_trip_with_the_address_of_each_leaf() -> None:
    addrs: dict[Path, Var[AddrBound]] = {}

    def addr_of(p: Path) -> Var[AddrBound]:
        return addrs.setdefault(p, Var(AddrBound([Address("10.0.0.1", 80)])))

    text = "/#/a | (0.7*/#/b & 0.3*/#/c/d) | ! | ~ | $"
    tree: NameTree[NameBound] = NameTree.read(text).map(
        lambda p: NameBound(p, addr_of(p), Path.read("/r"))
    )
    back = from_bound_tree(to_bound_tree(tree), addr_of)
    assert back == tree
    assert back.show == tree.show
    leaf = back.trees[0]  # type: ignore[attr-defined]
    assert isinstance(leaf, Leaf) and leaf.value.residual == Path.read("/r")


def test_replicas() -> None:
    bound = AddrBound(
        [
            Address("127.0.0.1", 8080, {WEIGHT_KEY: 2.0, "nodeName": "n1"}),
            Address("::1", 8081),
            Address("web.example", 80),  # (not an IP: left out, as Linkerd's endpoints are)
        ],
        {"authority": "web"},
    )
    msg = resolver_pb2.Replicas.FromString(to_replicas(bound).SerializeToString())
    assert [e.port for e in msg.bound.endpoints] == [8080, 8081]  # (sorted by host)
    v4 = msg.bound.endpoints[0]
    assert v4.inet_af == resolver_pb2.Endpoint.INET4 and v4.meta.nodeName == "n1"
    assert v4.metadata[WEIGHT_KEY] == "2.0"
    back = from_replicas(msg)
    assert isinstance(back, AddrBound)
    assert {(a.host, a.port) for a in back.addresses} == {("127.0.0.1", 8080), ("::1", 8081)}
    weighted = next(a for a in back.addresses if a.port == 8080)
    assert weighted.weight == 2.0 and weighted.meta["nodeName"] == "n1"
    assert back.meta == {"authority": "web"}
    for addr in (AddrNeg, AddrPending, AddrFailed("boom")):
        assert from_replicas(to_replicas(addr)) == addr
    assert from_replicas(resolver_pb2.Replicas()) == AddrNeg  # (Linkerd: no result is Neg)


def test_to_path_keeps_bytes() -> None:
    p = Path(b"a", b"\xff")
    assert from_path(to_path(p)) == p


def test_backoff_is_finagles_exponential_jittered() -> None:
    delays = list(itertools.islice(exponential_jittered(1.0, 10.0), 50))
    assert delays[0] == 1.0
    assert all(1.0 <= d <= 10.0 for d in delays)
    assert max(delays[5:]) > 2.0  # (it grows, with jitter)
    assert list(itertools.islice(exponential_jittered(5.0, 5.0), 3)) == [5.0, 5.0, 5.0]
