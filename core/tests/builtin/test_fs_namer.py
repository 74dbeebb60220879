"""The io.l5d.fs namer: address files, live updates, directory layout and safety."""

import asyncio
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

import pytest
from turnout.builtin.namers import FsNamer, FsNamerConfig, parse_addresses
from turnout.naming import (
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    ConfiguredNamersInterpreter,
    Dtab,
    GlobalNamer,
    Leaf,
    NameBound,
    Neg,
    Ok,
    Path,
    State,
)
from turnout.naming.addr import WEIGHT_KEY
from turnout.testing.config import build_context

P = Path.read
W = WEIGHT_KEY


def fs_namer(root: FsPath, poll_ms: int = 30) -> FsNamer:
    namer = FsNamerConfig(root_dir=str(root), poll_interval_ms=poll_ms).new_namer(build_context())
    assert isinstance(namer, FsNamer)
    return namer


def first_state(namer: FsNamer, path: str) -> State[Any]:
    """The lookup as an observer first sees it (observed, then released)."""
    seen: list[State[Any]] = []
    namer.lookup(P(path)).observe(seen.append).close()
    return seen[0]


def bound_of(state: State[Any]) -> NameBound:
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    b = state.value.value
    assert isinstance(b, NameBound)
    return b


def first_addr(b: NameBound) -> Addr:
    seen: list[Addr] = []
    b.addr.observe(seen.append).close()
    return seen[0]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.01)


def A(host: str, port: int, weight: float | None = None) -> Address:
    return Address(host, port, {W: weight} if weight is not None else None)


# ---------------------------------------------------------------------------------------------
# parse_addresses
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("\n\n   \n", []),
        ("# only a comment\n", []),
        ("127.0.0.1 8080", [A("127.0.0.1", 8080)]),
        ("127.0.0.1 8080\n", [A("127.0.0.1", 8080)]),
        ("  10.0.0.1\t80  # trailing comment\n", [A("10.0.0.1", 80)]),
        ("a 1\n\n# x\nb 2\r\n", [A("a", 1), A("b", 2)]),
        ("10.0.0.1 8080 * 0.5", [A("10.0.0.1", 8080, 0.5)]),
        ("10.0.0.1 8080 * 2", [A("10.0.0.1", 8080, 2.0)]),
        ("10.0.0.1 8080 * 0", [A("10.0.0.1", 8080, 0.0)]),
        ("10.0.0.1 1 * 1.5\n10.0.0.2 65535", [A("10.0.0.1", 1, 1.5), A("10.0.0.2", 65535)]),
        ("web.example 80", [A("web.example", 80)]),
        ("a 1\na 1", [A("a", 1)]),
    ],
)
def test_parse_addresses(text: str, expected: list[Address]) -> None:
    parsed = parse_addresses(text)
    assert parsed == AddrBound(expected)
    assert parsed.meta == {}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("10.0.0.1", 1),
        ("10.0.0.1 80\nbad", 2),
        ("a 1\n\n# c\nb 2 3", 4),
        ("a port", 1),
        ("a 0", 1),
        ("a 65536", 1),
        ("a -1", 1),
        ("a 80 *", 1),
        ("a 80 * x", 1),
        ("a 80 * -1", 1),
        ("a 80 * nan", 1),
        ("a 80 * 1 extra", 1),
        ("a 80 x 1", 1),
        ("a 80 *0.5", 1),
        pytest.param("a 8²", 1),
    ],
)
def test_parse_addresses_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(ValueError, match=rf"^line {line}:"):
        parse_addresses(text)


# ---------------------------------------------------------------------------------------------
# lookups (synchronous: one read when observed outside an event loop)
# ---------------------------------------------------------------------------------------------


def test_file_binds_with_weights_in_metadata(tmp_path: FsPath) -> None:
    (tmp_path / "web").write_text(
        "# the web pool\n\n10.0.0.1 8080\n10.0.0.2 8080 * 2.5  # canary\n\n10.0.0.3 8081 * 0\n"
    )
    b = bound_of(first_state(fs_namer(tmp_path), "/web"))
    assert b.id == P("/#/io.l5d.fs/web")
    assert b.residual == Path.empty
    addr = first_addr(b)
    assert addr == AddrBound(
        [A("10.0.0.1", 8080), A("10.0.0.2", 8080, 2.5), A("10.0.0.3", 8081, 0)]
    )
    assert isinstance(addr, AddrBound)
    weights = sorted((a.host, a.meta.get(W), a.weight) for a in addr.addresses)
    assert weights == [("10.0.0.1", None, 1.0), ("10.0.0.2", 2.5, 2.5), ("10.0.0.3", 0.0, 0.0)]


def test_residual_and_custom_prefix(tmp_path: FsPath) -> None:
    (tmp_path / "web").write_text("10.0.0.1 80\n")
    config = FsNamerConfig(root_dir=str(tmp_path), prefix=P("/disco"))
    b = bound_of(first_state(config.new_namer(build_context()), "/web/a/b"))
    assert (str(b.id), str(b.residual)) == ("/#/disco/web", "/a/b")


def test_empty_file_is_bound_to_no_endpoints(tmp_path: FsPath) -> None:
    (tmp_path / "idle").write_text("# nobody home\n")
    assert first_addr(bound_of(first_state(fs_namer(tmp_path), "/idle"))) == AddrBound()


@pytest.mark.parametrize("path", ["/missing", "/", "/team", "/team/missing", "/web\\x00"])
def test_missing_names_are_neg(tmp_path: FsPath, path: str) -> None:
    (tmp_path / "web").write_text("10.0.0.1 80\n")
    (tmp_path / "team").mkdir()
    assert first_state(fs_namer(tmp_path), path) == Ok(Neg)


def test_missing_root_dir_is_neg(tmp_path: FsPath) -> None:
    assert first_state(fs_namer(tmp_path / "nope"), "/web") == Ok(Neg)


def test_subdirectories_are_namespaces(tmp_path: FsPath) -> None:
    (tmp_path / "team" / "sub").mkdir(parents=True)
    (tmp_path / "team" / "web").write_text("10.0.0.5 80\n")
    (tmp_path / "team" / "sub" / "api").write_text("10.0.0.6 81\n")
    namer = fs_namer(tmp_path)
    b = bound_of(first_state(namer, "/team/web/x"))
    assert (str(b.id), str(b.residual)) == ("/#/io.l5d.fs/team/web", "/x")
    assert first_addr(b) == AddrBound([A("10.0.0.5", 80)])
    b = bound_of(first_state(namer, "/team/sub/api"))
    assert str(b.id) == "/#/io.l5d.fs/team/sub/api"
    assert first_addr(b) == AddrBound([A("10.0.0.6", 81)])


@pytest.mark.parametrize("path", ["/..", "/../outside", "/.hidden", "/team\\x2fweb", "/."])
def test_no_path_traversal(tmp_path: FsPath, path: str) -> None:
    root = tmp_path / "root"
    (root / "team").mkdir(parents=True)
    (root / "team" / "web").write_text("10.0.0.5 80\n")
    (root / ".hidden").write_text("10.0.0.9 80\n")
    (tmp_path / "outside").write_text("10.0.0.66 80\n")
    assert first_state(fs_namer(root), path) == Ok(Neg)


def test_malformed_file_without_previous_good_content_fails_with_line(tmp_path: FsPath) -> None:
    (tmp_path / "bad").write_text("10.0.0.1 80\nnot-an-address\n")
    addr = first_addr(bound_of(first_state(fs_namer(tmp_path), "/bad")))
    assert isinstance(addr, AddrFailed), addr
    assert "line 2" in addr.cause


def test_malformed_file_is_reported_in_state(tmp_path: FsPath) -> None:
    (tmp_path / "bad").write_text("10.0.0.1 80\nnot-an-address\n")
    namer = fs_namer(tmp_path)
    first_addr(bound_of(first_state(namer, "/bad")))
    entry = namer.state()["files"]["/bad"]
    assert "line 2" in entry["lastError"]


def test_state(tmp_path: FsPath) -> None:
    (tmp_path / "web").write_text("10.0.0.2 80\n10.0.0.1 80\n")
    namer = fs_namer(tmp_path)
    assert namer.state() == {"rootDir": str(tmp_path), "files": {}}
    first_addr(bound_of(first_state(namer, "/web")))
    state = namer.state()
    assert state["rootDir"] == str(tmp_path)
    web = state["files"]["/web"]
    assert web["addresses"] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert web["lastError"] is None
    assert isinstance(web["lastUpdate"], float)


def test_bound_names_while_watched(tmp_path: FsPath) -> None:
    for name in ["web", "api"]:
        (tmp_path / name).write_text("10.0.0.1 80\n")
    (tmp_path / "team").mkdir()
    (tmp_path / ".hidden").write_text("10.0.0.1 80\n")
    namer = fs_namer(tmp_path)
    obs = namer.lookup(P("/web")).observe(lambda _: None)
    assert list(namer.bound_names()) == [P("/#/io.l5d.fs/api"), P("/#/io.l5d.fs/web")]
    obs.close()


def test_bound_names_of_a_fresh_namer(tmp_path: FsPath) -> None:
    (tmp_path / "web").write_text("10.0.0.1 80\n")
    assert list(fs_namer(tmp_path).bound_names()) == [P("/#/io.l5d.fs/web")]


# ---------------------------------------------------------------------------------------------
# live updates (inside an event loop: the watch polls)
# ---------------------------------------------------------------------------------------------


def test_file_edit_while_observed_is_picked_up_by_the_polling(tmp_path: FsPath) -> None:
    file = tmp_path / "web"
    file.write_text("10.0.0.1 80\n")
    namer = FsNamerConfig(root_dir=str(tmp_path)).new_namer(
        build_context()
    )  # default 250 ms polling

    async def main() -> None:
        act = namer.lookup(P("/web"))
        obs = act.observe(lambda _: None)
        b = bound_of(act.value)
        seen: list[Addr] = []
        addr_obs = b.addr.observe(seen.append)
        assert seen[-1] == AddrBound([A("10.0.0.1", 80)])
        file.write_text("10.0.0.1 80\n10.0.0.2 81 * 3\n")
        # within one 250 ms poll; the timeout leaves slack for a loaded machine
        await eventually(lambda: seen[-1] != AddrBound([A("10.0.0.1", 80)]), timeout=5.0)
        assert seen[-1] == AddrBound([A("10.0.0.1", 80), A("10.0.0.2", 81, 3.0)])
        addr_obs.close()
        obs.close()

    asyncio.run(main())


def test_good_file_turning_malformed_keeps_last_good_addresses(tmp_path: FsPath) -> None:
    file = tmp_path / "web"
    file.write_text("10.0.0.1 80\n")
    namer = fs_namer(tmp_path)
    good = AddrBound([A("10.0.0.1", 80)])

    async def main() -> None:
        act = namer.lookup(P("/web"))
        obs = act.observe(lambda _: None)
        seen: list[Addr] = []
        addr_obs = bound_of(act.value).addr.observe(seen.append)
        assert seen == [good]

        file.write_text("10.0.0.1 80\n10.0.0.2 eighty\n")
        await eventually(lambda: namer.state()["files"]["/web"]["lastError"] is not None)
        assert "line 2" in namer.state()["files"]["/web"]["lastError"]
        assert seen[-1] == good
        assert namer.state()["files"]["/web"]["addresses"] == ["10.0.0.1:80"]

        file.write_text("10.0.0.3 80\n")
        await eventually(lambda: seen[-1] == AddrBound([A("10.0.0.3", 80)]))
        assert namer.state()["files"]["/web"]["lastError"] is None
        addr_obs.close()
        obs.close()

    asyncio.run(main())


def test_new_file_binds_and_removed_file_is_neg_again(tmp_path: FsPath) -> None:
    namer = fs_namer(tmp_path)
    config = FsNamerConfig(root_dir=str(tmp_path))
    interp = ConfiguredNamersInterpreter([(config.effective_prefix, namer)], GlobalNamer())
    dtab = Dtab.read("/svc=>/$/inet/127.1/9999;/svc=>/#/io.l5d.fs")  # fs wins, else fallback

    async def main() -> None:
        bound = interp.bind(dtab, P("/svc/new"))
        seen: list[State[Any]] = []
        obs = bound.observe(seen.append)
        assert str(bound_of(seen[-1]).id) == "/$/inet/127.1/9999"

        (tmp_path / "new").write_text("10.0.0.7 7\n")
        await eventually(lambda: str(bound_of(seen[-1]).id) == "/#/io.l5d.fs/new")
        b = bound_of(seen[-1])
        addr_obs = b.addr.observe(lambda _: None)
        assert b.addr.value == AddrBound([A("10.0.0.7", 7)])

        (tmp_path / "new").unlink()
        await eventually(lambda: str(bound_of(seen[-1]).id) == "/$/inet/127.1/9999")
        addr_obs.close()
        obs.close()

    asyncio.run(main())


def test_lookup_follows_a_new_subdirectory(tmp_path: FsPath) -> None:
    namer = fs_namer(tmp_path)

    async def main() -> None:
        act = namer.lookup(P("/team/web"))
        seen: list[State[Any]] = []
        obs = act.observe(seen.append)
        assert seen[-1] == Ok(Neg)
        (tmp_path / "team").mkdir()
        (tmp_path / "team" / "web").write_text("10.0.0.8 8\n")
        await eventually(lambda: seen[-1] != Ok(Neg))
        assert str(bound_of(seen[-1]).id) == "/#/io.l5d.fs/team/web"
        obs.close()

    asyncio.run(main())


def test_watch_stops_when_nothing_observes(tmp_path: FsPath) -> None:
    (tmp_path / "web").write_text("10.0.0.1 80\n")
    namer = fs_namer(tmp_path)

    async def main() -> None:
        obs = namer.lookup(P("/web")).observe(lambda _: None)
        assert namer.watcher._task is not None
        obs.close()
        assert namer.watcher._task is None
        await asyncio.sleep(0)

    asyncio.run(main())
