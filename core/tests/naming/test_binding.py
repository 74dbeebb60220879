"""Binding (spec §6) through the default interpreter and the global namer (§7)."""

import pytest
from turnout.errors import BindingError, UnknownNamerError
from turnout.naming import (
    Activity,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    ConfiguredNamersInterpreter,
    Dtab,
    Empty,
    Fail,
    Failed,
    GlobalNamer,
    Leaf,
    NameBound,
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
    resolve,
)
from turnout.naming.addr import NAMETREE_WEIGHT_KEY

P = Path.read


class CtlNamer(Namer):
    """A namer whose answers the test controls: one Activity per path (default Neg)."""

    def __init__(self, name: str = "ctl") -> None:
        self.name = name
        self.acts: dict[Path, Activity[NameTree[object]]] = {}
        self.calls: list[Path] = []

    def act(self, path: str, state: State[object] | None = None) -> Activity[NameTree[object]]:
        act = self.acts.setdefault(P(path), Activity.of(Neg))
        if state is not None:
            act.update(state)
        return act

    def lookup(self, path: Path) -> Activity[NameTree[object]]:
        self.calls.append(path)
        return self.acts.setdefault(path, Activity.of(Neg))


def bound(id: str, *addrs: tuple[str, int], residual: str = "/") -> NameBound:
    return NameBound(P(id), Var(AddrBound(Address(h, p) for h, p in addrs)), P(residual))


def interpreter(*namers: tuple[str, Namer]) -> ConfiguredNamersInterpreter:
    return ConfiguredNamersInterpreter([(P(prefix), n) for prefix, n in namers], GlobalNamer())


def bind(interp: ConfiguredNamersInterpreter, dtab: str, path: str) -> State[NameTree[NameBound]]:
    """The binding as an observer first sees it (observed, then released)."""
    seen: list[State[NameTree[NameBound]]] = []
    interp.bind(Dtab.read(dtab), P(path)).observe(seen.append).close()
    return seen[0]


def ok_tree(state: State[NameTree[NameBound]]) -> NameTree[NameBound]:
    assert isinstance(state, Ok), state
    return state.value


def leaf_id(state: State[NameTree[NameBound]]) -> str:
    tree = ok_tree(state)
    assert isinstance(tree, Leaf), tree
    return str(tree.value.id)


def observed_meta(b: NameBound) -> dict[str, object]:
    seen: list[object] = []
    b.addr.observe(seen.append).close()
    addr = seen[-1]
    assert isinstance(addr, AddrBound), addr
    return dict(addr.meta)


INET1 = "/$/inet/127.1/1"
INET2 = "/$/inet/127.1/2"


# ---------------------------------------------------------------------------------------------
# the global namer
# ---------------------------------------------------------------------------------------------


def test_inet_binds_host_port_with_residual() -> None:
    tree = ok_tree(bind(interpreter(), "", "/$/inet/127.1/8080/foo/bar"))
    assert isinstance(tree, Leaf)
    b = tree.value
    assert b.id == P("/$/inet/127.1/8080")
    assert b.residual == P("/foo/bar")
    assert b.addr.value == AddrBound([Address("127.0.0.1", 8080)])


@pytest.mark.parametrize(
    ("path", "id", "residual", "host", "port"),
    [
        ("/$/inet/8080", "/$/inet/8080", "/", "127.0.0.1", 8080),
        ("/$/inet/8080/x", "/$/inet/8080", "/x", "127.0.0.1", 8080),
        ("/$/inet/10.1.2.3/80", "/$/inet/10.1.2.3/80", "/", "10.1.2.3", 80),
        ("/$/fixedinet/127.1/9/r", "/$/fixedinet/127.1/9", "/r", "127.0.0.1", 9),
        ("/$/inet/1/2", "/$/inet/1/2", "/", "0.0.0.1", 2),  # host:port beats port-only
    ],
)
def test_inet_forms(path: str, id: str, residual: str, host: str, port: int) -> None:
    tree = ok_tree(bind(interpreter(), "", path))
    assert isinstance(tree, Leaf)
    assert (str(tree.value.id), str(tree.value.residual)) == (id, residual)
    assert tree.value.addr.value == AddrBound([Address(host, port)])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/$/nil", Empty),
        ("/$/nil/x/y", Empty),
        ("/$/fail", Fail),
        ("/$/fail/x", Fail),
        ("/$", Neg),
        ("/#/nothing", Neg),
        ("/plain", Neg),
    ],
)
def test_global_constants(path: str, expected: NameTree[object]) -> None:
    assert bind(interpreter(), "", path) == Ok(expected)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/$/inet/h/notanint", "Unknown namer: inet for path: /$/inet/h/notanint"),
        ("/$/inet", "Unknown namer: inet for path: /$/inet"),
        ("/$/unknown/x", "Unknown namer: unknown for path: /$/unknown/x"),
        ("/$/failure", "Unknown namer: failure for path: /$/failure"),
    ],
)
def test_unknown_global_namer_fails(path: str, message: str) -> None:
    state = bind(interpreter(), "", path)
    assert isinstance(state, Failed)
    assert isinstance(state.error, UnknownNamerError)
    assert str(state.error) == message


def test_named_global_namer_is_consulted() -> None:
    rw = CtlNamer()
    rw.act("/x", Ok(Leaf(P(INET1))))
    interp = ConfiguredNamersInterpreter([], GlobalNamer({"my.namer": rw}))
    state = bind(interp, "", "/$/my.namer/x")
    assert leaf_id(state) == INET1
    assert set(rw.calls) == {P("/x")}


# ---------------------------------------------------------------------------------------------
# dtab and namer order
# ---------------------------------------------------------------------------------------------


def test_dtab_is_consulted_before_the_global_namer() -> None:
    interp = interpreter()
    assert bind(interp, "/$/inet=>/$/nil", "/$/inet/127.1/8080") == Ok(Empty)
    assert bind(interp, "/$/inet/127.1=>/$/fail", "/$/inet/127.1/8080") == Ok(Fail)


def test_dtab_is_consulted_before_configured_namers() -> None:
    ctl = CtlNamer()
    ctl.act("/web", Ok(Leaf(bound("/#/ctl/web", ("10.0.0.1", 80)))))
    interp = interpreter(("/ctl", ctl))
    assert leaf_id(bind(interp, "/#/ctl/web=>" + INET1, "/#/ctl/web")) == INET1
    assert ctl.calls == []
    assert leaf_id(bind(interp, "", "/#/ctl/web")) == "/#/ctl/web"


def test_configured_namers_in_order_neg_falls_through() -> None:
    first, second, other = CtlNamer("first"), CtlNamer("second"), CtlNamer("other")
    second.act("/web", Ok(Leaf(bound("/#/ns/web", ("10.0.0.2", 80)))))
    first.act("/api", Ok(Leaf(bound("/#/ns/api", ("10.0.0.1", 80)))))
    interp = interpreter(("/ns", first), ("/other", other), ("/ns", second))

    assert leaf_id(bind(interp, "/svc=>/#/ns", "/svc/web")) == "/#/ns/web"
    assert first.calls == [P("/web")] and second.calls == [P("/web")]

    assert leaf_id(bind(interp, "/svc=>/#/ns", "/svc/api")) == "/#/ns/api"
    assert P("/api") not in second.calls  # the first namer answered

    assert bind(interp, "/svc=>/#/ns", "/svc/none") == Ok(Neg)  # all Neg, global Neg too
    assert other.calls == []  # prefix never matched


def test_namer_prefix_matches_whole_elements() -> None:
    ctl = CtlNamer()
    interp = interpreter(("/ctl", ctl))
    assert bind(interp, "", "/#/ctlx/web") == Ok(Neg)
    assert ctl.calls == []


@pytest.mark.parametrize(
    "state",
    [Failed(BindingError("namer down")), Pending],
    ids=["failed", "pending"],
)
def test_namer_error_or_pending_does_not_fall_through(state: State[object]) -> None:
    first, second = CtlNamer(), CtlNamer()
    first.act("/web", state)
    second.act("/web", Ok(Leaf(bound("/#/ns/web", ("10.0.0.2", 80)))))
    interp = interpreter(("/ns", first), ("/ns", second))
    assert bind(interp, "", "/#/ns/web") == state
    assert second.calls == []


def test_namer_may_return_paths_bound_through_the_dtab_again() -> None:
    ctl = CtlNamer()
    ctl.act("/web", Ok(Leaf(P("/internal/web"))))
    interp = interpreter(("/ctl", ctl))
    state = bind(interp, "/internal=>/$/inet/127.1/9000", "/#/ctl/web")
    tree = ok_tree(state)
    assert isinstance(tree, Leaf)
    assert tree.value.id == P("/$/inet/127.1/9000")
    assert tree.value.residual == P("/web")


# ---------------------------------------------------------------------------------------------
# Alt
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtab", "expected"),
    [
        ("/s=>/nothing | " + INET1, INET1),
        ("/s=>~ | /nothing | " + INET1, INET1),
        ("/s=>" + INET1 + ";/s=>/nothing", INET1),  # last entry Neg: earlier entry used
        ("/s=>" + INET1 + ";/s=>" + INET2, INET2),  # last entry wins
        ("/s=>" + INET1 + ";/s=>~", INET1),
        ("/s=>" + INET1 + ";/s=>~;/s=>~", INET1),
    ],
)
def test_alt_falls_back_past_neg(dtab: str, expected: str) -> None:
    assert leaf_id(bind(interpreter(), dtab, "/s")) == expected


@pytest.mark.parametrize(
    ("dtab", "expected"),
    [
        ("/s=>! | " + INET1, Ok(Fail)),
        ("/s=>/$/fail | " + INET1, Ok(Fail)),
        ("/s=>$ | " + INET1, Ok(Empty)),
        ("/s=>/$/nil | " + INET1, Ok(Empty)),
        ("/s=>" + INET1 + ";/s=>!", Ok(Fail)),
        ("/s=>" + INET1 + ";/s=>/$/nil", Ok(Empty)),
        ("/s=>~ | ~", Ok(Neg)),
    ],
)
def test_alt_fail_and_empty_stop_fallback(dtab: str, expected: State[object]) -> None:
    assert bind(interpreter(), dtab, "/s") == expected


def test_alt_lookup_error_stops_fallback() -> None:
    state = bind(interpreter(), "/s=>/$/unknown | " + INET1, "/s")
    assert isinstance(state, Failed)
    assert "Unknown namer: unknown" in str(state.error)


def test_alt_pending_lookup_stops_fallback() -> None:
    ctl = CtlNamer()
    ctl.act("/slow", Pending)
    interp = interpreter(("/ctl", ctl))
    assert bind(interp, "/s=>/#/ctl/slow | " + INET1, "/s") is Pending
    # and a pending branch after a bound one is never looked at
    assert leaf_id(bind(interp, "/s=>" + INET1 + " | /#/ctl/slow", "/s")) == INET1


# ---------------------------------------------------------------------------------------------
# Union
# ---------------------------------------------------------------------------------------------


def test_union_keeps_weights_and_drops_neg_and_fail_branches() -> None:
    dtab = f"/s=>1*/nothing & 2*{INET1} & 3*! & 4*{INET2} & 5*/$/fail"
    tree = ok_tree(bind(interpreter(), dtab, "/s"))
    assert isinstance(tree, Union)
    assert [(w.weight, str(w.tree.value.id)) for w in tree.trees] == [(2.0, INET1), (4.0, INET2)]
    metas = [observed_meta(w.tree.value)[NAMETREE_WEIGHT_KEY] for w in tree.trees]
    assert metas == [2.0, 4.0]


def test_union_ignores_failed_branches_while_one_is_ok() -> None:
    tree = ok_tree(bind(interpreter(), f"/s=>1*/$/unknown & 2*{INET1}", "/s"))
    assert isinstance(tree, Leaf) and str(tree.value.id) == INET1


def test_union_keeps_empty_branches() -> None:
    tree = ok_tree(bind(interpreter(), f"/s=>1*$ & 2*{INET1}", "/s"))
    assert isinstance(tree, Union)
    assert tree.trees[0] == Weighted(1.0, Empty)


@pytest.mark.parametrize(
    "dst",
    ["1*/nothing & 2*/nothing2", "1*~ & 2*!", "1*! & 2*/$/fail"],
)
def test_union_of_only_neg_and_fail_is_neg(dst: str) -> None:
    assert bind(interpreter(), "/s=>" + dst, "/s") == Ok(Neg)


def test_union_without_ok_branch_reports_first_failure_else_pending() -> None:
    ctl = CtlNamer()
    ctl.act("/slow", Pending)
    interp = interpreter(("/ctl", ctl))
    state = bind(interp, "/s=>1*/#/ctl/slow & 2*/$/unknownA & 3*/$/unknownB", "/s")
    assert isinstance(state, Failed) and "unknownA" in str(state.error)
    assert bind(interp, "/s=>1*/#/ctl/slow & 2*/#/ctl/slow", "/s") is Pending
    # Ok(Neg) is an Ok branch: the union is Ok(Neg), not Pending
    assert bind(interp, "/s=>1*/#/ctl/slow & 2*/nothing", "/s") == Ok(Neg)
    # a pending branch does not hold back an Ok one
    assert leaf_id(bind(interp, f"/s=>1*/#/ctl/slow & 2*{INET1}", "/s")) == INET1


def test_single_surviving_union_branch_drops_weight_from_tree_but_not_from_meta() -> None:
    tree = ok_tree(bind(interpreter(), f"/s=>0.3*{INET1} & 0.7*/nothing", "/s"))
    assert isinstance(tree, Leaf)
    assert observed_meta(tree.value) == {NAMETREE_WEIGHT_KEY: 0.3}
    assert tree.value.addr.value.addresses == frozenset([Address("127.0.0.1", 1)])


def test_weight_flows_through_lookups_and_innermost_union_wins() -> None:
    dtab = f"/s=>2*/t & 1*/nothing;/t=>5*{INET1} & 1*/nothing2;/u=>3*/v & 1*~;/v=>{INET2}"
    tree = ok_tree(bind(interpreter(), dtab, "/s"))
    assert isinstance(tree, Leaf)
    assert observed_meta(tree.value)[NAMETREE_WEIGHT_KEY] == 5.0
    tree = ok_tree(bind(interpreter(), dtab, "/u"))  # through a further dtab lookup
    assert observed_meta(tree.value)[NAMETREE_WEIGHT_KEY] == 3.0


def test_leaf_outside_any_union_gets_no_weight_key() -> None:
    tree = ok_tree(bind(interpreter(), f"/s=>/nothing | {INET1}", "/s"))
    assert isinstance(tree, Leaf)
    assert observed_meta(tree.value) == {}


def test_weight_metadata_is_not_added_to_non_bound_addrs() -> None:
    ctl = CtlNamer()
    ctl.act("/x", Ok(Leaf(NameBound(P("/#/ctl/x"), Var(AddrNeg)))))
    tree = ok_tree(bind(interpreter(("/ctl", ctl)), "/s=>0.5*/#/ctl/x & 0.5*/nothing", "/s"))
    assert isinstance(tree, Leaf)
    seen: list[object] = []
    tree.value.addr.observe(seen.append).close()
    assert seen == [AddrNeg]


# ---------------------------------------------------------------------------------------------
# depth
# ---------------------------------------------------------------------------------------------


def chain(n: int, end: str) -> str:
    """``n`` dtab rewrites /s0 → /s1 → … → end."""
    return ";".join(f"/s{i}=>/s{i + 1}" for i in range(n - 1)) + f";/s{n - 1}=>{end}"


def test_99_rewrites_plus_inet_bind() -> None:
    assert leaf_id(bind(interpreter(), chain(99, INET1), "/s0")) == INET1


def test_100_rewrites_plus_inet_hit_the_limit() -> None:
    state = bind(interpreter(), chain(100, INET1), "/s0")
    assert isinstance(state, Failed)
    assert isinstance(state.error, BindingError)
    assert str(state.error) == "Max recursion level: 100 reached in Namer lookup"


@pytest.mark.parametrize(("dtab", "path"), [("/s=>/s/srv", "/s"), ("/=>/x", "/a")])
def test_cyclic_dtab_fails(dtab: str, path: str) -> None:
    state = bind(interpreter(), dtab, path)
    assert isinstance(state, Failed)
    assert "Max recursion level: 100 reached in Namer lookup" in str(state.error)


def test_max_depth_is_configurable() -> None:
    interp = ConfiguredNamersInterpreter([], GlobalNamer(), max_depth=3)
    assert leaf_id(bind(interp, chain(2, INET1), "/s0")) == INET1
    state = bind(interp, chain(3, INET1), "/s0")
    assert isinstance(state, Failed) and "Max recursion level: 3" in str(state.error)


# ---------------------------------------------------------------------------------------------
# dynamic bindings
# ---------------------------------------------------------------------------------------------


def test_bound_tree_follows_the_namer_without_binding_again() -> None:
    ctl = CtlNamer()
    act = ctl.act("/web")
    interp = interpreter(("/ctl", ctl))
    trees: list[State[NameTree[NameBound]]] = []
    obs = interp.bind(Dtab.read("/svc=>/#/ctl"), P("/svc/web")).observe(trees.append)
    assert trees == [Ok(Neg)]

    addr = Var(AddrBound([Address("10.0.0.1", 80)]))
    act.update(Ok(Leaf(NameBound(P("/#/ctl/web"), addr))))
    assert len(trees) == 2
    leaf = ok_tree(trees[-1])
    assert isinstance(leaf, Leaf) and leaf.value.addr is addr

    # an address change is seen through the same leaf; the tree is not republished
    addr.update(AddrBound([Address("10.0.0.2", 80), Address("10.0.0.3", 80)]))
    assert len(trees) == 2
    assert leaf.value.addr.value == AddrBound([Address("10.0.0.2", 80), Address("10.0.0.3", 80)])

    act.update(Ok(Neg))
    assert trees[-1] == Ok(Neg) and len(trees) == 3
    act.update(Ok(Leaf(NameBound(P("/#/ctl/web"), addr))))
    assert len(trees) == 4 and leaf_id(trees[-1]) == "/#/ctl/web"
    assert len(ctl.calls) == 1  # the namer activity was looked up once, then followed

    obs.close()
    assert not act.observed


def test_weighted_leaf_address_changes_flow_through_the_same_leaf() -> None:
    ctl = CtlNamer()
    addr = Var(AddrBound([Address("10.0.0.1", 80)]))
    ctl.act("/web", Ok(Leaf(NameBound(P("/#/ctl/web"), addr))))
    interp = interpreter(("/ctl", ctl))
    trees: list[State[NameTree[NameBound]]] = []
    obs = interp.bind(Dtab.read("/s=>0.25*/#/ctl/web & 1*/nothing"), P("/s")).observe(trees.append)
    leaf = ok_tree(trees[-1])
    assert isinstance(leaf, Leaf)
    addrs: list[object] = []
    addr_obs = leaf.value.addr.observe(addrs.append)
    addr.update(AddrBound([Address("10.0.0.9", 80)]))
    assert len(trees) == 1
    assert addrs == [
        AddrBound([Address("10.0.0.1", 80)], {NAMETREE_WEIGHT_KEY: 0.25}),
        AddrBound([Address("10.0.0.9", 80)], {NAMETREE_WEIGHT_KEY: 0.25}),
    ]
    addr_obs.close()
    obs.close()
    assert not addr.observed


def test_binding_follows_a_failing_and_recovering_namer() -> None:
    ctl = CtlNamer()
    act = ctl.act("/web", Pending)
    interp = interpreter(("/ctl", ctl))
    trees: list[State[NameTree[NameBound]]] = []
    obs = interp.bind(Dtab.read("/s=>/#/ctl/web | " + INET1), P("/s")).observe(trees.append)
    assert trees == [Pending]
    act.update(Ok(Neg))
    assert leaf_id(trees[-1]) == INET1
    act.update(Failed(BindingError("down")))
    assert isinstance(trees[-1], Failed)
    act.update(Ok(Leaf(bound("/#/ctl/web", ("10.0.0.1", 80)))))
    assert leaf_id(trees[-1]) == "/#/ctl/web"
    obs.close()


# ---------------------------------------------------------------------------------------------
# resolve
# ---------------------------------------------------------------------------------------------


def _b(id: str, addr: object) -> Leaf[NameBound]:
    return Leaf(NameBound(P(id), Var(addr)))


A1 = AddrBound([Address("10.0.0.1", 80)], {"x": 1})
A2 = AddrBound([Address("10.0.0.2", 80)], {"y": 2})


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        (Neg, AddrNeg),
        (Fail, AddrNeg),
        (Empty, AddrBound()),
        (_b("/a", A1), A1),
        (_b("/a", AddrPending), AddrPending),
        (
            Union(Weighted(1, _b("/a", A1)), Weighted(2, _b("/b", A2))),
            AddrBound([Address("10.0.0.1", 80), Address("10.0.0.2", 80)]),
        ),
        (Union(Weighted(1, _b("/a", A1)), Weighted(2, _b("/b", AddrNeg))), AddrBound(A1.addresses)),
        (Union(Weighted(1, _b("/a", AddrNeg)), Weighted(2, _b("/b", AddrNeg))), AddrNeg),
        (
            Union(Weighted(1, _b("/a", AddrFailed("x"))), Weighted(2, _b("/b", AddrFailed("x")))),
            AddrFailed("x"),
        ),
        (Union(Weighted(1, _b("/a", AddrNeg)), Weighted(2, _b("/b", AddrPending))), AddrPending),
        (Union(Weighted(1, _b("/a", A1)), Weighted(2, _b("/a", A2))), A1),  # same id: one name
        (Union(Weighted(1, Neg), Weighted(1, Fail)), AddrNeg),
    ],
)
def test_resolve(tree: NameTree[NameBound], expected: object) -> None:
    assert resolve(tree) == expected


def test_resolve_of_a_live_binding() -> None:
    tree = ok_tree(bind(interpreter(), f"/s=>1*{INET1} & 1*{INET2}", "/s"))
    assert resolve(tree) == AddrBound([Address("127.0.0.1", 1), Address("127.0.0.1", 2)])
