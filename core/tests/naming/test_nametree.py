"""Name tree parsing, printing, simplification and evaluation (spec §3)."""

import copy
import pickle
from dataclasses import FrozenInstanceError

import pytest
from turnout.errors import ParseError
from turnout.naming.nametree import (
    Alt,
    Empty,
    Fail,
    Leaf,
    NameTree,
    Neg,
    Union,
    Weighted,
    format_weight,
)
from turnout.naming.path import Path


def L(text: str) -> Leaf[Path]:
    return Leaf(Path.read(text))


def W(weight: float, tree: NameTree[Path]) -> Weighted[Path]:
    return Weighted(weight, tree)


T = NameTree.read

PARSED = [
    ("/a", L("/a")),
    ("/", L("/")),
    ("!", Fail),
    ("~", Neg),
    ("$", Empty),
    ("/a | /b & /c", Alt(L("/a"), Union(W(1, L("/b")), W(1, L("/c"))))),
    ("/a & /b | /c", Alt(Union(W(1, L("/a")), W(1, L("/b"))), L("/c"))),
    ("(/a | /b) | /c", Alt(Alt(L("/a"), L("/b")), L("/c"))),
    ("/a | (/b | /c)", Alt(L("/a"), Alt(L("/b"), L("/c")))),
    ("/a | /b | /c", Alt(L("/a"), L("/b"), L("/c"))),
    ("0.3*/a & 0.7*/b", Union(W(0.3, L("/a")), W(0.7, L("/b")))),
    ("2 * /foo", L("/foo")),
    ("(2 * /a)", L("/a")),
    ("0.5 * (/a | /b)", Alt(L("/a"), L("/b"))),
    ("1.*/a & .5*/b & 00.50*/c", Union(W(1, L("/a")), W(0.5, L("/b")), W(0.5, L("/c")))),
    ("/a & 2*(/b & /c)", Union(W(1, L("/a")), W(2, Union(W(1, L("/b")), W(1, L("/c")))))),
    ("~ | $ | /x", Alt(Neg, Empty, L("/x"))),
    ("((/a))", L("/a")),
    (" /a\n# comment | /b\n|\t/c # end", Alt(L("/a"), L("/c"))),
    ("/a#b|/c", Alt(L("/a#b"), L("/c"))),
    ("/a\u3000|\u2028/b", Alt(L("/a"), L("/b"))),
]


@pytest.mark.parametrize(("text", "tree"), PARSED)
def test_read(text: str, tree: NameTree[Path]) -> None:
    assert T(text) == tree


@pytest.mark.parametrize(
    ("tree", "shown"),
    [
        (T("/a | /b & /c"), "/a | /b & /c"),
        (T("(/a | /b) | /c"), "(/a | /b) | /c"),
        (T("/a&/b|/c"), "/a & /b | /c"),
        (T("0.3*/a & 0.7*/b"), "0.30*/a & 0.70*/b"),
        (T("1*/a & 1.0*/b"), "/a & /b"),
        (T("1.001*/a & /b"), "1.00*/a & /b"),
        (T("/a & (/b | /c)"), "/a & (/b | /c)"),
        (T("/a & (/b & /c)"), "/a & (/b & /c)"),
        (T("/a | (/b & /c)"), "/a | /b & /c"),
        (T("2 * /foo"), "/foo"),
        (T("~ | ! | $"), "~ | ! | $"),
        (T("/\\x2a"), "/\\x2a"),
        (Alt(), ""),
        (Union(), ""),
        (Alt(L("/a")), "/a"),
        (Union(W(2, L("/a"))), "/a"),
        (Alt(Union(W(2, Alt(L("/a"), L("/b"))))), "/a | /b"),
        (Union(W(0.5, L("/a")), W(1, Alt(L("/b")))), "0.50*/a & /b"),
        (Union(W(0.5, L("/a")), W(3, Union(W(2, L("/b"))))), "0.50*/a & 3.00*/b"),
        (Union(W(1, L("/a")), W(1, Alt(Union(W(1, L("/b")), W(1, L("/c")))))), "/a & (/b & /c)"),
        (Alt(L("/a"), Union(W(2, L("/b")))), "/a | /b"),
        (Alt(Alt(), L("/a")), "() | /a"),
        (Union(W(1, Alt()), W(1, L("/a"))), "() & /a"),
        (Union(W(1, L("/a"))), "/a"),
        (Leaf("not a path"), "not a path"),
    ],
)
def test_show(tree: NameTree[Path], shown: str) -> None:
    assert tree.show == shown
    assert str(tree) == shown


@pytest.mark.parametrize(
    "text",
    [
        "/a",
        "~",
        "!",
        "$",
        "/a | /b & /c",
        "(/a | /b) | /c",
        "0.25*/a & (/b | ~) & $",
        "/a & (0.50*/b & /c) | !",
        "(/a & /b | /c) & /d",
    ],
)
def test_canonical_round_trip(text: str) -> None:
    assert T(text).show == text
    assert T(T(text).show) == T(text)


@pytest.mark.parametrize(
    ("weight", "shown"),
    [
        (0.125, "0.13"),
        (1.005, "1.01"),
        (2.675, "2.68"),
        (2, "2.00"),
        (0, "0.00"),
        (-0.0, "-0.00"),
        (-1.5, "-1.50"),
        (0.004, "0.00"),
        (0.005, "0.01"),
        (1e-7, "0.00"),
        (1e20, "100000000000000000000.00"),
        (float("inf"), "Infinity"),
        (float("nan"), "NaN"),
    ],
)
def test_format_weight(weight: float, shown: str) -> None:
    assert format_weight(weight) == shown


@pytest.mark.parametrize(
    ("text", "weight", "shown"),
    [
        ("0.125", 0.125, "0.13*/a & /b"),
        ("1.005", 1.005, "1.01*/a & /b"),
        ("2", 2.0, "2.00*/a & /b"),
        ("1.", 1.0, "/a & /b"),
        (".5", 0.5, "0.50*/a & /b"),
        ("00.50", 0.5, "0.50*/a & /b"),
        ("0", 0.0, "0.00*/a & /b"),
    ],
)
def test_weights(text: str, weight: float, shown: str) -> None:
    tree = T(f"{text} * /a & /b")
    assert isinstance(tree, Union) and tree.trees[0].weight == weight
    assert tree.show == shown


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("", 0, "simple"),
        ("1 /a", 2, "'*'"),
        ("1 * 2 * /a", 4, "simple"),
        (".", 0, "weight"),
        (". * /a", 0, "weight"),
        ("1..2 * /a", 2, "number char"),
        ("-1 * /a", 0, "simple"),
        ("1e3 * /a", 1, "'*'"),
        ("\u0661 * /a", 0, "ASCII digit"),  # Arabic-Indic digit one
        ("1\u0662 * /a", 1, "ASCII digit"),
        ("1 * ", 4, "simple"),
        ("*/a", 0, "simple"),
        ("/a |", 4, "simple"),
        ("/a & & /b", 5, "simple"),
        ("(/a", 3, "')'"),
        ("(/a | /b", 8, "')'"),
        ("()", 1, "simple"),
        ("/a)", 2, "end of input"),
        ("/a /b", 3, "end of input"),
        ("/a, /b", 2, "end of input"),
        ("/a\u00a0| /b", 2, "end of input"),
        ("/a//b", 3, "label char"),
        ("/a | /b/", 8, "label char"),
    ],
)
def test_read_errors(text: str, offset: int, expected: str) -> None:
    with pytest.raises(ParseError) as info:
        T(text)
    assert (info.value.offset, info.value.expected) == (offset, expected)


def test_error_messages() -> None:
    with pytest.raises(ParseError, match=r"^'\*' expected but '/' found at '1 \[/\]a'$"):
        T("1 /a")
    with pytest.raises(
        ParseError, match=r"^simple expected but end of input found at '/a \|\[\]'$"
    ):
        T("/a |")


@pytest.mark.parametrize(
    ("tree", "result"),
    [
        (Neg, None),
        (Fail, None),
        (Empty, frozenset()),
        (L("/a"), {"/a"}),
        (T("~ | $ | /x"), frozenset()),
        (T("~ | /x"), {"/x"}),
        (T("! | /x"), None),
        (Alt(Fail, L("/x")), None),
        (T("~ | ~"), None),
        (T("/a & /b"), {"/a", "/b"}),
        (T("/a & /a"), {"/a"}),
        (T("/a & ~ & !"), {"/a"}),
        (T("~ & !"), None),
        (T("$ & ~"), frozenset()),
        (T("(~ | /a) & /b | /c"), {"/a", "/b"}),
        (T("(~ | ~) | /c"), {"/c"}),
        (Alt(), None),
        (Union(), None),
        (Union(W(0, L("/a"))), {"/a"}),
    ],
)
def test_eval(tree: NameTree[Path], result: frozenset[str] | None) -> None:
    expected = None if result is None else frozenset(map(Path.read, result))
    assert tree.eval() == expected
    assert tree.simplified.eval() == expected


@pytest.mark.parametrize(
    ("tree", "result"),
    [
        (Alt(Neg, Fail, L("/a")), Fail),
        (Alt(Neg, Neg), Neg),
        (Union(W(1, Fail), W(1, Neg)), Neg),
        (Union(W(2, Fail)), Fail),
        (Union(W(1, Fail), W(1, Empty)), frozenset()),
    ],
)
def test_internal_eval_distinguishes_neg_and_fail(tree: NameTree[Path], result: object) -> None:
    assert tree._eval() == result


SIMPLIFIED = [
    (T("/a"), L("/a")),
    (T("~ | /a"), L("/a")),
    (T("/a | ! | /b"), Alt(L("/a"), Fail)),
    (T("~ | ~"), Neg),
    (T("! & !"), Neg),
    (T("! & ~"), Neg),
    (Union(W(2, Fail)), Fail),
    (Alt(Fail), Fail),
    (T("0.5*/a & ~"), L("/a")),
    (T("0.5*/a & ~ & 0.3*/b"), Union(W(0.5, L("/a")), W(0.3, L("/b")))),
    (T("$ & /a"), Union(W(1, Empty), W(1, L("/a")))),
    (T("~ | $ | /x"), Alt(Empty, L("/x"))),
    (T("(/a | /b) | /c"), T("(/a | /b) | /c")),
    (T("/a | /a"), T("/a | /a")),
    (T("/a & /a"), T("/a & /a")),
    (Alt(), Neg),
    (Union(), Neg),
    (Alt(Alt(L("/a"))), L("/a")),
    (T("(~ | ~) | /a"), L("/a")),
    (T("(/a & ~) | /b"), Alt(L("/a"), L("/b"))),
    (T("(~ | /a | /b) & 2*(! | /c)"), Alt(L("/a"), L("/b"))),
    (T("(~ | /a | /b) & 2*(~ | /c)"), Union(W(1, Alt(L("/a"), L("/b"))), W(2, L("/c")))),
    (T("/a & 2*(! & ~)"), L("/a")),
    (Union(W(2, Alt(Neg, L("/a"))), W(3, Alt())), L("/a")),
]


@pytest.mark.parametrize(("tree", "result"), SIMPLIFIED)
def test_simplified(tree: NameTree[Path], result: NameTree[Path]) -> None:
    assert tree.simplified == result


@pytest.mark.parametrize(
    "tree", [t for t, _ in SIMPLIFIED] + [t for _, t in PARSED] + [Alt(Union(), Alt(Empty))]
)
def test_simplify_is_idempotent_and_keeps_eval(tree: NameTree[Path]) -> None:
    once = tree.simplified
    assert once.simplified == once
    assert once.eval() == tree.eval()


def test_map_keeps_structure_and_weights() -> None:
    tree = T("/a | 0.3*/b & 0.7*(/c | ~) | !")
    mapped = tree.map(lambda p: p + Path.read("/x"))
    assert mapped == T("/a/x | 0.3*/b/x & 0.7*(/c/x | ~) | !")
    assert Leaf(1).map(str) == Leaf("1")
    assert Neg.map(str) is Neg


def test_equality_and_hash() -> None:
    assert W(1, L("/a")) == W(1.0, L("/a"))
    assert Union(W(0.5, L("/a"))) != Union(W(0.25, L("/a")))
    assert Alt(L("/a")) != Union(W(1, L("/a")))
    assert Alt(L("/a"), L("/b")) != Alt(L("/b"), L("/a"))
    assert hash(T("/a | /b & /c")) == hash(T("/a|/b&/c"))
    assert len({T("/a | /b"), T("/a|/b"), Neg, Neg, Fail}) == 3
    assert Leaf(Path.read("/a")) != L("/b")
    assert isinstance(W(True, Neg).weight, float)


def test_repr() -> None:
    assert repr(Alt(L("/a"), Neg)) == "Alt(Leaf(Path('/a')), Neg)"
    assert repr(T("0.5*/a & !")) == "Union(Weighted(0.5, Leaf(Path('/a'))), Weighted(1.0, Fail))"
    assert [repr(Neg), repr(Fail), repr(Empty)] == ["Neg", "Fail", "Empty"]
    assert repr(Alt()) == "Alt()"


def test_constants_are_singletons() -> None:
    for const in (Neg, Fail, Empty):
        assert pickle.loads(pickle.dumps(const)) is const
        assert copy.deepcopy(const) is const
    tree = T("/a | ~ & !")
    assert pickle.loads(pickle.dumps(tree)) == tree


def test_constructors_check_types_and_are_immutable() -> None:
    with pytest.raises(TypeError):
        Union(L("/a"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Alt(Path.read("/a"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Weighted(1, Path.read("/a"))  # type: ignore[arg-type]
    with pytest.raises(FrozenInstanceError):
        L("/a").value = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Neg.x = 1  # type: ignore[attr-defined]
