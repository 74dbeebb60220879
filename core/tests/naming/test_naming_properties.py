"""Property tests of the naming parsers and of binding (hypothesis).

- every Path, Prefix, Dentry, Dtab and NameTree prints to text that parses back to an equal
  value (weights are generated with two decimals: the canonical text prints two);
- arbitrary text makes the parsers raise nothing but ``ValueError`` (``ParseError``);
- a dtab's indexed lookup agrees with a plain scan of its entries;
- binding with shared subtrees gives what the spec's algorithm gives.

Inputs are kept small (sizes bounded below) and ``deadline=None``: the machine may be loaded,
and a slow example is not a failure here.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from turnout.errors import BindingError
from turnout.naming import (
    ANY,
    Alt,
    ConfiguredNamersInterpreter,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Failed,
    GlobalNamer,
    Leaf,
    NameBound,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    Prefix,
    State,
    Union,
    Weighted,
    bind_once,
)
from turnout.naming._scanner import SHOWABLE
from turnout.naming.binding import _weighted

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------

showable_labels = st.text(alphabet=sorted(SHOWABLE), min_size=1, max_size=6).map(str.encode)
labels = st.one_of(showable_labels, st.binary(min_size=1, max_size=4))
paths = st.lists(labels, max_size=5).map(lambda ls: Path(*ls))
prefixes = st.lists(st.one_of(labels, st.just(ANY)), max_size=4).map(lambda es: Prefix(*es))
#: weights the canonical text keeps exactly: two decimals, not negative
weights = st.integers(min_value=0, max_value=10**6).map(lambda k: float(Decimal(k) / 100))


def _trees(leaves: st.SearchStrategy[NameTree[Path]]) -> st.SearchStrategy[NameTree[Path]]:
    def extend(children: st.SearchStrategy[NameTree[Path]]) -> st.SearchStrategy[Any]:
        alts = st.lists(children, min_size=2, max_size=4).map(lambda ts: Alt(*ts))
        branches = st.lists(st.tuples(weights, children), min_size=2, max_size=4)
        unions = branches.map(lambda bs: Union(*(Weighted(w, t) for w, t in bs)))
        return st.one_of(alts, unions)

    return st.recursive(leaves, extend, max_leaves=12)


constants = st.sampled_from([Neg, Fail, Empty])
trees = _trees(st.one_of(paths.map(Leaf), constants))
dentries = st.builds(Dentry, prefixes, trees)
dtabs = st.lists(dentries, max_size=5).map(Dtab)

#: text near the grammar (more likely to get deep into the parsers than random text)
grammar_text = st.text(
    alphabet=[*"/ab.*_\\x2f0123456789()|&~!$=>;#\n\t ", "\u00e9", "\u0663", "\u2003"],
    max_size=60,
)
any_text = st.one_of(st.text(max_size=60), grammar_text)

# --- round trips --------------------------------------------------------------------------


@SETTINGS
@given(paths)
def test_path_round_trip(path: Path) -> None:
    assert Path.read(str(path)) == path


@SETTINGS
@given(prefixes)
def test_prefix_round_trip(prefix: Prefix) -> None:
    assert Prefix.read(str(prefix)) == prefix


@SETTINGS
@given(trees)
def test_name_tree_round_trip(tree: NameTree[Path]) -> None:
    assert NameTree.read(str(tree)) == tree


@SETTINGS
@given(dentries)
def test_dentry_round_trip(dentry: Dentry) -> None:
    assert Dentry.read(str(dentry)) == dentry


@SETTINGS
@given(dtabs)
def test_dtab_round_trip(dtab: Dtab) -> None:
    assert Dtab.read(str(dtab)) == dtab


# --- arbitrary text -----------------------------------------------------------------------

PARSERS = (Path.read, Prefix.read, NameTree.read, Dentry.read, Dtab.read)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_parsers_raise_only_value_error(text: str) -> None:
    for parse in PARSERS:
        try:
            value = parse(text)
        except ValueError:
            continue
        str(value)  # whatever parses also prints


@SETTINGS
@given(st.integers(min_value=1, max_value=3000), st.sampled_from("(|&"))
def test_deeply_nested_text_is_a_value_error(n: int, c: str) -> None:
    text = {"(": "(" * n + "/a" + ")" * n, "|": "/a | (" * n, "&": "/a & (" * n}[c]
    for parse in (NameTree.read, Dtab.read):
        with contextlib.suppress(ValueError):
            parse(text if parse is NameTree.read else "/x=>" + text)


# --- dtab lookup --------------------------------------------------------------------------

small_labels = st.sampled_from([b"a", b"b", b"c"])
small_paths = st.lists(small_labels, max_size=4).map(lambda ls: Path(*ls))
small_prefixes = st.lists(st.one_of(small_labels, st.just(ANY)), max_size=3).map(
    lambda es: Prefix(*es)
)


def scan_lookup(dtab: Dtab, path: Path) -> NameTree[Path]:
    """Finagle's lookup, as written: every entry, the last first."""
    matches = []
    for e in reversed(dtab.entries):
        elems = e.prefix.elems
        if len(elems) <= len(path) and all(
            x is ANY or x == y for x, y in zip(elems, path.elems, strict=False)
        ):
            rest = path.drop(len(elems))
            matches.append(e.dst.map(lambda p, rest=rest: p + rest))
    if not matches:
        return Neg
    return matches[0] if len(matches) == 1 else Alt(*matches)


@SETTINGS
@given(st.lists(st.builds(Dentry, small_prefixes, trees), max_size=8), small_paths)
def test_indexed_lookup_agrees_with_a_scan(entries: list[Dentry], path: Path) -> None:
    dtab = Dtab(entries)
    assert dtab.lookup(path) == scan_lookup(dtab, path)


# --- binding ------------------------------------------------------------------------------

bind_leaves = st.sampled_from(["/a", "/b", "/a/b", "/c/a", "/$/inet/127.1/1", "/$/inet/127.1/2"])
bind_trees = _trees(st.one_of(bind_leaves.map(lambda t: Leaf(Path.read(t))), constants))
bind_dtabs = st.lists(st.builds(Dentry, small_prefixes, bind_trees), max_size=3).map(Dtab)
MAX_DEPTH = 4


def reference_bind(lookup: Any, t: NameTree[Any], depth: int, weight: float | None) -> State[Any]:
    """Spec §6, word for word (no sharing, no budget)."""
    if depth > MAX_DEPTH:
        return Failed(BindingError(f"Max recursion level: {MAX_DEPTH} reached in Namer lookup"))
    if isinstance(t, Leaf):
        if isinstance(t.value, NameBound):
            return Ok(Leaf(_weighted(t.value, weight)))
        state = lookup(t.value)
        if isinstance(state, Ok):
            return reference_bind(lookup, state.value, depth + 1, weight)
        return state
    if t is Neg or t is Fail or t is Empty:
        return Ok(t)
    if isinstance(t, Union):
        if not t.trees:
            return Ok(Neg)
        if len(t.trees) == 1:
            return reference_bind(lookup, t.trees[0].tree, depth, t.trees[0].weight)
        results = [(w.weight, reference_bind(lookup, w.tree, depth, w.weight)) for w in t.trees]
        oks = [Weighted(w, s.value) for w, s in results if isinstance(s, Ok)]
        if oks:
            return Ok(Union(*oks).simplified)
        failed = [s for _, s in results if isinstance(s, Failed)]
        return failed[0] if failed else Pending
    assert isinstance(t, Alt)
    for branch in t.trees:
        state = reference_bind(lookup, branch, depth, weight)
        if not isinstance(state, Ok) or state.value is not Neg:
            return state
    return Ok(Neg)


def describe(tree: NameTree[Any]) -> Any:
    """A bound tree as plain data, the leaves' address metadata (weights) included."""
    if isinstance(tree, Leaf):
        b = tree.value
        return ("leaf", str(b.id), str(b.residual), sorted(b.addr.value.meta.items()))
    if isinstance(tree, Union):
        return ("union", [(w.weight, describe(w.tree)) for w in tree.trees])
    assert not isinstance(tree, Alt), "bound trees have no Alt"
    return repr(tree)


def outcome(state: State[Any]) -> Any:
    if isinstance(state, Failed):
        return ("failed", type(state.error).__name__, str(state.error))
    if isinstance(state, Ok):
        return ("ok", describe(state.value))
    return state


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(bind_dtabs, st.sampled_from(["/a", "/b/c", "/c/a/b"]))
def test_shared_binding_gives_what_the_spec_gives(dtab: Dtab, path: str) -> None:
    interp = ConfiguredNamersInterpreter([], GlobalNamer())

    def lookup(p: Path) -> State[Any]:
        return interp.lookup(dtab, p)

    expected = reference_bind(lookup, Leaf(Path.read(path)), 0, None)
    got = bind_once(lookup, Leaf(Path.read(path)), MAX_DEPTH, max_nodes=10**7)
    assert outcome(got) == outcome(expected)
