"""Where a turnout process's memory goes at start-up: resident set size (VmRSS) after each
group of imports, in the order a linker loads them, then a started linker's own RSS.

    .venv/bin/python bench/footprint.py

Each import group is measured in a fresh interpreter (``python -c``) so that one group's
shared libraries are not counted in another's. The numbers are RSS, which counts the pages of
shared libraries (libssl, libcrypto, uvloop's libuv) a process has touched: with several worker
processes those pages are shared, so the sum over workers overstates the host's memory use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (label, imports before, imports measured): each measured in its own interpreter
GROUPS: list[tuple[str, str, str]] = [
    ("asyncio (imports ssl: libssl + libcrypto)", "", "asyncio"),
    ("uvloop", "asyncio", "uvloop"),
    ("PyYAML", "asyncio", "yaml"),
    ("pluggy + anyio", "asyncio", "pluggy, anyio"),
    (
        "turnout core (config, CLI, linker, admin)",
        "asyncio, yaml, pluggy, anyio",
        "turnout.cli, turnout.linker, turnout.admin",
    ),
    (
        "the HTTP/1.1 data path (turnout-protocol-http, httptools)",
        "turnout.cli, turnout.linker, turnout.admin",
        "turnout_protocol_http.runtime",
    ),
    (
        "every installed plugin's registrations (load_plugins)",
        "turnout.cli, turnout.linker, turnout.admin, turnout_protocol_http.runtime",
        "turnout.plugin_manager; turnout.plugin_manager.load_plugins({})",
    ),
]

_PROBE = """
import sys
def rss():
    with open('/proc/self/status') as f:
        return int(f.read().split('VmRSS:')[1].split()[0]) / 1024
{before}
b = rss()
{measured}
sys.stdout.write(f"{{b:.1f}} {{rss() - b:.1f}}")
"""


def _statement(imports: str) -> str:
    if not imports:
        return ""
    head, _, call = imports.partition(";")
    return f"import {head}" + (f"\n{call.strip()}" if call else "")


def measure(before: str, measured: str) -> tuple[float, float]:
    code = _PROBE.format(before=_statement(before), measured=_statement(measured))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    base, delta = out.split()
    return float(base), float(delta)


def linker_rss(plugins: str | None) -> float:
    """VmRSS of ``turnout run`` (one HTTP router, io.l5d.fs, the admin server) once started."""
    with tempfile.TemporaryDirectory() as tmp:
        disco = Path(tmp, "disco")
        disco.mkdir()
        (disco / "web").write_text("127.0.0.1 9\n")
        config = Path(tmp, "linker.yaml")
        config.write_text(
            f"admin: {{port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n"
            "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n"
            "  servers: [{port: 0}]\n"
        )
        env = dict(os.environ)
        if plugins is not None:
            env["TURNOUT_PLUGINS"] = plugins
        proc = subprocess.Popen(
            [sys.executable, "-m", "turnout", "run", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            assert proc.stderr is not None
            for line in proc.stderr:  # logged once the routers and the admin listen
                if "admin server on" in line or time.monotonic() > deadline:
                    break
            time.sleep(1.0)
            with open(f"/proc/{proc.pid}/maps") as f:
                if "aiohttp" in f.read():
                    print("NOTE: the linker has aiohttp loaded")
            with open(f"/proc/{proc.pid}/status") as f:
                return int(f.read().split("VmRSS:")[1].split()[0]) / 1024
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> int:
    base, _ = measure("", "")
    print(f"python {sys.version.split()[0]}, an empty interpreter: {base:.1f} MB RSS\n")
    print(f"{'imports':78s} {'+MB':>6s}")
    for label, before, measured in GROUPS:
        _, delta = measure(before, measured)
        print(f"{label:78s} {delta:6.1f}")
    # not in a linker's path since the admin server stopped using it (a namer, telemeter or
    # interpreter that makes HTTP requests imports it when a configuration builds one)
    _, delta = measure("asyncio, yaml, pluggy, anyio", "aiohttp, aiohttp.web")
    print(
        f"{'(not imported) aiohttp and its dependencies, if a plugin in use needs it':78s} "
        f"{delta:6.1f}"
    )
    print()
    everything = linker_rss(None)
    http_only = linker_rss("turnout-protocol-http")
    print(f"turnout run, started, every installed plugin:      {everything:6.1f} MB")
    print(f"turnout run, started, TURNOUT_PLUGINS=turnout-protocol-http: {http_only:6.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
