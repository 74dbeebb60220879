"""Bounded binding and delegation (issue 10, items 2 and 3).

A small dtab can describe an exponentially large tree: ``/s0=>/s1 & /s1; /s1=>/s2 & /s2; ...``
(nested unions) or ``/s0=>/s1 | /s1; ...`` (nested alternatives). Binding and delegation run
on the event loop, so their work is bounded: identical subtrees are shared, the nodes visited
and the size of the result are counted, and exceeding a bound fails the binding (or truncates
the delegate tree) with a message naming the limit.

No timings here (the machine is shared): the work is measured in lookups and nodes.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from turnout.errors import BindingError
from turnout.naming import (
    MAX_BIND_NODES,
    MAX_DELEGATE_NODES,
    MAX_NESTING,
    Alt,
    ConfiguredNamersInterpreter,
    DNode,
    Dtab,
    Failed,
    GlobalNamer,
    Leaf,
    Name,
    NameBound,
    NameTree,
    NameTreeTooLarge,
    Neg,
    Ok,
    Path,
    State,
    Union,
    delegate,
    delegate_once,
)
from turnout.naming.nametree import MAX_PARENS
from turnout.naming.render import delegate_text

delegate_module = importlib.import_module("turnout.naming.delegate")

P = Path.read
INET = "/$/inet/127.1/1"


class CountingInterpreter(ConfiguredNamersInterpreter):
    """The default interpreter, counting the lookups binding makes."""

    def __init__(self, **kw: Any) -> None:
        super().__init__([], GlobalNamer(), **kw)
        self.lookups = 0

    def lookup(self, dtab: Dtab, path: Path) -> State[NameTree[Name]]:
        self.lookups += 1
        return super().lookup(dtab, path)


def bind(interp: ConfiguredNamersInterpreter, dtab: str, path: str = "/svc/x") -> State[Any]:
    seen: list[State[Any]] = []
    interp.bind(Dtab.read(dtab), P(path)).observe(seen.append).close()
    return seen[0]


def nested(n: int, op: str, end: str) -> str:
    """``/s0=>/s1 <op> /s1; ...; /s<n>=>end; /svc/x=>/s0`` (the reports' attack dtabs)."""
    entries = [f"/s{i} => /s{i + 1} {op} /s{i + 1}" for i in range(n)]
    return ";".join([*entries, f"/s{n} => {end}", "/svc/x => /s0"])


def expanded(tree: NameTree[Any]) -> Iterator[NameTree[Any]]:
    """Every node of a tree, shared subtrees once per reference."""
    stack = [tree]
    while stack:
        t = stack.pop()
        yield t
        if isinstance(t, Alt):
            stack.extend(t.trees)
        elif isinstance(t, Union):
            stack.extend(w.tree for w in t.trees)


def dnodes(node: DNode) -> Iterator[DNode]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(c for _, c in n.children)


def test_limits_are_what_the_docs_say() -> None:
    assert (MAX_BIND_NODES, MAX_DELEGATE_NODES, MAX_NESTING, MAX_PARENS) == (5000, 1000, 100, 50)


# ---------------------------------------------------------------------------------------------
# binding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [15, 16])
def test_nested_unions_fail_fast_naming_the_limit(levels: int) -> None:
    # the report: 15 levels took 6.5 s (16: 8.3 s and +99 MB) and blocked every request
    interp = CountingInterpreter()
    state = bind(interp, nested(levels, "&", "/svc/web") + f";/svc/web=>{INET}")
    assert isinstance(state, Failed)
    assert isinstance(state.error, NameTreeTooLarge)
    assert isinstance(state.error, BindingError)
    assert str(state.error) == (
        f"Name tree too large: the bound tree exceeds the limit of {MAX_BIND_NODES} nodes"
    )
    # shared subtrees: one lookup per level (plus a few), not 2**levels
    assert interp.lookups <= levels + 5


def test_nested_unions_within_the_limit_bind_correctly_with_linear_work() -> None:
    interp = CountingInterpreter()
    state = bind(interp, nested(8, "&", INET))
    assert isinstance(state, Ok)
    nodes = list(expanded(state.value))
    leaves = [t for t in nodes if isinstance(t, Leaf)]
    assert len(leaves) == 2**8  # the tree Finagle builds, with its 256 leaves
    assert {str(leaf.value.id) for leaf in leaves} == {INET}
    assert len(nodes) == 2**9 - 1
    assert state.value.eval() == {leaves[0].value}
    assert interp.lookups <= 8 + 3


def test_nested_unions_of_a_smaller_budget_fail_earlier() -> None:
    interp = CountingInterpreter(max_nodes=100)
    state = bind(interp, nested(8, "&", INET))
    assert isinstance(state, Failed)
    assert "exceeds the limit of 100 nodes" in str(state.error)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("levels", [15, 16, 40])
def test_nested_alternatives_that_all_fail_cost_linear_work(levels: int) -> None:
    # every alternative is Neg, so Finagle's algorithm would try all 2**levels of them
    interp = CountingInterpreter()
    state = bind(interp, nested(levels, "|", "~"))
    assert state == Ok(Neg)
    assert interp.lookups <= levels + 5


@pytest.mark.parametrize("levels", [15, 16, 40])
def test_nested_alternatives_bind_their_first_branch(levels: int) -> None:
    interp = CountingInterpreter()
    state = bind(interp, nested(levels, "|", INET))
    assert isinstance(state, Ok)
    assert isinstance(state.value, Leaf) and str(state.value.value.id) == INET


def test_distinct_paths_exhaust_the_node_budget() -> None:
    # no sharing possible: every lookup makes new paths (/s/a, /s/b, /s/a/a, ...)
    interp = CountingInterpreter()
    state = bind(interp, "/svc/x=>/s;/s=>/s/a & /s/b")
    assert isinstance(state, Failed)
    assert str(state.error) == (
        f"Name tree too large: binding exceeds the limit of {MAX_BIND_NODES} nodes"
    )
    assert interp.lookups <= MAX_BIND_NODES


def test_what_a_lookup_builds_counts_against_the_budget() -> None:
    # a wide dst is rebuilt by every lookup: 600 nodes a lookup, so few lookups fit
    wide = " & ".join(f"/s/{i}" for i in range(600))
    interp = CountingInterpreter()
    state = bind(interp, f"/svc/x=>/s;/s=>{wide}")
    assert isinstance(state, Failed) and "binding exceeds the limit" in str(state.error)
    assert interp.lookups <= MAX_BIND_NODES // 600 + 2


def test_nesting_is_bounded() -> None:
    # two nested Alts per lookup: 100 of them before the depth limit
    state = bind(CountingInterpreter(), "/svc/x=>/a;/a=>(/a | ~) | ~")
    assert isinstance(state, Failed)
    assert str(state.error) == (
        f"Name tree too deep: more than {MAX_NESTING} nested alternatives or unions"
    )


def test_depth_limit_still_wins_in_a_plain_cycle() -> None:
    state = bind(CountingInterpreter(), "/s=>/s/srv", "/s")
    assert isinstance(state, Failed)
    assert str(state.error) == "Max recursion level: 100 reached in Namer lookup"


def test_weights_still_reach_shared_leaves() -> None:
    state = bind(CountingInterpreter(), f"/svc/x=>0.3*/a & 0.7*/a & /b;/a=>{INET};/b=>{INET}")
    assert isinstance(state, Ok)
    union = state.value
    assert isinstance(union, Union)
    assert [w.weight for w in union.trees] == [0.3, 0.7, 1.0]
    metas = []
    for w in union.trees:
        leaf = w.tree
        assert isinstance(leaf, Leaf) and isinstance(leaf.value, NameBound)
        metas.append(leaf.value.addr.value.meta.get("namer_nametree_weight"))
    assert metas == [0.3, 0.7, 1.0]


# ---------------------------------------------------------------------------------------------
# delegation (/delegator.json, turnout dtab delegate)
# ---------------------------------------------------------------------------------------------


class CountingLookups:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = delegate_module._Delegation.lookup

        def counting(this: Any, dentry: Any, path: Path) -> DNode:
            self.calls += 1
            return original(this, dentry, path)

        monkeypatch.setattr(delegate_module._Delegation, "lookup", counting)


def delegated(dtab: str, path: str = "/svc/x") -> DNode:
    interp = ConfiguredNamersInterpreter([], GlobalNamer())
    state = delegate_once(interp, Dtab.read(dtab), P(path))
    assert isinstance(state, Ok), state
    return state.value


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("levels", "op"), [(15, "&"), (16, "&"), (15, "|"), (16, "|"), (40, "|")])
def test_delegation_of_a_huge_tree_is_truncated_with_a_note(
    levels: int, op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the report: 40 nested alternatives never answered and grew RSS by 150 MB
    lookups = CountingLookups(monkeypatch)
    tree = delegated(nested(levels, op, INET))
    nodes = list(dnodes(tree))
    assert len(nodes) <= MAX_DELEGATE_NODES + 2 * levels
    assert lookups.calls <= 2 * levels + 5  # shared subtrees
    cut = [n for n in nodes if n.kind == "exception"]
    assert cut and all(str(n.value).startswith("Delegation truncated: ") for n in cut)
    assert f"limit of {MAX_DELEGATE_NODES} nodes" in str(cut[0].value)
    j = tree.to_json()
    assert j["note"].startswith("Delegation truncated: the tree exceeds the limit of 1000 nodes")
    assert j["type"] == "delegate" and j["path"] == "/svc/x"
    assert len(json.dumps(j)) < 1_000_000
    text = delegate_text(tree)
    assert text[0] == f"note: {j['note']}"
    assert text[1] == "/svc/x"


def test_delegation_shows_a_shared_subtree_in_full_when_it_fits() -> None:
    tree = delegated(nested(5, "&", INET))
    assert tree.note is None
    assert "note" not in tree.to_json()
    assert len(tree.leaves()) == 2**5
    assert not [n for n in dnodes(tree) if n.kind == "exception"]
    # every level explains the same way: a union of two /s<i+1> delegations
    level = tree.child
    for i in range(5):
        assert level.kind == "union" and level.path == P(f"/s{i}")
        assert [c.path for _, c in level.children] == [P(f"/s{i + 1}")] * 2
        level = level.children[1][1]


def test_delegation_of_wide_lookups_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups = CountingLookups(monkeypatch)
    wide = " | ".join(f"/s/{i}" for i in range(600))
    tree = delegated(f"/svc/x=>/s;/s=>{wide}")
    assert tree.note is not None
    assert len(list(dnodes(tree))) <= 3 * MAX_DELEGATE_NODES
    assert lookups.calls <= 10
    rest = [n for n in dnodes(tree) if "more branches not shown" in str(n.value)]
    assert rest


def test_delegation_keeps_the_recursion_limit_semantics() -> None:
    j = delegated("/s=>/s/srv;/svc/x=>/s | /$/inet/127.1/1").to_json()
    assert j["alt"][0]["message"] == "Max recursion level reached."
    with pytest.raises(BindingError, match=r"Max recursion level reached\."):
        delegated("/s=>/s/srv", "/s")


def test_async_delegate_answers_truncated() -> None:
    interp = ConfiguredNamersInterpreter([], GlobalNamer())
    dtab = Dtab.read(nested(40, "|", INET))
    tree = asyncio.run(delegate(interp, dtab, P("/svc/x"), timeout=5.0))
    assert tree.note is not None
    assert {str(b.id) for b in tree.leaves()} == {INET}


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------


def test_parentheses_nest_at_most_max_parens_deep() -> None:
    ok = "(" * MAX_PARENS + "/a | /b" + ")" * MAX_PARENS
    assert NameTree.read(ok) == Alt(Leaf(P("/a")), Leaf(P("/b")))
    deep = "(" * (MAX_PARENS + 1) + "/a" + ")" * (MAX_PARENS + 1)
    with pytest.raises(ValueError, match="at most 50 nested parentheses expected"):
        NameTree.read(deep)
    with pytest.raises(ValueError, match="nested parentheses"):
        Dtab.read("/a=>" + "(/b | " * 5000 + "/c" + ")" * 5000)


def test_delegation_nesting_is_bounded() -> None:
    tree = delegated("/svc/x=>/a;/a=>(/a | ~) | ~")
    assert tree.note is not None
    messages = {str(n.value) for n in dnodes(tree) if n.kind == "exception"}
    assert f"Delegation truncated: more than {MAX_NESTING} nested alternatives or unions" in (
        messages
    )
    assert json.dumps(tree.to_json())  # deep, but within Python's recursion limit
    assert delegate_text(tree)


# ---------------------------------------------------------------------------------------------
# the CLI (turnout dtab bind / delegate), in-process
# ---------------------------------------------------------------------------------------------


def test_cli_bind_fails_naming_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from turnout.cli import main

    assert main(["dtab", "bind", "--dtab", nested(16, "&", INET), "/svc/x"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "turnout: binding /svc/x failed: Name tree too large: the bound tree exceeds the "
        f"limit of {MAX_BIND_NODES} nodes\n"
    )


@pytest.mark.timeout(60)
def test_cli_delegate_prints_a_truncated_tree_with_the_note(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from turnout.cli import main

    assert main(["dtab", "delegate", "--dtab", nested(40, "|", INET), "/svc/x"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dtab: /s0=>/s1 | /s1;")
    assert lines[1].startswith("note: Delegation truncated: the tree exceeds the limit of 1000")
    assert lines[2] == "/svc/x"
    assert any("=> error: Delegation truncated: " in line for line in lines)
    assert len(lines) < 3 * MAX_DELEGATE_NODES
    assert main(["dtab", "delegate", "--json", "--dtab", nested(40, "|", INET), "/svc/x"]) == 0
    assert json.loads(capsys.readouterr().out)["note"].startswith("Delegation truncated")
