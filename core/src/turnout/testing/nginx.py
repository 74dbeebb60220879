"""A real nginx as a test backend: ``return 200 "<name> $request_uri\\n"`` on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .net import LOCALHOST, free_port, port_open
from .process import die_with_parent

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_CONF = """\
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    {access_log}
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    default_type text/plain;
{http_extra}
    server {{
        listen {host}:{port}{listen_extra};
        server_name _;
        location / {{
            return 200 "{name} $request_uri\\n";
        }}
{locations}
    }}
}}
"""


class NginxBackend:
    """nginx in the foreground (``-g 'daemon off;'``, one process) on ``127.0.0.1:port``.

    Every request gets ``200`` with the body ``"<name> <request uri>\\n"`` unless one of
    ``locations`` (raw nginx ``location`` blocks, core directives only) matches. With
    ``access_log=True`` requests are logged to ``<dir>/access.log`` (see :meth:`requests`).
    ``http2=True`` serves HTTP/2 in clear text (h2c with prior knowledge, ``listen ... http2``)
    instead of HTTP/1.1.
    """

    def __init__(
        self,
        name: str,
        port: int | None = None,
        *,
        locations: Sequence[str] = (),
        http_extra: str = "",
        access_log: bool = False,
        http2: bool = False,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.host = LOCALHOST
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"nginx-{name}-")
            workdir = self._tmp.name
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.dir / "nginx.conf"
        self.access_log_path = self.dir / "access.log"
        log = f"access_log {self.access_log_path};" if access_log else "access_log off;"
        self.conf_path.write_text(
            _CONF.format(
                dir=self.dir,
                host=self.host,
                port=self.port,
                listen_extra=" http2" if http2 else "",
                name=name.replace('"', '\\"'),
                access_log=log,
                http_extra=http_extra,
                locations="\n".join(locations),
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``"127.0.0.1 <port>"``: a line for an ``io.l5d.fs`` namer file."""
        return f"{self.host} {self.port}"

    def url(self, path: str = "/") -> str:
        """A URL on this nginx."""
        return f"http://{self.host}:{self.port}{path}"

    def log(self) -> str:
        """nginx's error log and output so far."""
        out = []
        for name in ("error.log", "nginx.out"):
            path = self.dir / name
            if path.exists():
                out.append(path.read_text(errors="replace"))
        return "\n".join(out)

    def requests(self) -> list[str]:
        """Lines of the access log (``access_log=True``)."""
        if not self.access_log_path.exists():
            return []
        return self.access_log_path.read_text().splitlines()

    def start(self, timeout: float = 10.0) -> NginxBackend:
        """Start nginx and wait until it accepts connections (:class:`RuntimeError` if not)."""
        assert self.proc is None, "already started"
        cmd = [
            NGINX,
            "-p",
            str(self.dir),
            "-c",
            str(self.conf_path),
            "-e",
            str(self.dir / "error.log"),
            "-g",
            "daemon off;",
        ]
        with open(self.dir / "nginx.out", "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"nginx exited with status {code}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx not listening in {timeout}s:\n{self.log()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop nginx by PID (SIGTERM, then SIGKILL after 5 s); idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def cleanup(self) -> None:
        """Stop nginx and remove its temporary directory (if one was made)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NginxBackend:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
