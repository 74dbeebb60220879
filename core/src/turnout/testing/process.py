"""A turnout process started from YAML text, for end-to-end tests, and /proc helpers."""

from __future__ import annotations

import contextlib
import os
import signal as signals
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .net import LOCALHOST, port_open

#: ports turnout listens on by default, per router protocol (used when a server has no port)
DEFAULT_PORTS = {"http": 4140, "h2": 4142, "thrift": 4114, "thriftmux": 4144, "mux": 4141}


class TurnoutProcess:
    """``python -m turnout run <config>`` in a subprocess, from a YAML text.

    The YAML is written to ``workdir`` (a new temporary directory by default), stdout and
    stderr go to files there. :meth:`start` waits until every router server port accepts
    connections and the admin server answers ``/admin/ping``. Tests pick the ports with
    :func:`~turnout.testing.free_port` and write them into the YAML; the admin port must be
    given (the default 9990 would collide between tests).

    Use it as a context manager, or call :meth:`stop` / :meth:`kill` (idempotent) and
    :meth:`cleanup` (which also removes the temporary directory, when one was made).
    """

    def __init__(
        self,
        config: str,
        *,
        workdir: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        config_name: str = "turnout.yaml",
    ) -> None:
        self.config_text = config
        parsed = yaml.safe_load(config) or {}
        self.admin_ip, self.admin_port = _admin_listener(parsed)
        self.server_addresses = _server_listeners(parsed)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="turnout-test-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cwd = Path(cwd) if cwd is not None else self.workdir
        self.config_path = self.workdir / config_name
        self.config_path.write_text(config)
        self.stdout_path = self.workdir / "turnout.stdout"
        self.stderr_path = self.workdir / "turnout.stderr"
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        if env:
            self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- properties ------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """The process id (after :meth:`start`)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def port(self) -> int:
        """The port of the first router server."""
        return self.server_addresses[0][1]

    @property
    def admin_url(self) -> str:
        """``http://<admin ip>:<admin port>``."""
        return f"http://{_connect_host(self.admin_ip)}:{self.admin_port}"

    def url(self, path: str = "/") -> str:
        """A URL on the first router server."""
        host, port = self.server_addresses[0]
        return f"http://{_connect_host(host)}:{port}{path}"

    def log(self) -> str:
        """What the process wrote to stdout and stderr so far."""
        out = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text = path.read_text(errors="replace")
                if text:
                    out.append(text)
        return "\n".join(out)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> TurnoutProcess:
        """Start the process and wait until it serves (see the class docstring).

        Raises :class:`RuntimeError` with the log if it exits or is not ready in time.
        """
        assert self.proc is None, "already started"
        cmd = [sys.executable, "-m", "turnout", "run", str(self.config_path), *self.args]
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        pending = list(self.server_addresses)
        admin_ok = self.admin_port is None
        while pending or not admin_ok:
            code = self.proc.poll()
            if code is not None:
                self._reap()
                raise RuntimeError(f"turnout exited with status {code} at start:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"turnout not ready in {timeout}s (waiting for {pending or 'admin'}):\n"
                    f"{self.log()}"
                )
            pending = [(h, p) for h, p in pending if not port_open(_connect_host(h), p)]
            if not admin_ok:
                admin_ok = self._ping()
            if pending or not admin_ok:
                time.sleep(0.05)
        return self

    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.admin_url + "/admin/ping", timeout=1) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as e:
            e.close()  # (it holds the response's socket: closed now, not by the collector)
            return False
        except (OSError, urllib.error.URLError):
            return False

    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int = signals.SIGTERM) -> None:
        """Send ``sig`` to the process (if it still runs)."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the exit status; :class:`subprocess.TimeoutExpired` after ``timeout``."""
        assert self.proc is not None, "not started"
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def stop(self, signal: int = signals.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``signal`` and return the exit status. If the process does not exit within
        ``timeout`` it is killed and :class:`TimeoutError` is raised with the log."""
        if self.proc is None:
            raise RuntimeError("not started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(
                    f"turnout did not exit within {timeout}s of signal {signal}:\n{self.log()}"
                ) from None
        self._reap()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """Kill the process (SIGKILL) if it runs, and release its files (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            self.returncode = self.proc.returncode

    def cleanup(self) -> None:
        """Kill the process and remove the temporary work directory (if one was made)."""
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> TurnoutProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- measurements ----------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        """``/proc/<pid>/status`` as a dict (see :func:`proc_status`)."""
        return proc_status(self.pid)

    def rss_kib(self) -> int:
        """Resident set size now (VmRSS), in KiB."""
        return proc_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        """Peak resident set size so far (VmHWM), in KiB."""
        return proc_kib(self.pid, "VmHWM")


class NamerdProcess:
    """``python -m turnout namerd <config>`` in ``workdir`` (its log in ``namerd.log``); ready
    when every one of ``ports`` (its admin and interface ports) accepts connections. ``env``
    is added to the environment (the caller's ``TURNOUT_*`` variables are not passed)."""

    def __init__(
        self,
        config: str,
        workdir: Path,
        ports: Sequence[int],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.ports = list(ports)
        self.env = dict(env or {})
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "namerd.yaml"
        self.config_path.write_text(config)
        self.log_path = workdir / "namerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> NamerdProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "turnout", "namerd", str(self.config_path)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"namerd exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"namerd not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def ready(self) -> bool:
        """Whether the started namerd is ready (every one of ``ports`` accepts); a subclass
        may wait for more (its API answering)."""
        return all(port_open(LOCALHOST, p) for p in self.ports)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait (killed if it does not exit in ``timeout``); the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signals.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def die_with_parent() -> None:
    """``preexec_fn`` for test subprocesses: on Linux, the child gets SIGKILL when the test
    process dies, so that no server outlives a crashed or killed test run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signals.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: rely on the fixtures' teardown
        pass


def _connect_host(ip: str) -> str:
    return LOCALHOST if ip in ("0.0.0.0", "", "::") else ip


def _admin_listener(config: dict[str, Any]) -> tuple[str, int | None]:
    admin = config.get("admin")
    if not isinstance(admin, dict) or "port" not in admin:
        raise ValueError(
            "give admin.port in the YAML (use free_port()): the default 9990 would collide"
        )
    port = int(admin["port"])
    return str(admin.get("ip", LOCALHOST)), port or None


def _server_listeners(config: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for router in config.get("routers") or ():
        protocol = router.get("protocol", "http")
        for server in router.get("servers") or ():
            port = int(server.get("port", DEFAULT_PORTS.get(protocol, 0)))
            if port:
                out.append((str(server.get("ip", LOCALHOST)), port))
    return out


# ---------------------------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as ``{field: value}`` (values stripped, units kept)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def proc_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``...) in KiB."""
    return int(proc_status(pid)[field].split()[0])


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class RssSampler:
    """Samples a process's VmRSS in a background thread; ``peak_kib`` is the largest seen.

    Use as a context manager around the load to measure.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = proc_kib(self.pid, "VmRSS")
            except (OSError, KeyError, ValueError):
                return  # the process is gone
            self.samples.append(rss)
            self.peak_kib = max(self.peak_kib, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
