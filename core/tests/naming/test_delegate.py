"""Delegation (spec §8): delegate trees, their /delegator.json form and text renderings."""

import asyncio
import json
from pathlib import Path as FsPath
from typing import Any

import pytest
from turnout.builtin.namers import FsNamerConfig
from turnout.errors import BindingError
from turnout.naming import (
    Activity,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    ConfiguredNamersInterpreter,
    DNode,
    Dtab,
    Empty,
    Fail,
    GlobalNamer,
    Leaf,
    NameBound,
    Namer,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    Union,
    Var,
    Weighted,
    delegate,
    delegate_once,
)
from turnout.naming.render import (
    bound_tree_json,
    bound_tree_text,
    delegate_text,
    describe_addr,
)
from turnout.testing.config import build_context

P = Path.read


class CtlNamer(Namer):
    """A namer whose answers the test controls: one Activity per path (default Neg)."""

    def __init__(self) -> None:
        self.acts: dict[Path, Activity[NameTree[Any]]] = {}

    def act(self, path: str) -> Activity[NameTree[Any]]:
        return self.acts.setdefault(P(path), Activity.of(Neg))

    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        return self.acts.setdefault(path, Activity.of(Neg))


def interpreter(*namers: tuple[str, Namer]) -> ConfiguredNamersInterpreter:
    return ConfiguredNamersInterpreter([(P(prefix), n) for prefix, n in namers], GlobalNamer())


def tree_of(dtab: str, path: str, interp: ConfiguredNamersInterpreter | None = None) -> DNode:
    state = delegate_once(interp or interpreter(), Dtab.read(dtab), P(path))
    assert isinstance(state, Ok), state
    return state.value


def compact(j: dict[str, Any]) -> str:
    return json.dumps(j, separators=(",", ":"))


def inet_json(port: int) -> dict[str, Any]:
    return {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": port, "meta": {}}], "meta": {}}


# ---------------------------------------------------------------------------------------------
# the linkerd1-features.md §2.3 example
# ---------------------------------------------------------------------------------------------

EXAMPLE = (
    '{"type":"delegate","path":"/svc/cat","delegate":'
    '{"type":"leaf","path":"/#/io.l5d.fs/cat","dentry":{"prefix":"/svc","dst":"/#/io.l5d.fs"},'
    '"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8888,"meta":{}}],"meta":{}},'
    '"id":"/#/io.l5d.fs/cat","path":"/"}}}'
)


def fs_interpreter(root: FsPath) -> ConfiguredNamersInterpreter:
    config = FsNamerConfig(root_dir=str(root))
    return ConfiguredNamersInterpreter(
        [(config.effective_prefix, config.new_namer(build_context()))], GlobalNamer()
    )


def test_example_json_exactly(tmp_path: FsPath) -> None:
    (tmp_path / "cat").write_text("127.0.0.1 8888\n")
    interp = fs_interpreter(tmp_path)
    dtab, path = Dtab.read("/svc=>/#/io.l5d.fs"), P("/svc/cat")

    async def main() -> DNode:
        # a router already routes to /svc/cat: its binding and addresses are being watched
        bound = interp.bind(dtab, path)
        obs = bound.observe(lambda _: None)
        tree = bound.value
        assert isinstance(tree, Ok) and isinstance(tree.value, Leaf)
        addr_obs = tree.value.value.addr.observe(lambda _: None)
        try:
            return await delegate(interp, dtab, path)
        finally:
            addr_obs.close()
            obs.close()

    node = asyncio.run(main())
    assert compact(node.to_json()) == EXAMPLE
    assert list(node.to_json()) == ["type", "path", "delegate"]
    assert list(node.child.to_json()) == ["type", "path", "dentry", "bound"]


def test_example_json_exactly_without_prior_traffic(tmp_path: FsPath) -> None:
    (tmp_path / "cat").write_text("127.0.0.1 8888\n")
    interp = fs_interpreter(tmp_path)
    node = asyncio.run(delegate(interp, Dtab.read("/svc=>/#/io.l5d.fs"), P("/svc/cat")))
    assert compact(node.to_json()) == EXAMPLE


# ---------------------------------------------------------------------------------------------
# tree shapes and JSON
# ---------------------------------------------------------------------------------------------


def test_all_alternatives_are_bound_and_neg_is_kept() -> None:
    node = tree_of("/svc=>/$/inet/127.1/8080;/svc=>~", "/svc/x")
    assert node.to_json() == {
        "type": "alt",
        "path": "/svc/x",
        "alt": [
            {"type": "neg", "path": "~", "dentry": {"prefix": "/svc", "dst": "~"}},
            {
                "type": "leaf",
                "path": "/$/inet/127.1/8080/x",
                "dentry": {"prefix": "/svc", "dst": "/$/inet/127.1/8080"},
                "bound": {"addr": inet_json(8080), "id": "/$/inet/127.1/8080", "path": "/x"},
            },
        ],
    }


def test_every_alternative_is_bound_not_only_the_first() -> None:
    node = tree_of("/svc=>/$/inet/127.1/1;/svc=>/$/inet/127.1/2", "/svc")
    assert node.kind == "alt"
    assert [str(b.id) for b in node.leaves()] == ["/$/inet/127.1/2", "/$/inet/127.1/1"]


def test_alt_in_a_dst_keeps_negative_branches_with_their_paths() -> None:
    node = tree_of("/svc=>/nothing | /$/inet/127.1/1", "/svc")
    j = node.to_json()
    assert j["type"] == "alt" and j["path"] == "/svc" and "dentry" not in j
    assert j["alt"][0] == {
        "type": "neg",
        "path": "/nothing",
        "dentry": {"prefix": "/svc", "dst": "/nothing | /$/inet/127.1/1"},
    }
    assert j["alt"][1]["bound"]["id"] == "/$/inet/127.1/1"


def test_unmatched_path_is_a_neg_node_with_its_path() -> None:
    assert tree_of("/a=>/b", "/nothing").to_json() == {"type": "neg", "path": "/nothing"}


@pytest.mark.parametrize(
    ("dst", "fail_path"),
    [("!", "!"), ("/$/fail", "/$/fail/x"), ("/$/fail/y", "/$/fail/y/x")],
)
def test_fail_path_rendering(dst: str, fail_path: str) -> None:
    j = tree_of(f"/svc=>{dst}", "/svc/x").to_json()
    assert j == {
        "type": "delegate",
        "path": "/svc/x",
        "delegate": {"type": "fail", "path": fail_path, "dentry": {"prefix": "/svc", "dst": dst}},
    }


@pytest.mark.parametrize(("dst", "kind"), [("$", "empty"), ("/$/nil", "empty")])
def test_empty_nodes(dst: str, kind: str) -> None:
    j = tree_of(f"/svc=>{dst}", "/svc").to_json()
    assert j["delegate"]["type"] == kind


def test_union_weights_are_kept() -> None:
    j = tree_of("/svc=>0.3*/$/inet/127.1/1 & 0.7*/$/inet/127.1/2", "/svc").to_json()
    assert j["type"] == "union" and j["path"] == "/svc"
    assert [b["weight"] for b in j["union"]] == [0.3, 0.7]
    first = j["union"][0]["tree"]
    assert first["type"] == "leaf"
    assert first["dentry"] == {
        "prefix": "/svc",
        "dst": "0.30*/$/inet/127.1/1 & 0.70*/$/inet/127.1/2",
    }
    assert first["bound"] == {"addr": inet_json(1), "id": "/$/inet/127.1/1", "path": "/"}
    assert j["union"][1]["tree"]["bound"]["id"] == "/$/inet/127.1/2"


def test_union_keeps_negative_branches_and_adds_no_weight_metadata() -> None:
    j = tree_of("/svc=>1*/nothing & 2*/$/inet/127.1/1", "/svc").to_json()
    assert [b["tree"]["type"] for b in j["union"]] == ["neg", "leaf"]
    assert j["union"][1]["tree"]["bound"]["addr"]["meta"] == {}


def test_unknown_global_namer_is_an_exception_node() -> None:
    j = tree_of("/svc=>/$/unknown", "/svc/x").to_json()
    assert j == {
        "type": "delegate",
        "path": "/svc/x",
        "delegate": {
            "type": "exception",
            "path": "/$/unknown/x",
            "dentry": {"prefix": "/svc", "dst": "/$/unknown"},
            "message": "Unknown namer: unknown for path: /$/unknown/x",
        },
    }


def test_namer_rewrite_leaves_no_node_of_its_own() -> None:
    ctl = CtlNamer()
    ctl.act("/web").update(Ok(Leaf(P("/$/inet/127.1/5"))))
    node = tree_of("/svc=>/#/ctl", "/svc/web", interpreter(("/ctl", ctl)))
    assert node.kind == "delegate"
    assert node.child.kind == "leaf"
    assert str(node.child.path) == "/$/inet/127.1/5"
    assert "/#/ctl/web" not in json.dumps(node.to_json())


# ---------------------------------------------------------------------------------------------
# recursion limit
# ---------------------------------------------------------------------------------------------


def chain(n: int, end: str) -> str:
    return ";".join(f"/s{i}=>/s{i + 1}" for i in range(n - 1)) + f";/s{n - 1}=>{end}"


def test_recursion_limit_under_a_multi_branch_alt_is_an_exception_node() -> None:
    j = tree_of("/s=>/s/srv;/a=>/s | /$/inet/127.1/1", "/a").to_json()
    assert j["type"] == "alt"
    assert j["alt"][0] == {
        "type": "exception",
        "path": "/a",
        "dentry": {"prefix": "/a", "dst": "/s | /$/inet/127.1/1"},
        "message": "Max recursion level reached.",
    }
    assert j["alt"][1]["bound"]["id"] == "/$/inet/127.1/1"


def test_recursion_limit_under_dtab_alternatives_carries_the_alt_path() -> None:
    j = tree_of("/s=>/s/srv;/a=>/$/inet/127.1/1;/a=>/s", "/a").to_json()
    assert j["type"] == "alt"
    assert j["alt"][0] == {
        "type": "exception",
        "path": "/a",
        "message": "Max recursion level reached.",
    }


@pytest.mark.parametrize("dtab", ["/s=>/s/srv", "/s=>/s/srv;/a=>/s"])
def test_recursion_limit_at_top_level_raises(dtab: str) -> None:
    with pytest.raises(BindingError, match=r"Max recursion level reached\."):
        delegate_once(interpreter(), Dtab.read(dtab), P("/a" if "/a=>" in dtab else "/s"))
    with pytest.raises(BindingError):
        asyncio.run(delegate(interpreter(), Dtab.read(dtab), P("/s")))


def test_recursion_depth_matches_binding() -> None:
    node = tree_of(chain(99, "/$/inet/127.1/1"), "/s0")
    assert [str(b.id) for b in node.leaves()] == ["/$/inet/127.1/1"]
    with pytest.raises(BindingError):
        tree_of(chain(100, "/$/inet/127.1/1"), "/s0")


# ---------------------------------------------------------------------------------------------
# pending lookups and addresses
# ---------------------------------------------------------------------------------------------


def test_delegate_waits_for_a_pending_namer() -> None:
    ctl = CtlNamer()
    act = ctl.act("/web")
    act.update(Pending)
    interp = interpreter(("/ctl", ctl))
    dtab, path = Dtab.read("/svc=>/#/ctl"), P("/svc/web")
    assert delegate_once(interp, dtab, path) is Pending

    async def main() -> DNode:
        task = asyncio.create_task(delegate(interp, dtab, path, timeout=2.0))
        await asyncio.sleep(0.02)
        assert not task.done()
        addr = Var(AddrBound([Address("10.0.0.1", 80)]))
        act.update(Ok(Leaf(NameBound(P("/#/ctl/web"), addr))))
        return await task

    node = asyncio.run(main())
    assert node.child.to_json()["bound"] == {
        "addr": {
            "type": "bound",
            "addrs": [{"ip": "10.0.0.1", "port": 80, "meta": {}}],
            "meta": {},
        },
        "id": "/#/ctl/web",
        "path": "/",
    }
    assert not act.observed


def test_delegate_times_out_on_a_namer_that_stays_pending() -> None:
    ctl = CtlNamer()
    act = ctl.act("/web")
    act.update(Pending)
    interp = interpreter(("/ctl", ctl))
    with pytest.raises(TimeoutError):
        asyncio.run(delegate(interp, Dtab.read("/svc=>/#/ctl"), P("/svc/web"), timeout=0.05))
    assert not act.observed


def test_delegate_waits_for_pending_addresses_until_the_deadline() -> None:
    ctl = CtlNamer()
    slow, late = Var(AddrPending), Var(AddrPending)
    ctl.act("/slow").update(Ok(Leaf(NameBound(P("/#/ctl/slow"), slow))))
    ctl.act("/late").update(Ok(Leaf(NameBound(P("/#/ctl/late"), late))))
    interp = interpreter(("/ctl", ctl))

    async def main() -> tuple[DNode, DNode]:
        never = await delegate(interp, Dtab.read("/svc=>/#/ctl"), P("/svc/slow"), timeout=0.05)
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, late.update, AddrBound([Address("10.0.0.7", 7)]))
        later = await delegate(interp, Dtab.read("/svc=>/#/ctl"), P("/svc/late"), timeout=1.0)
        return never, later

    never, later = asyncio.run(main())
    assert never.child.to_json()["bound"]["addr"] == {"type": "pending"}
    assert later.child.to_json()["bound"]["addr"]["addrs"][0]["ip"] == "10.0.0.7"


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        (AddrNeg, {"type": "neg"}),
        (AddrFailed("dns down"), {"type": "failed", "cause": "dns down"}),
        (
            AddrBound([Address("10.0.0.2", 2, {"endpoint_addr_weight": 0.5})], {"k": "v"}),
            {
                "type": "bound",
                "addrs": [{"ip": "10.0.0.2", "port": 2, "meta": {"endpoint_addr_weight": 0.5}}],
                "meta": {"k": "v"},
            },
        ),
    ],
)
def test_leaf_addr_json(addr: Any, expected: dict[str, Any]) -> None:
    ctl = CtlNamer()
    ctl.act("/x/r").update(Ok(Leaf(NameBound(P("/#/ctl/x"), Var(addr), P("/r")))))
    node = tree_of("", "/#/ctl/x/r", interpreter(("/ctl", ctl)))
    assert node.to_json() == {
        "type": "leaf",
        "path": "/#/ctl/x/r",
        "bound": {"addr": expected, "id": "/#/ctl/x", "path": "/r"},
    }


# ---------------------------------------------------------------------------------------------
# human renderings
# ---------------------------------------------------------------------------------------------


def test_delegate_text_names_the_bound_id_and_addresses() -> None:
    text = "\n".join(delegate_text(tree_of("/svc=>/$/inet/127.1/8080;/svc=>~", "/svc/x")))
    for fact in ["/svc/x", "bound /$/inet/127.1/8080", "residual /x", "127.0.0.1:8080", "~"]:
        assert fact in text, (fact, text)
    assert "via /svc=>/$/inet/127.1/8080" in text


def test_delegate_text_for_unions_fail_and_errors() -> None:
    text = "\n".join(delegate_text(tree_of("/svc=>0.3*/$/inet/127.1/1 & 0.7*/$/unknown", "/svc")))
    assert "0.30" in text and "0.70" in text
    assert "127.0.0.1:1" in text
    assert "Unknown namer: unknown" in text
    assert "fail" in "\n".join(delegate_text(tree_of("/svc=>!", "/svc")))


def test_bound_tree_text_and_json() -> None:
    a = NameBound(P("/#/x/a"), Var(AddrBound([Address("10.0.0.1", 80)])), P("/rest"))
    b = NameBound(P("/#/x/b"), Var(AddrBound()))
    tree = Union(Weighted(0.25, Leaf(a)), Weighted(0.75, Leaf(b)))
    text = "\n".join(bound_tree_text(tree))
    for fact in ["/#/x/a", "residual /rest", "10.0.0.1:80", "/#/x/b", "no endpoints", "0.25"]:
        assert fact in text, (fact, text)
    assert bound_tree_json(tree) == {
        "type": "union",
        "trees": [
            {
                "weight": 0.25,
                "tree": {
                    "type": "leaf",
                    "id": "/#/x/a",
                    "residual": "/rest",
                    "addr": {"type": "bound", "addrs": ["10.0.0.1:80"], "meta": {}},
                },
            },
            {
                "weight": 0.75,
                "tree": {
                    "type": "leaf",
                    "id": "/#/x/b",
                    "residual": "/",
                    "addr": {"type": "bound", "addrs": [], "meta": {}},
                },
            },
        ],
    }
    for t, word in [(Neg, "neg"), (Fail, "fail"), (Empty, "empty")]:
        assert bound_tree_json(t) == {"type": word}
        assert word in bound_tree_text(t)[0]


@pytest.mark.parametrize(
    ("addr", "fact"),
    [
        (AddrBound([Address("10.0.0.1", 80, {"endpoint_addr_weight": 2.0})]), "10.0.0.1:80"),
        (AddrBound([Address("10.0.0.1", 80, {"endpoint_addr_weight": 2.0})]), "2.0"),
        (AddrBound([Address("::1", 80)]), "[::1]:80"),
        (AddrBound(), "no endpoints"),
        (AddrFailed("dns down"), "dns down"),
        (AddrNeg, "neg"),
        (AddrPending, "pending"),
    ],
)
def test_describe_addr(addr: Any, fact: str) -> None:
    assert fact in describe_addr(addr)
