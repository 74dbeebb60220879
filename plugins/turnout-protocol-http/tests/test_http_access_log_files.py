"""Where the access log goes: its directory is created (as Linkerd did), a path that cannot be
opened is a located config error in ``turnout check`` and a clean start-up error, never a
traceback; a failing write is logged, not raised (issue 10)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from turnout.testing import free_port, http_request, wait_until
from turnout_protocol_http.accesslog import (
    AccessLog,
    AccessLogError,
    access_log_problem,
)


def _config(log: str) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "routers": [
                {
                    "protocol": "http",
                    "httpAccessLog": log,
                    "dtab": "/svc => /$/inet/127.0.0.1/1;",
                    "servers": [{"port": free_port()}],
                }
            ],
        },
        sort_keys=False,
    )


def _turnout(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


# -- unit: the checks and the opening ----------------------------------------------------------
def test_a_missing_directory_is_no_problem_and_is_created(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "deeper" / "access.log"
    assert access_log_problem(str(path)) is None
    log = AccessLog(str(path), "combined")
    try:
        assert path.parent.is_dir()
        assert path.exists()
    finally:
        log.close()


def test_a_relative_path_is_created_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert access_log_problem("logs/access.log") is None
    AccessLog("logs/access.log", "combined").close()
    assert (tmp_path / "logs" / "access.log").is_file()


def test_a_file_in_the_way_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    path = tmp_path / "blocker" / "logs" / "access.log"
    problem = access_log_problem(str(path))
    assert problem is not None
    assert "is not a directory" in problem and "blocker" in problem
    with pytest.raises(AccessLogError, match=r"cannot open the access log .*Not a directory"):
        AccessLog(str(path), "combined")


def test_a_directory_is_not_a_log_file(tmp_path: Path) -> None:
    problem = access_log_problem(str(tmp_path))
    assert problem is not None and "is a directory" in problem
    with pytest.raises(AccessLogError, match="Is a directory"):
        AccessLog(str(tmp_path), "combined")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_directory_is_a_problem(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        problem = access_log_problem(str(locked / "logs" / "access.log"))
        assert problem is not None and "no permission" in problem
        with pytest.raises(AccessLogError, match="Permission denied"):
            AccessLog(str(locked / "logs" / "access.log"), "combined")
    finally:
        locked.chmod(0o700)


def test_a_failing_write_is_logged_once_and_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = AccessLog(str(tmp_path / "access.log"), "combined")

    class Full:
        def write(self, _: str) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    real = log.file
    log.file = Full()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="turnout.http.accesslog"):
        for _ in range(3):
            log.lines.append("a line")
            log.flush()
        log.close()
    real.close()
    warnings = [r for r in caplog.records if "cannot write the access log" in r.getMessage()]
    assert len(warnings) == 1
    assert "No space left on device" in warnings[0].getMessage()
    assert log.dropped == 3


# -- the command line --------------------------------------------------------------------------
def test_check_reports_an_unopenable_access_log_at_its_key(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    (tmp_path / "l5d.yaml").write_text(_config("blocker/access.log"))
    done = _turnout("check", "l5d.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    line = next(n for n, t in enumerate(_config("x").splitlines(), 1) if "httpAccessLog" in t)
    assert f"l5d.yaml:{line}:" in done.stderr
    assert "httpAccessLog: cannot create the access log 'blocker/access.log'" in done.stderr


def test_check_accepts_a_log_whose_directory_is_missing(tmp_path: Path) -> None:
    (tmp_path / "l5d.yaml").write_text(_config("logs/access.log"))
    done = _turnout("check", "l5d.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "logs").exists()  # check creates nothing


def test_run_refuses_an_unopenable_access_log_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    (tmp_path / "l5d.yaml").write_text(_config("blocker/logs/access.log"))
    done = _turnout("run", "l5d.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "routers[0].httpAccessLog: cannot create" in done.stderr


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_run_creates_the_access_log_directory(http_proxy, disco_dir, recording_backend) -> None:
    """Linkerd's http.yaml and access-logs.yaml write ``logs/access.log`` relative to the
    working directory, which need not have a ``logs`` directory yet."""
    disco_dir.write("web", recording_backend())
    proxy = http_proxy(router={"httpAccessLog": "logs/access.log"})
    assert http_request(proxy.port, "GET", "/", {"Host": "web"}).status == 200
    log = proxy.cwd / "logs" / "access.log"
    assert wait_until(lambda: log.exists() and log.read_text().count("\n") >= 1, 5)
