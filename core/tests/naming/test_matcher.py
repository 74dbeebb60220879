"""PathMatcher: prefix patterns with '*' and {captures} (Linkerd's PathMatcher)."""

import pytest
from turnout.errors import ParseError
from turnout.naming import Path, PathMatcher

P = Path.read


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/", "/", {}),
        ("/", "/any/thing", {}),
        ("/foo", "/foo", {}),
        ("/foo", "/foo/bar/baz", {}),  # prefix: the rest is ignored
        ("/foo", "/fo", None),
        ("/foo", "/foox", None),  # whole segments only
        ("/foo", "/", None),
        ("/foo/bar", "/foo", None),
        ("/*", "/x", {}),
        ("/*", "/", None),  # '*' is exactly one segment
        ("/*/bar", "/x/bar/baz", {}),
        ("/*/bar", "/x/baz", None),
        ("/{a}", "/x", {"a": "x"}),
        ("/{a}/{b}", "/x/y/z", {"a": "x", "b": "y"}),
        ("/{a}/{b}", "/x", None),
        ("/svc/{name}", "/svc/web", {"name": "web"}),
        ("/svc/{name}", "/other/web", None),
        ("/{a}-{b}", "/x-y", {"a": "x", "b": "y"}),
        ("/{a}-{b}", "/x-y-z", {"a": "x-y", "b": "z"}),  # greedy
        ("/{a}-{b}", "/xy", None),
        ("/{a}-{b}", "/x-", None),  # a capture is never empty
        ("/pre-{x}", "/pre-foo", {"x": "foo"}),
        ("/pre-{x}", "/pre-", None),
        ("/pre-{x}", "/prefoo", None),
        ("/{x}.svc", "/web.svc", {"x": "web"}),
        ("/{x}.svc", "/webxsvc", None),  # '.' is literal, not a regex wildcard
        ("/{host}:{port}", "/h.example:8080", {"host": "h.example", "port": "8080"}),
        ("/{a.b}/{c_d-e}", "/1/2", {"a.b": "1", "c_d-e": "2"}),
        ("/*/{x}", "/skip/keep", {"x": "keep"}),
        ("/{x}", "/a\\x20b", {"x": "\\x61\\x20\\x62"}),  # labels are matched as shown
    ],
)
def test_extract(pattern: str, path: str, expected: dict[str, str] | None) -> None:
    m = PathMatcher(pattern)
    assert m.extract(P(path)) == expected
    assert m.matches(P(path)) is (expected is not None)


def test_length_and_names() -> None:
    m = PathMatcher("/svc/*/{a}-{b}/{c}")
    assert len(m) == 4
    assert m.names == ["a", "b", "c"]
    assert len(PathMatcher("/")) == 0
    assert PathMatcher.read("/a") == PathMatcher("/a")
    assert hash(PathMatcher("/a")) == hash(PathMatcher("/a"))
    assert str(PathMatcher("/a/{b}")) == "/a/{b}"


@pytest.mark.parametrize(
    ("variables", "template", "expected"),
    [
        ({"a": "x"}, "/srv/{a}", "/srv/x"),
        ({"a": "x", "b": "y"}, "/{b}/{a}/{b}", "/y/x/y"),
        ({"a": "x"}, "/srv/{a}-{a}.svc", "/srv/x-x.svc"),
        ({"a": "x"}, "/srv/{missing}", "/srv/{missing}"),  # unknown names are left as they are
        ({}, "/plain", "/plain"),
    ],
)
def test_substitute(variables: dict[str, str], template: str, expected: str) -> None:
    assert PathMatcher.substitute(variables, template) == expected


def test_extract_then_substitute_round_trips_escaped_labels() -> None:
    m = PathMatcher("/{x}/api")
    variables = m.extract(P("/a\\x20b/api"))
    assert variables is not None
    assert P(PathMatcher.substitute(variables, "/srv/{x}")) == Path(b"srv", b"a b")


@pytest.mark.parametrize(
    ("pattern", "offset"),
    [
        ("foo", 0),
        ("", 0),
        ("{a}", 0),
        ("/{a", 1),
        ("/a}", 2),
        ("/a/{b", 3),
        ("/x/{}", 3),
        ("/{1x}", 1),  # a capture name starts with a letter or '_'
        ("/{a}{", 4),
        ("/a//b", 3),
        ("//a", 1),  # only trailing '/' are ignored
    ],
)
def test_parse_errors(pattern: str, offset: int) -> None:
    with pytest.raises(ParseError) as info:
        PathMatcher(pattern)
    assert info.value.offset == offset
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("pattern", "same_as"),
    [
        ("/%/io.l5d.port/4141/#/io.l5d.fs/", "/%/io.l5d.port/4141/#/io.l5d.fs"),
        ("/a/", "/a"),
        ("/{service}/", "/{service}"),
        ("/*/", "/*"),
        ("/a//", "/a"),
        ("//", "/"),
    ],
)
def test_trailing_slashes_are_ignored_as_linkerd_does(pattern: str, same_as: str) -> None:
    """Linkerd splits the pattern with Java's ``String.split`` (trailing empty strings are
    dropped); its TLS docs write ``prefix: "/%/io.l5d.port/4141/#/io.l5d.fs/"``."""
    m, expected = PathMatcher(pattern), PathMatcher(same_as)
    assert len(m) == len(expected)
    assert m.names == expected.names
    for path in ("/", "/a", "/a/b", "/%/io.l5d.port/4141/#/io.l5d.fs/web", "/x"):
        assert m.extract(P(path)) == expected.extract(P(path)), path
    assert str(m) == pattern  # shown as written


def test_paths_still_refuse_a_trailing_slash() -> None:
    """Only patterns are lenient: Finagle's Path.read refuses ``/foo/``."""
    with pytest.raises(ParseError):
        Path.read("/a/")
