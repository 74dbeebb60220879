"""io.l5d.fs namer and interpreter under read errors that are not "gone" (issue 10).

Running out of file descriptors (EMFILE/ENFILE), a permission error or an I/O error must keep
the last good content, be retried at every poll (not only when the path's timestamps change),
be logged once per interval and counted; only ENOENT/ENOTDIR mean that a path is gone.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path as FsPath
from types import SimpleNamespace
from typing import Any

import pytest
from turnout.builtin import watch as watch_module
from turnout.builtin.interpreters import FsInterpreterConfig, watched_dtab
from turnout.builtin.namers import FsNamer, FsNamerConfig
from turnout.builtin.watch import PollingWatcher
from turnout.metrics import MetricsTree
from turnout.naming import (
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    Dtab,
    Failed,
    GlobalNamer,
    Leaf,
    NameBound,
    Neg,
    Ok,
    Path,
    State,
)
from turnout.testing.config import build_context

P = Path.read
EMFILE = OSError(errno.EMFILE, os.strerror(errno.EMFILE))


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.01)


async def failed_polls(watcher: PollingWatcher, n: int = 3) -> None:
    """Wait until the watcher's reads failed ``n`` times (it retries at every poll)."""
    await eventually(lambda: watcher.errors >= n)


def age(path: FsPath) -> None:
    """Make ``path`` look modified long ago, so that the watch re-reads it only when its
    stamp changes (not under the "modified in the last second" rule)."""
    os.utime(path, (1_000_000_000, 1_000_000_000))


def bound(state: State[Any]) -> NameBound:
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    b = state.value.value
    assert isinstance(b, NameBound)
    return b


class Faults:
    """Makes directory listings and file reads of chosen paths fail with an OSError."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dirs: dict[str, OSError] = {}
        self.files: dict[str, OSError] = {}
        real_scandir = os.scandir
        real_read_bytes = pathlib.Path.read_bytes
        faults = self

        def scandir(path: Any = ".") -> Any:
            error = faults.dirs.get(str(path))
            if error is not None:
                raise OSError(error.errno, error.strerror, str(path))
            return real_scandir(path)

        def read_bytes(self: pathlib.Path) -> bytes:
            error = faults.files.get(str(self))
            if error is not None:
                raise OSError(error.errno, error.strerror, str(self))
            return real_read_bytes(self)

        monkeypatch.setattr(watch_module.os, "scandir", scandir)
        monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)

    def clear(self) -> None:
        self.dirs.clear()
        self.files.clear()


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(monkeypatch)


def namer_with_metrics(root: FsPath, poll_ms: int = 20) -> tuple[FsNamer, MetricsTree]:
    metrics = MetricsTree()
    config = FsNamerConfig(root_dir=str(root), poll_interval_ms=poll_ms)
    namer = config.new_namer(build_context(metrics=metrics))
    assert isinstance(namer, FsNamer)
    return namer, metrics


# -- the namer's directory listings ------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.EACCES, errno.EIO])
def test_a_failing_listing_keeps_the_last_good_names_and_is_retried(
    tmp_path: FsPath, faults: Faults, code: int
) -> None:
    (tmp_path / "web").write_text("10.0.0.1 80\n")
    namer, metrics = namer_with_metrics(tmp_path)

    async def main() -> None:
        web: list[State[Any]] = []
        api: list[State[Any]] = []
        obs = [namer.lookup(P("/web")).observe(web.append)]
        obs.append(namer.lookup(P("/api")).observe(api.append))
        assert str(bound(web[-1]).id) == "/#/io.l5d.fs/web"
        assert api[-1] == Ok(Neg)

        faults.dirs[str(tmp_path)] = OSError(code, os.strerror(code))
        (tmp_path / "api").write_text("10.0.0.2 80\n")  # the directory changes: a re-read
        age(tmp_path)
        await failed_polls(namer.watcher)
        assert str(bound(web[-1]).id) == "/#/io.l5d.fs/web"  # not "gone": still routed
        assert api[-1] == Ok(Neg)  # the listing that would show it failed
        errors = metrics.flat()["namer/#/io.l5d.fs/errors"]
        assert errors >= 3  # counted at every failed poll
        unreadable = namer.state()["unreadable"][str(tmp_path)]
        assert os.strerror(code) in unreadable["lastError"]
        assert unreadable["errorSince"] is not None

        faults.clear()  # the directory does not change again: the retry alone must see "api"
        await eventually(lambda: isinstance(api[-1], Ok) and api[-1] != Ok(Neg))
        assert str(bound(api[-1]).id) == "/#/io.l5d.fs/api"
        assert str(bound(web[-1]).id) == "/#/io.l5d.fs/web"
        assert "unreadable" not in namer.state()
        for o in obs:
            o.close()

    asyncio.run(main())


def test_a_first_listing_that_fails_fails_fast_then_recovers(
    tmp_path: FsPath, faults: Faults
) -> None:
    (tmp_path / "web").write_text("10.0.0.1 80\n")
    age(tmp_path)
    namer, _ = namer_with_metrics(tmp_path)
    faults.dirs[str(tmp_path)] = EMFILE

    async def main() -> None:
        seen: list[State[Any]] = []
        obs = namer.lookup(P("/web")).observe(seen.append)
        assert isinstance(seen[-1], Failed), seen  # not Neg ("no such name"): the error
        assert "Too many open files" in str(seen[-1].error)
        faults.clear()
        await eventually(lambda: isinstance(seen[-1], Ok))
        assert str(bound(seen[-1]).id) == "/#/io.l5d.fs/web"
        obs.close()

    asyncio.run(main())


@pytest.mark.parametrize("blocker", ["root-is-a-file", "missing"])
def test_enoent_and_enotdir_still_mean_gone(tmp_path: FsPath, blocker: str) -> None:
    root = tmp_path / "disco"
    if blocker == "root-is-a-file":
        root.write_text("")  # listing it fails with ENOTDIR
    namer, metrics = namer_with_metrics(root)
    seen: list[State[Any]] = []
    namer.lookup(P("/web")).observe(seen.append).close()
    assert seen == [Ok(Neg)]
    assert metrics.flat()["namer/#/io.l5d.fs/errors"] == 0


# -- the namer's address files -----------------------------------------------------------------
def test_a_failing_file_read_keeps_the_addresses_and_is_retried(
    tmp_path: FsPath, faults: Faults
) -> None:
    file = tmp_path / "web"
    file.write_text("10.0.0.1 80\n")
    namer, metrics = namer_with_metrics(tmp_path)
    good = AddrBound([Address("10.0.0.1", 80)])

    async def main() -> None:
        act = namer.lookup(P("/web"))
        obs = act.observe(lambda _: None)
        seen: list[Addr] = []
        addr_obs = bound(act.value).addr.observe(seen.append)
        assert seen == [good]

        faults.files[str(file)] = EMFILE
        file.write_text("10.0.0.2 80\n")
        age(file)
        await failed_polls(namer.watcher)
        assert seen[-1] == good
        entry = namer.state()["files"]["/web"]
        assert "Too many open files" in entry["lastError"]
        assert entry["addresses"] == ["10.0.0.1:80"] and "staleSeconds" in entry
        assert metrics.flat()["namer/#/io.l5d.fs/errors"] >= 3

        faults.clear()  # unchanged since the failed read: only a retry picks the edit up
        await eventually(lambda: seen[-1] == AddrBound([Address("10.0.0.2", 80)]))
        assert namer.state()["files"]["/web"]["lastError"] is None
        addr_obs.close()
        obs.close()

    asyncio.run(main())


def test_a_first_file_read_that_fails_fails_the_address(tmp_path: FsPath, faults: Faults) -> None:
    file = tmp_path / "web"
    file.write_text("10.0.0.1 80\n")
    age(file)  # unchanged from now on: only a retry reads it again
    namer, _ = namer_with_metrics(tmp_path)
    faults.files[str(file)] = EMFILE

    async def main() -> None:
        act = namer.lookup(P("/web"))
        obs = act.observe(lambda _: None)
        seen: list[Addr] = []
        addr_obs = bound(act.value).addr.observe(seen.append)
        assert isinstance(seen[-1], AddrFailed) and "Too many open files" in seen[-1].cause
        faults.clear()
        await eventually(lambda: seen[-1] == AddrBound([Address("10.0.0.1", 80)]))
        addr_obs.close()
        obs.close()

    asyncio.run(main())


def test_errors_are_logged_once_per_interval_not_per_poll(
    tmp_path: FsPath, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "web").write_text("10.0.0.1 80\n")
    namer, metrics = namer_with_metrics(tmp_path, poll_ms=10)

    async def main() -> None:
        obs = namer.lookup(P("/web")).observe(lambda _: None)
        faults.dirs[str(tmp_path)] = EMFILE
        (tmp_path / "api").write_text("10.0.0.2 80\n")
        await eventually(lambda: metrics.flat()["namer/#/io.l5d.fs/errors"] >= 10)
        faults.clear()
        await eventually(lambda: "unreadable" not in namer.state())
        obs.close()

    with caplog.at_level(logging.DEBUG, logger="turnout.watch"):
        asyncio.run(main())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "Too many open files (EMFILE)" in message and str(tmp_path) in message
    assert "keeping its last good content" in message
    assert any("can be read again" in r.getMessage() for r in caplog.records)


# -- the interpreter's dtab file ---------------------------------------------------------------
def test_dtab_file_read_errors_keep_the_dtab_and_are_retried(
    tmp_path: FsPath, faults: Faults
) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    watcher = PollingWatcher(0.02)
    activity = watched_dtab(watcher, str(file))

    async def main() -> None:
        seen: list[State[Any]] = []
        obs = activity.observe(seen.append)
        assert seen[-1] == Ok(Dtab.read("/svc=>/$/inet/127.1/1"))
        faults.files[str(file)] = EMFILE
        file.write_text("/svc=>/$/inet/127.1/2")
        age(file)
        await failed_polls(watcher)
        assert seen[-1] == Ok(Dtab.read("/svc=>/$/inet/127.1/1"))
        faults.clear()
        await eventually(lambda: seen[-1] == Ok(Dtab.read("/svc=>/$/inet/127.1/2")))
        obs.close()

    asyncio.run(main())


def test_dtab_file_first_read_error_fails_then_recovers(tmp_path: FsPath, faults: Faults) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    age(file)  # unchanged from now on: only a retry reads it again
    faults.files[str(file)] = EMFILE
    watcher = PollingWatcher(0.02)
    activity = watched_dtab(watcher, str(file))

    async def main() -> None:
        seen: list[State[Any]] = []
        obs = activity.observe(seen.append)
        assert isinstance(seen[-1], Failed) and "Too many open files" in str(seen[-1].error)
        faults.clear()
        await eventually(lambda: seen[-1] == Ok(Dtab.read("/svc=>/$/inet/127.1/1")))
        obs.close()

    asyncio.run(main())


def test_the_interpreter_counts_read_errors_in_the_router_metrics(tmp_path: FsPath) -> None:
    file = tmp_path / "dtab"
    file.write_text("/svc=>/$/inet/127.1/1")
    metrics = MetricsTree()
    router = SimpleNamespace(effective_label="out")
    ctx = SimpleNamespace(namers=[], global_namer=GlobalNamer(), metrics=metrics, router=router)
    interp = FsInterpreterConfig(dtab_file=str(file))
    interp.new_interpreter(ctx)  # type: ignore[arg-type]  # a stand-in with the fields it reads
    flat = metrics.flat()
    assert flat["rt/out/interpreter/io.l5d.fs/errors"] == 0
    assert flat["rt/out/interpreter/io.l5d.fs/stale_seconds"] == 0


# -- a real file descriptor limit --------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, resource, sys
    from turnout.builtin.namers import FsNamerConfig
    from turnout.naming import Path, Ok, Neg, Leaf
    from turnout.testing.config import build_context

    root = sys.argv[1]
    namer = FsNamerConfig(root_dir=root, poll_interval_ms=20).new_namer(build_context())

    def routed(seen):
        return isinstance(seen[-1], Ok) and isinstance(seen[-1].value, Leaf)

    async def main():
        web, api = [], []
        obs = [namer.lookup(Path.read("/web")).observe(web.append),
               namer.lookup(Path.read("/api")).observe(api.append)]
        out = {"before": [routed(web), routed(api)]}
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as e:
            out["exhausted"] = e.errno
        # the directory changes while no descriptor is left (rename needs none): the poll
        # lists it again, and that fails
        os.rename(os.path.join(root, "later"), os.path.join(root, "api"))
        os.utime(root, (1_000_000_000, 1_000_000_000))
        for _ in range(500):  # until a poll tried (and failed) to list it, a few times
            if namer.watcher.errors >= 3:
                break
            await asyncio.sleep(0.02)
        out["during"] = [routed(web), routed(api)]
        for fd in held:
            os.close(fd)
        # the directory does not change again: only a retry can see "api"
        for _ in range(250):
            if routed(api):
                break
            await asyncio.sleep(0.02)
        out["after"] = [routed(web), routed(api)]
        out["errors"] = namer.watcher.errors
        for o in obs:
            o.close()
        print(json.dumps(out))

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE behaviour checked on Linux")
def test_a_real_descriptor_shortage_does_not_lose_the_routes(tmp_path: FsPath) -> None:
    root = tmp_path / "disco"
    root.mkdir()
    (root / "web").write_text("10.0.0.1 80\n")
    (root / "later").write_text("10.0.0.2 80\n")  # renamed "api" while out of descriptors
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["before"] == [True, False]
    assert out["exhausted"] == errno.EMFILE
    assert out["during"] == [True, False], done.stderr  # web still routed while out of fds
    assert out["errors"] >= 1
    assert out["after"] == [True, True], done.stderr  # a retry saw the renamed file
    assert "Too many open files" in done.stderr  # logged
