"""Prefixes, dentries and dtabs: parsing, printing, matching and lookup (spec §4)."""

import pytest
from turnout.errors import ParseError
from turnout.naming.dtab import ANY, AnyElem, Dentry, Dtab, Prefix
from turnout.naming.nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted
from turnout.naming.path import Path

P = Path.read
T = NameTree.read
D = Dtab.read


def L(text: str) -> Leaf[Path]:
    return Leaf(P(text))


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/a=>/b | /c;/d=>~", "/a=>/b | /c;/d=>~"),
        (" /a => /b ; /c => /d ; ", "/a=>/b;/c=>/d"),
        ("/a=>/b;", "/a=>/b"),
        ("", ""),
        ("  # only a comment", ""),
        ("/a=>/b # x;/c=>/d\n;/e=>/f", "/a=>/b;/e=>/f"),
        ("/a=>/b;# the rest ;/c=>/d", "/a=>/b"),
        ("/s/*/x=>0.3*/a & 0.7*/b;/=>!", "/s/*/x=>0.30*/a & 0.70*/b;/=>!"),
        ("/\\x2a=>/\\x2a;/*=>$", "/\\x2a=>/\\x2a;/*=>$"),
        ("/a=>/b\n;\n/c=>(/d | /e) | /f", "/a=>/b;/c=>(/d | /e) | /f"),
        ("/s#/a=>/b", "/s#/a=>/b"),
    ],
)
def test_read_show(text: str, shown: str) -> None:
    dtab = D(text)
    assert dtab.show == shown
    assert str(dtab) == shown
    assert D(shown) == dtab


def test_read_entries() -> None:
    assert list(D("/a=>/b;/c/*=>~")) == [
        Dentry(Prefix(b"a"), L("/b")),
        Dentry(Prefix(b"c", ANY), Neg),
    ]
    assert D("") == Dtab.empty == Dtab()
    assert len(Dtab.empty) == 0 and Dtab.empty.show == ""


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        (";", 0, "'/'"),
        (";;", 0, "'/'"),
        (";/a=>/b", 0, "'/'"),
        ("/a=>/b;;", 7, "'/'"),
        ("/a=>/b;;/c=>/d", 7, "'/'"),
        ("/a = > /b", 4, "'>'"),
        ("/a", 2, "'='"),
        ("/a=>", 4, "simple"),
        ("/a=>*", 4, "simple"),
        ("/a/=>/b", 3, "label char"),
        ("/a*=>/b", 2, "'='"),
        ("/*a=>/b", 2, "'='"),
        ("/a=>/b,/c=>/d", 6, "end of input"),
        ("/a=>/b\n/c=>/d", 7, "end of input"),  # newlines do not separate entries
        ("/a=>/b #;\n/c=>/d", 10, "end of input"),  # the comment swallowed the ';'
        ("a=>/b", 0, "'/'"),
    ],
)
def test_read_errors(text: str, offset: int, expected: str) -> None:
    with pytest.raises(ParseError) as info:
        D(text)
    assert (info.value.offset, info.value.expected) == (offset, expected)


def test_error_message() -> None:
    with pytest.raises(ParseError) as info:
        D("/a=>/b;;/c=>/d")
    assert str(info.value) == "'/' expected but ';' found at '/a=>/b;[;]/c=>/d'"


@pytest.mark.parametrize(
    ("text", "elems", "shown"),
    [
        ("/", (), "/"),
        ("/s/*/x", (b"s", ANY, b"x"), "/s/*/x"),
        ("/*", (ANY,), "/*"),
        ("/\\x2a", (b"*",), "/\\x2a"),
        (" /a/b # c", (b"a", b"b"), "/a/b"),
        ("/a b", None, None),
    ],
)
def test_prefix_read(text: str, elems: tuple[object, ...] | None, shown: str | None) -> None:
    if elems is None:
        with pytest.raises(ParseError):
            Prefix.read(text)
        return
    prefix = Prefix.read(text)
    assert prefix.elems == elems
    assert prefix.show == str(prefix) == shown
    assert Prefix.read(shown) == prefix


@pytest.mark.parametrize(
    ("text", "offset"), [("/a*", 2), ("/*a", 2), ("/**", 2), ("/*/", 3), ("a", 0), ("/a=>/b", 2)]
)
def test_prefix_errors(text: str, offset: int) -> None:
    with pytest.raises(ParseError) as info:
        Prefix.read(text)
    assert info.value.offset == offset


def test_prefix_constructors() -> None:
    assert Prefix.of("a", ANY, b"c") == Prefix.read("/a/*/c")
    assert Prefix.of("*").show == "/\\x2a"
    assert Prefix.empty == Prefix() == Prefix.read("/")
    assert len(Prefix.read("/a/*")) == 2
    assert AnyElem() is ANY and repr(ANY) == "ANY" and str(ANY) == "*"
    assert repr(Prefix.read("/a/*")) == "Prefix('/a/*')"
    for bad in [(b"",), ("a",), (None,)]:
        with pytest.raises(ValueError):
            Prefix(*bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "path", "result"),
    [
        ("/s", "/s", True),
        ("/s", "/s/x", True),
        ("/s", "/s#/x", False),
        ("/s", "/sx", False),
        ("/s/x", "/s", False),
        ("/", "/", True),
        ("/", "/a/b", True),
        ("/*", "/", False),
        ("/*", "/a", True),
        ("/*", "/a/b", True),
        ("/*/b", "/a/b/c", True),
        ("/*/b", "/a/c", False),
        ("/s/*", "/s", False),
        ("/\\x2a", "/a", False),
        ("/\\x2a", "/\\x2a", True),
    ],
)
def test_prefix_matches(prefix: str, path: str, result: bool) -> None:
    assert Prefix.read(prefix).matches(P(path)) is result


@pytest.mark.parametrize(
    ("dtab", "path", "result"),
    [
        ("/a=>/b;/a=>/c", "/a/x", Alt(L("/c/x"), L("/b/x"))),
        ("/a/b=>/long;/a=>/short", "/a/b/c", Alt(L("/short/b/c"), L("/long/c"))),
        ("/a=>/short;/a/b=>/long", "/a/b/c", Alt(L("/long/c"), L("/short/b/c"))),
        ("/a=>/b;/a=>~", "/a/x", Alt(Neg, L("/b/x"))),
        ("/a=>/b", "/a", L("/b")),
        ("/a=>!", "/a/x", Fail),
        ("/a=>$", "/a/x", Empty),
        ("/s/*=>/t", "/s/a/b", L("/t/b")),
        ("/=>/x", "/a", L("/x/a")),
        ("/a=>/b | ~", "/a/c", Alt(L("/b/c"), Neg)),
        ("/a=>/b;/c=>/d;/a=>/e;/x=>/y", "/a", Alt(L("/e"), L("/b"))),
        (
            "/s=>0.3*/x & 0.7*(/y | ~)",
            "/s/a/b",
            Union(Weighted(0.3, L("/x/a/b")), Weighted(0.7, Alt(L("/y/a/b"), Neg))),
        ),
        ("/s=>(/a | /b) | /c;/t=>/u", "/s/1", Alt(Alt(L("/a/1"), L("/b/1")), L("/c/1"))),
    ],
)
def test_lookup(dtab: str, path: str, result: NameTree[Path]) -> None:
    assert D(dtab).lookup(P(path)) == result


@pytest.mark.parametrize(
    ("dtab", "path", "is_neg"),
    [
        ("", "/a", True),
        ("/b=>/c", "/a", True),
        ("/a=>~", "/a/x", True),
        ("/a=>~;/a=>~", "/a", False),
        ("/a=>~ | ~", "/a", False),
        ("/a=>/b", "/a", False),
    ],
)
def test_lookup_is_exactly_neg(dtab: str, path: str, is_neg: bool) -> None:
    assert (D(dtab).lookup(P(path)) is Neg) is is_neg


def test_two_neg_matches_give_unsimplified_alt() -> None:
    assert D("/a=>~;/a=>~").lookup(P("/a")) == Alt(Neg, Neg)


def test_concatenation() -> None:
    base, local = D("/s=>/a;/t=>/x"), D("/s=>/b")
    both = base + local
    assert both.show == "/s=>/a;/t=>/x;/s=>/b"
    assert both.lookup(P("/s/1")) == Alt(L("/b/1"), L("/a/1"))
    assert base + Dtab.empty == base == Dtab.empty + base
    assert (base + local) + local == base + (local + local)


def test_dentry() -> None:
    entry = Dentry.read(" /a/* => /b | ~ ")
    assert entry == Dentry(Prefix.of("a", ANY), Alt(L("/b"), Neg))
    assert entry.show == str(entry) == "/a/*=>/b | ~"
    assert repr(entry) == "Dentry.read('/a/*=>/b | ~')"
    assert Dentry.nop.show == "/\\x2f=>~"
    assert Dentry.nop.prefix.elems == (b"/",) and Dentry.nop.dst is Neg
    with pytest.raises(ParseError):
        Dentry.read("/a=>/b;")


def test_simplified() -> None:
    dtab = D("/a=>~;/b=>~ | /c;/d=>! & ~;/e=>$;/f=>!;/g=>~ | ~;/h=>2*/i")
    assert dtab.simplified.show == "/b=>/c;/e=>$;/f=>!;/h=>/i"
    assert dtab.simplified.simplified == dtab.simplified


@pytest.mark.parametrize(
    ("dtab", "prefix", "result"),
    [
        ("/a=>/b;/c=>/d;/e=>/f", "/a=>/b", "/c=>/d;/e=>/f"),
        ("/a=>/b;/c=>/d", "/a=>/b;/c=>/d", ""),
        ("/a=>/b;/c=>/d", "", "/a=>/b;/c=>/d"),
        ("/a=>/b;/c=>/d", "/c=>/d", "/a=>/b;/c=>/d"),
        ("/a=>/b", "/a=>/b;/c=>/d", "/a=>/b"),
        ("/a=>/b;/c=>/d", "/a=>/x", "/a=>/b;/c=>/d"),
        ("", "", ""),
    ],
)
def test_strip_prefix(dtab: str, prefix: str, result: str) -> None:
    assert D(dtab).strip_prefix(D(prefix)) == D(result)


def test_sequence_behaviour() -> None:
    dtab = D("/a=>/b;/c=>/d;/e=>/f")
    assert len(dtab) == 3
    assert dtab[0] == Dentry.read("/a=>/b") and dtab[-1] == Dentry.read("/e=>/f")
    assert dtab[1:] == D("/c=>/d;/e=>/f") and isinstance(dtab[1:], Dtab)
    assert Dentry.read("/c=>/d") in dtab
    assert next(reversed(dtab)) == dtab[2]
    assert dtab == D("/a => /b ; /c => /d ; /e => /f") and dtab != D("/a=>/b")
    assert hash(dtab) == hash(D(dtab.show))
    assert Dtab(iter(dtab)) == dtab
    assert repr(dtab) == "Dtab.read('/a=>/b;/c=>/d;/e=>/f')"
    with pytest.raises(TypeError):
        Dtab(["/a=>/b"])  # type: ignore[list-item]
