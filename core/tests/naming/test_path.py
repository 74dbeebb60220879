"""Path parsing, printing and operations (spec §1-§2)."""

import random
from dataclasses import FrozenInstanceError

import pytest
from turnout.errors import ParseError
from turnout.naming.path import Path


@pytest.mark.parametrize(
    ("text", "elems"),
    [
        ("/", ()),
        ("/foo", (b"foo",)),
        ("/foo/bar", (b"foo", b"bar")),
        ("/$/inet/127.1/8080", (b"$", b"inet", b"127.1", b"8080")),
        ("/a_b:c.d-e%f", (b"a_b:c.d-e%f",)),
        ("/\\x66oo", (b"foo",)),
        ("/\\x2A\\x2a", (b"**",)),
        ("/\\xc3\\xa9", ("é".encode(),)),
        ("/\\x66\\x6f\\x6f\\x2f\\x62\\x61\\x72", (b"foo/bar",)),
        ("/#/foo", (b"#", b"foo")),
        ("/a#b", (b"a#b",)),
        ("/s#", (b"s#",)),
        ("/foo #x", (b"foo",)),
        ("/foo#x", (b"foo#x",)),
        ("  /foo  ", (b"foo",)),
        ("# comment\n/foo # trailing", (b"foo",)),
        ("/ # only a comment", ()),
        ("\t\n\x0b\x0c\r/a\x1c\x1d\x1e\x1f", (b"a",)),
        ("\u1680\u2000\u2006\u2008\u200a\u2028\u2029\u205f\u3000/a", (b"a",)),
    ],
)
def test_read(text: str, elems: tuple[bytes, ...]) -> None:
    assert Path.read(text).elems == elems


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (Path(), "/"),
        (Path(b"foo", b"bar"), "/foo/bar"),
        (Path(b"foo/bar"), "/\\x66\\x6f\\x6f\\x2f\\x62\\x61\\x72"),
        (Path(b"ok", b"a b"), "/ok/\\x61\\x20\\x62"),
        (Path(b"*"), "/\\x2a"),
        (Path("é".encode()), "/\\xc3\\xa9"),
        (Path(b"\x00\xff"), "/\\x00\\xff"),
        (Path(b"#$%-_:."), "/#$%-_:."),
    ],
)
def test_show(path: Path, shown: str) -> None:
    assert path.show == shown
    assert str(path) == shown
    assert Path.read(shown) == path


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("", 0, "'/'"),
        ("foo", 0, "'/'"),
        ("//foo", 1, "end of input"),
        ("/foo/", 5, "label char"),
        ("/ foo", 2, "end of input"),
        ("/foo//bar", 5, "label char"),
        ("/a b", 3, "end of input"),
        ("/a*", 2, "end of input"),
        ("/a=b", 2, "end of input"),
        ("/\\X41", 2, "'x'"),
        ("/\\x4", 4, "hex char"),
        ("/\\x4g", 4, "hex char"),
        ("/\\", 2, "'x'"),
        ("/é", 1, "end of input"),
        ("/a\u00a0", 2, "end of input"),  # no-break spaces are not Java whitespace
        ("/a\u2007", 2, "end of input"),
        ("/a\u202f", 2, "end of input"),
        ("/a\u0085", 2, "end of input"),  # NEL is not Java whitespace
        ("\u00a0/a", 0, "'/'"),
        ("#/a", 3, "'/'"),  # the comment swallows everything
    ],
)
def test_read_errors(text: str, offset: int, expected: str) -> None:
    with pytest.raises(ParseError) as info:
        Path.read(text)
    assert (info.value.offset, info.value.expected) == (offset, expected)


def test_error_message_has_brackets() -> None:
    with pytest.raises(ValueError, match=r"found at '/foo/\[/\]bar'") as info:
        Path.read("/foo//bar")
    assert str(info.value) == "label char expected but '/' found at '/foo/[/]bar'"
    with pytest.raises(ParseError, match=r"end of input found at '/foo/\[\]'"):
        Path.read("/foo/")


def test_random_round_trip() -> None:
    rng = random.Random(1729)
    for _ in range(500):
        alphabet = bytes(range(256)) if rng.random() < 0.5 else b"ab:.-_*/ \\#$%"
        labels = [
            bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
            for _ in range(rng.randint(0, 4))
        ]
        path = Path(*labels)
        assert Path.read(path.show) == path, labels


def test_constructors() -> None:
    assert Path.of("a", b"b", "é") == Path(b"a", b"b", "é".encode())
    assert Path.empty == Path() == Path.read("/")
    assert Path.of("x/y").show == "/\\x78\\x2f\\x79"
    for bad in [(b"",), ("a",), (b"a", bytearray(b"b"))]:
        with pytest.raises(ValueError):
            Path(*bad)
    with pytest.raises(ValueError):
        Path.of("a", "")


def test_sequence_operations() -> None:
    p = Path.read("/a/b/c")
    assert len(p) == 3 and list(p) == [b"a", b"b", b"c"]
    assert p[0] == b"a" and p[-1] == b"c"
    assert p[1:] == Path.read("/b/c") and p[:0] == Path.empty
    assert p.take(2) == Path.read("/a/b") and p.take(9) == p and p.take(-1) == Path.empty
    assert p.drop(1) == Path.read("/b/c") and p.drop(3) == Path.empty and p.drop(-1) == p
    assert Path.read("/a") + Path.read("/b/c") == p
    assert p + Path.empty == p
    assert not Path.empty and p


@pytest.mark.parametrize(
    ("path", "prefix", "result"),
    [
        ("/a/b", "/", True),
        ("/a/b", "/a", True),
        ("/a/b", "/a/b", True),
        ("/ab/c", "/a", False),
        ("/a", "/a/b", False),
        ("/", "/a", False),
    ],
)
def test_starts_with(path: str, prefix: str, result: bool) -> None:
    assert Path.read(path).starts_with(Path.read(prefix)) is result


def test_labels_decode_utf8() -> None:
    assert Path.read("/a/\\xc3\\xa9").labels() == ("a", "é")
    assert Path(b"\xff").labels() == ("\udcff",)


def test_equality_hash_order_repr() -> None:
    assert Path.read("/a/b") == Path.of("a", "b")
    assert hash(Path.read("/a/b")) == hash(Path.of("a", "b"))
    assert Path.read("/a") != Path.read("/a/b")
    assert Path.read("/a") != "/a"
    assert sorted(map(Path.read, ["/b", "/a/b", "/", "/a"])) == list(
        map(Path.read, ["/", "/a", "/a/b", "/b"])
    )
    assert repr(Path.read("/a/b")) == "Path('/a/b')"
    assert repr(Path(b"a b")) == "Path('/\\\\x61\\\\x20\\\\x62')"


def test_immutable() -> None:
    p = Path.read("/a")
    with pytest.raises(FrozenInstanceError):
        p.elems = (b"b",)  # type: ignore[misc]
