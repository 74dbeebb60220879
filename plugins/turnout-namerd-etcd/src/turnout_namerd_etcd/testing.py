"""A real etcd for tests: :class:`EtcdServer` starts ``etcd`` (Debian's ``etcd-server``) as a
one-member cluster on free 127.0.0.1 ports with its data in a directory of the test, and stops
it by PID. It can be stopped and started again on the same ports and data (an outage)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from turnout.testing import die_with_parent, free_port, wait_until

__all__ = ["EtcdServer", "etcd_binary"]


def etcd_binary() -> str | None:
    """The ``etcd`` executable, or None when it is not installed."""
    return shutil.which("etcd")


class EtcdServer:
    """One etcd member on 127.0.0.1; ``url`` is its client URL. With ``tls=(cert, key, ca)``
    it serves HTTPS and, with ``ca``, asks clients for a certificate that CA signed."""

    def __init__(self, workdir: Path, *, tls: tuple[str, str, str | None] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.peer_port = free_port(), free_port()
        self.tls = tls
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "etcd.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def argv(self) -> list[str]:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd is not installed (Debian: apt-get install etcd-server)")
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            binary,
            "--name=turnout-test",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=turnout-test={peer}",
            "--log-level=warn",
        ]
        if self.tls is not None:
            cert, key, ca = self.tls
            argv += [f"--cert-file={cert}", f"--key-file={key}"]
            if ca is not None:
                argv += [f"--trusted-ca-file={ca}", "--client-cert-auth"]
        return argv

    def start(self, timeout: float = 60.0) -> EtcdServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        if not wait_until(lambda: self.healthy() or not self.running(), timeout=timeout):
            self.stop()
            raise RuntimeError(f"etcd not healthy within {timeout}s:\n{self.log()}")
        if not self.running():
            raise RuntimeError(f"etcd exited:\n{self.log()}")
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        """What etcd's ``/health`` says (plain HTTP only; with TLS: the client port accepts)."""
        if self.tls is not None:
            import socket

            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=1):
                    return True
            except OSError:
                return False
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                answer: Any = json.loads(r.read())
        except (OSError, ValueError):
            return False
        return isinstance(answer, dict) and answer.get("health") == "true"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the data directory stays."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def call(self, method: str, body: dict[str, Any]) -> Any:
        """One call of etcd's JSON gateway (``/v3/kv/<method>``), as another client would."""
        request = urllib.request.Request(
            f"{self.url}/v3/kv/{method}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())
