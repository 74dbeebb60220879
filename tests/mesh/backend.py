"""A mesh test's backend: ``backend.py NAME PORT RECORD``, started inside a host's network
namespace by tests/test_mesh_netns.py. It answers every GET with ``NAME`` and appends each
request's path and headers to RECORD as one JSON line, so the test can count what arrived."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, PORT, RECORD = sys.argv[1], int(sys.argv[2]), sys.argv[3]
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as turnout's pools expect
    disable_nagle_algorithm = True  # (the head and the body are two writes)

    def do_GET(self) -> None:
        line = json.dumps({"path": self.path, "headers": list(self.headers.items())})
        with LOCK, open(RECORD, "a") as f:
            f.write(line + "\n")
        body = f"{NAME}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
