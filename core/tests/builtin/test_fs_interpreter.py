"""The io.l5d.fs interpreter: a dtab read from a watched file, router dtab appended."""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

import pytest
from turnout.builtin.interpreters import FsInterpreterConfig, watched_dtab
from turnout.builtin.watch import PollingWatcher
from turnout.naming import (
    Activity,
    Dtab,
    DtabFileInterpreter,
    Empty,
    Fail,
    Failed,
    GlobalNamer,
    Leaf,
    Ok,
    Path,
    State,
    delegate_once,
)
from turnout.testing.config import build_context

P = Path.read
D = Dtab.read


def interpreter(file: FsPath, poll: float = 0.03) -> DtabFileInterpreter:
    return DtabFileInterpreter([], GlobalNamer(), watched_dtab(PollingWatcher(poll), str(file)))


def first(act: Activity[Any]) -> State[Any]:
    seen: list[State[Any]] = []
    act.observe(seen.append).close()
    return seen[0]


def bound_id(state: State[Any]) -> str:
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    return str(state.value.value.id)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# watched_dtab
# ---------------------------------------------------------------------------------------------


def test_watched_dtab_reads_the_file(tmp_path: FsPath) -> None:
    file = tmp_path / "dtab"
    file.write_text("# the dtab\n/svc => /$/inet/127.1/1;\n/svc/web => /$/nil\n")
    state = first(watched_dtab(PollingWatcher(), str(file)))
    assert state == Ok(D("/svc=>/$/inet/127.1/1;/svc/web=>/$/nil"))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no such file"), ("/svc => ", "expected"), ("/a=>/b;;", "expected")],
)
def test_watched_dtab_fails_without_a_valid_file(
    tmp_path: FsPath, content: str | None, fragment: str
) -> None:
    file = tmp_path / "dtab"
    if content is not None:
        file.write_text(content)
    state = first(watched_dtab(PollingWatcher(), str(file)))
    assert isinstance(state, Failed)
    assert isinstance(state.error, ValueError)
    assert str(file) in str(state.error) and fragment in str(state.error)


def test_watched_dtab_follows_edits_and_keeps_the_last_good_one(
    tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    act = watched_dtab(PollingWatcher(0.03), str(file))

    async def main() -> None:
        seen: list[State[Any]] = []
        obs = act.observe(seen.append)
        assert seen == [Ok(D("/svc=>/$/inet/127.1/1"))]

        file.write_text("/svc=>/$/inet/127.1/2;/x=>/y")
        await eventually(lambda: seen[-1] == Ok(D("/svc=>/$/inet/127.1/2;/x=>/y")))

        caplog.clear()
        file.write_text("/svc=>")  # invalid: the last good dtab stays
        await eventually(lambda: "keeping the last good dtab" in caplog.text)
        assert seen[-1] == Ok(D("/svc=>/$/inet/127.1/2;/x=>/y"))

        file.unlink()  # gone: still the last good one
        await eventually(lambda: "no such file" in caplog.text)
        assert seen[-1] == Ok(D("/svc=>/$/inet/127.1/2;/x=>/y"))

        file.write_text("/svc=>/$/inet/127.1/3")
        await eventually(lambda: seen[-1] == Ok(D("/svc=>/$/inet/127.1/3")))
        obs.close()

    with caplog.at_level(logging.WARNING, logger="turnout.interpreter"):
        asyncio.run(main())


def test_valid_dtab_file_logs_no_warning(
    tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    with caplog.at_level(logging.WARNING, logger="turnout.interpreter"):
        assert first(watched_dtab(PollingWatcher(), str(file))) == Ok(D("/svc=>/$/inet/127.1/1"))
    assert caplog.records == []


# ---------------------------------------------------------------------------------------------
# the interpreter
# ---------------------------------------------------------------------------------------------


def test_config_builds_a_dtab_file_interpreter(tmp_path: FsPath) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/7")
    interp = FsInterpreterConfig(dtab_file=str(file)).new_interpreter(build_context())
    assert isinstance(interp, DtabFileInterpreter)
    assert bound_id(first(interp.bind(Dtab.empty, P("/svc/x")))) == "/$/inet/127.1/7"


def test_dtab_file_edits_change_binding_live(
    tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    interp = interpreter(file)

    async def main() -> None:
        seen: list[State[Any]] = []
        obs = interp.bind(Dtab.empty, P("/svc/web")).observe(seen.append)
        assert bound_id(seen[-1]) == "/$/inet/127.1/1"

        file.write_text("/svc=>/$/inet/127.1/1;/svc/web=>/$/inet/127.1/2")
        await eventually(lambda: bound_id(seen[-1]) == "/$/inet/127.1/2")

        caplog.clear()
        file.write_text("/svc/web=>/$/inet/127.1/3 | ")  # invalid: keep binding as it is
        await eventually(lambda: "keeping the last good dtab" in caplog.text)
        assert bound_id(seen[-1]) == "/$/inet/127.1/2"

        file.write_text("/svc=>/$/nil")
        await eventually(lambda: seen[-1] == Ok(Empty))
        obs.close()

    with caplog.at_level(logging.WARNING, logger="turnout.interpreter"):
        asyncio.run(main())


def test_missing_dtab_file_fails_the_binding_until_it_appears(tmp_path: FsPath) -> None:
    file = tmp_path / "dtab"
    interp = interpreter(file)
    state = first(interp.bind(D("/svc=>/$/inet/127.1/1"), P("/svc/web")))
    assert isinstance(state, Failed) and "no such file" in str(state.error)

    async def main() -> None:
        seen: list[State[Any]] = []
        obs = interp.bind(Dtab.empty, P("/svc/web")).observe(seen.append)
        assert isinstance(seen[-1], Failed)
        file.write_text("/svc=>/$/inet/127.1/5")
        await eventually(lambda: isinstance(seen[-1], Ok))
        assert bound_id(seen[-1]) == "/$/inet/127.1/5"
        obs.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("router_dtab", "expected"),
    [
        ("", "/$/inet/127.1/1"),
        ("/svc=>/$/inet/127.1/2", "/$/inet/127.1/2"),  # router entries win
        ("/svc/web=>/$/inet/127.1/3", "/$/inet/127.1/3"),
        ("/svc/other=>/$/inet/127.1/3", "/$/inet/127.1/1"),
        ("/svc=>~", "/$/inet/127.1/1"),  # Neg falls back to the file's entry
        ("/svc=>/nothing", "/$/inet/127.1/1"),
        ("/file=>/$/inet/127.1/4;/svc=>/file", "/$/inet/127.1/4"),
    ],
)
def test_router_dtab_is_appended_after_the_files(
    tmp_path: FsPath, router_dtab: str, expected: str
) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1;/file=>/$/inet/127.1/9")
    interp = interpreter(file)
    assert bound_id(first(interp.bind(D(router_dtab), P("/svc/web")))) == expected


def test_router_fail_entry_overrides_the_file(tmp_path: FsPath) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    interp = interpreter(file)
    assert first(interp.bind(D("/svc=>!"), P("/svc/web"))) == Ok(Fail)


def test_delegation_includes_the_files_dtab(tmp_path: FsPath) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    interp = interpreter(file)
    obs = interp.dtab.observe(lambda _: None)  # the file is watched (as while routing)
    state = delegate_once(interp, D("/svc/web=>/$/inet/127.1/2"), P("/svc/web"))
    obs.close()
    assert isinstance(state, Ok)
    j = state.value.to_json()
    assert j["type"] == "alt"
    assert [c["bound"]["id"] for c in j["alt"]] == ["/$/inet/127.1/2", "/$/inet/127.1/1"]
