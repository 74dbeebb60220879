"""Run the demo mesh: two demo backends and turnout with examples/demo.yaml.

Started by ``./dev demo``. Prints where to send requests; Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [("web-1", 8081), ("web-2", 8082), ("web-v2", 8083)]


def wait_http(url: str, headers: dict[str, str], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def main() -> int:
    os.chdir(ROOT)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, port in BACKENDS:
            procs.append(
                subprocess.Popen([sys.executable, "examples/demo/backend.py", name, str(port)])
            )
        turnout = subprocess.Popen(
            [sys.executable, "-m", "turnout", "run", "examples/demo.yaml", *sys.argv[1:]]
        )
        procs.append(turnout)
        if not wait_http("http://127.0.0.1:4140/", {"Host": "web"}):
            print("demo: turnout did not answer on :4140; see the log above", file=sys.stderr)
            return 1
        print(
            "\nturnout is routing on http://127.0.0.1:4140\n"
            "dashboard: http://127.0.0.1:9990/   dtab playground: http://127.0.0.1:9990/delegator"
            "   recent requests: http://127.0.0.1:9990/requests\n\n"
            "  curl -H 'Host: web' http://127.0.0.1:4140/\n"
            "  curl -H 'Host: web' -H 'l5d-dtab: /svc/web => /#/io.l5d.fs/web-v2' "
            "http://127.0.0.1:4140/\n"
            "  .venv/bin/turnout dtab delegate --config examples/demo.yaml --router http "
            "/svc/web\n\n"
            "Edit examples/demo/disco/web to add or remove instances. Ctrl-C to stop.\n",
            flush=True,
        )
        return turnout.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=12)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
