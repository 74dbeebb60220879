"""The BIND 9 test helper itself (``turnout_namer_dnssrv.testing``): start, dynamic updates,
kill and restart with the journal, a busy port, clean-up by PID."""

from __future__ import annotations

import os
import socket

import dns.rcode
import pytest
from turnout_namer_dnssrv.testing import BindServer

pytestmark = [pytest.mark.integration]


def records(server: BindServer, name: str, rdtype: str) -> list[str]:
    response = server.query(name, rdtype)
    return sorted(str(r) for rrset in response.answer for r in rrset)


def test_updates_add_replace_and_delete_records(bind_server):
    server = bind_server(records=["web1 IN A 127.0.0.1"])
    assert records(server, "web1", "A") == ["127.0.0.1"]
    server.add_a("web1", "127.0.0.2", "::1")
    assert records(server, "web1", "A") == ["127.0.0.1", "127.0.0.2"]
    assert records(server, "web1", "AAAA") == ["::1"]
    server.replace_a("web1", "127.0.0.3")
    assert records(server, "web1", "A") == ["127.0.0.3"] and records(server, "web1", "AAAA") == []
    server.add_srv("_http._tcp.web", "web1", 8080, priority=1, weight=5)
    server.add_srv("_http._tcp.web", "other.example.", 9090)
    assert records(server, "_http._tcp.web", "SRV") == [
        "0 1 9090 other.example.",
        "1 5 8080 web1.svc.test.",
    ]
    server.replace_srv("_http._tcp.web", [(0, 2, 7070, "web1")])
    assert records(server, "_http._tcp.web", "SRV") == ["0 2 7070 web1.svc.test."]
    server.replace_srv("_http._tcp.web", [])
    assert records(server, "_http._tcp.web", "SRV") == []
    server.delete_name("web1")
    assert server.query("web1", "A").rcode() == dns.rcode.NXDOMAIN


def test_kill_and_restart_keep_the_port_and_the_updates(bind_server):
    server = bind_server()
    port, pid = server.port, server.pid
    server.replace_a("web1", "127.0.0.7")
    server.kill()
    assert not server.running() and not server.answers()
    server.restart()
    assert server.port == port and server.pid != pid
    assert records(server, "web1", "A") == ["127.0.0.7"]  # replayed from the journal
    server.stop()
    assert not server.running()


def test_a_busy_port_is_replaced_when_it_was_not_given(bind_server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        server = bind_server(start=False)
        server.port = taken  # as if free_port() had raced with another process
        server.start()
        assert server.port != taken and server.answers()
        given = bind_server(taken, start=False)
        with pytest.raises(RuntimeError, match="named"):
            given.start()


def test_cleanup_kills_by_pid_and_removes_the_directory():
    server = BindServer().start()
    pid, directory = server.pid, server.dir
    server.cleanup()
    assert not directory.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
