"""Running out of file descriptors is counted and logged once per interval (issue 10).

asyncio's loop reports a failed ``accept()`` to the loop's exception handler (once per
pending connection, with a traceback); uvloop reports nothing at all. Either way, turnout
counts ``process/fd_exhausted`` and logs one WARNING per interval naming the limit.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.metrics import MetricsTree
from turnout.process_stats import FdExhaustion, ProcessStats, fd_limit
from turnout.testing import free_port, port_open, wait_until

FAKE_PLUGIN_DIR = Path(__file__).parent / "plugins"
EMFILE = OSError(errno.EMFILE, os.strerror(errno.EMFILE))


# -- unit --------------------------------------------------------------------------------------
def test_accept_errors_are_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = MetricsTree()
    fds = FdExhaustion(metrics)
    loop = asyncio.new_event_loop()
    try:
        fds.install(loop)
        context = {"message": "socket.accept() out of system resource", "exception": EMFILE}
        with caplog.at_level(logging.DEBUG):
            for _ in range(50):
                loop.call_exception_handler(context)
            enfile = OSError(errno.ENFILE, os.strerror(errno.ENFILE))
            loop.call_exception_handler({**context, "exception": enfile})
        assert fds.count == 51
        assert metrics.flat()["process/fd_exhausted"] == 51
        records = [r for r in caplog.records if r.name.startswith(("turnout", "asyncio"))]
        assert len(records) == 1, [r.getMessage() for r in records]
        message = records[0].getMessage()
        assert records[0].levelno == logging.WARNING
        assert "out of file descriptors: accept() failed with EMFILE" in message
        assert f"limit {fd_limit()}" in message and "RLIMIT_NOFILE" in message

        fds._warned_at -= FdExhaustion.WARN_EVERY  # the interval passed
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="turnout.process"):
            loop.call_exception_handler(context)
        [again] = caplog.records
        assert "51 time(s) since the last warning" in again.getMessage()
    finally:
        fds.uninstall()
        loop.close()


def test_other_exceptions_go_to_the_previous_handler() -> None:
    seen: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        fds = FdExhaustion()
        fds.install(loop)
        other = {"message": "something else", "exception": ValueError("x")}
        refused = {"message": "x", "exception": OSError(errno.ECONNREFUSED, "refused")}
        loop.call_exception_handler(other)
        loop.call_exception_handler(refused)
        assert seen == [other, refused] and fds.count == 0
        fds.uninstall()
        assert loop.get_exception_handler() is not None
        loop.call_exception_handler(other)
        assert len(seen) == 3
        first, second = FdExhaustion(), FdExhaustion()  # linkers one after the other
        first.install(loop)
        second.install(loop)
        loop.call_exception_handler(other)  # not passed through the first one as well
        assert len(seen) == 4 and second._previous is first._previous
    finally:
        loop.close()


def test_without_a_previous_handler_the_default_one_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        FdExhaustion().install(loop)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.call_exception_handler({"message": "boom", "exception": ValueError("x")})
        assert any("boom" in r.getMessage() for r in caplog.records)
    finally:
        loop.close()


def test_asyncios_late_accept_retry_on_a_closed_server_is_not_an_error() -> None:
    """After EMFILE, asyncio retries accepting a second later, even when the server was
    closed meanwhile (a shutdown): that retry fails on the closed socket."""
    seen: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        FdExhaustion().install(loop)

        def _start_serving(*_: Any) -> None:
            pass

        def retry(sock: socket.socket) -> asyncio.TimerHandle:
            return asyncio.TimerHandle(0.0, _start_serving, (None, sock, None, None), loop)

        closed = socket.socket()
        closed.close()
        error = ValueError("Invalid file descriptor: -1")
        context = {"message": "cb", "exception": error, "handle": retry(closed)}
        loop.call_exception_handler(context)
        assert seen == []
        with socket.socket() as open_socket:  # not closed: a real error, passed on
            context = {"message": "cb", "exception": error, "handle": retry(open_socket)}
            loop.call_exception_handler(context)
        assert len(seen) == 1
    finally:
        loop.close()


def test_the_probe_notices_exhaustion(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = MetricsTree()
    fds = FdExhaustion(metrics)
    assert fds.probe() is True and fds.count == 0

    def no_fd(*_: Any, **__: Any) -> int:
        raise EMFILE

    monkeypatch.setattr(os, "open", no_fd)
    assert fds.probe() is False
    assert metrics.flat()["process/fd_exhausted"] == 1


def test_process_stats_publish_the_limit() -> None:
    metrics = MetricsTree()
    ProcessStats(metrics)
    flat = metrics.flat()
    assert flat["process/fd_limit"] == fd_limit()
    assert flat["process/fd_exhausted"] == 0


# -- a real process, on both event loops -------------------------------------------------------
SERVE = textwrap.dedent(
    """
    import asyncio, resource, sys
    from turnout.config.loader import load_file
    from turnout.linker import Linker
    from turnout.plugin_manager import load_plugins
    import logging
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    config, which, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    plugins = load_plugins()
    linker = Linker.build(load_file(config, registry=plugins.registry), plugins, routers=False)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    if which == "uvloop":
        import uvloop
        uvloop.run(linker.serve())
    else:
        asyncio.run(linker.serve())
    """
)


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE behaviour checked on Linux")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_real_descriptor_shortage_on_accept_is_counted_and_logged(
    tmp_path: Path, loop: str
) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    admin = free_port()
    config = tmp_path / "l5d.yaml"
    config.write_text(
        yaml.safe_dump(
            {"admin": {"port": admin}, "routers": [{"protocol": "http", "servers": [{}]}]}
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    env.update(
        TURNOUT_DISABLE_PLUGIN_AUTOLOAD="1",
        TURNOUT_PLUGIN_MODULES="turnout_fake_http",
        PYTHONPATH=str(FAKE_PLUGIN_DIR),
    )
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(config), loop, "64"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    clients: list[socket.socket] = []
    try:
        assert wait_until(lambda: port_open("127.0.0.1", admin), 20), stderr.read_text()
        for _ in range(120):  # more connections than descriptors: accept() runs out
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", admin))
            except OSError:
                s.close()
                break
            clients.append(s)
        time.sleep(1.5)  # the probe runs four times a second
        for s in clients:
            s.close()
        clients.clear()

        def exhausted() -> float:
            url = f"http://127.0.0.1:{admin}/admin/metrics.json"
            with urllib.request.urlopen(url, timeout=5) as r:
                return float(json.load(r)["process/fd_exhausted"])

        count = 0.0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the admin answers once descriptors are back
            try:
                count = exhausted()
                break
            except OSError:
                time.sleep(0.1)
        assert count >= 1
    finally:
        for s in clients:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = stderr.read_text()
    warnings = [line for line in log.splitlines() if "out of file descriptors" in line]
    assert 1 <= len(warnings) <= 2, log  # one per 10 s (2: a slow machine crossed one)
    assert "limit 64 (RLIMIT_NOFILE)" in warnings[0]
    assert "socket.accept() out of system resource" not in log  # no traceback per accept
    assert "Traceback" not in log, log
