"""``turnout dtab list|get|put|delete`` (Linkerd's namerctl) against a real ``turnout
namerd``: output, the diff, If-Match races (412 → exit 1 and a clear message), refusing a
dtab that does not parse before contacting namerd, --create, delete, an unreachable namerd,
NAMERCTL_BASE_URL; and that ``turnout dtab delegate`` (local configs) still works."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.cli import main
from turnout.testing import DiscoDir, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

V1, V2 = "AAAAAAAAAAE=", "AAAAAAAAAAI="


@pytest.fixture
def namerd(namerd_process, disco_dir: DiscoDir) -> Any:  # type: ignore[no-untyped-def]
    disco_dir.write("web", "127.0.0.1 8081")
    admin, api = free_port(), free_port()
    config = yaml.safe_dump(
        {
            "admin": {"port": admin},
            "storage": {
                "kind": "io.l5d.inMemory",
                "namespaces": {"default": "/svc => /#/io.l5d.fs;"},
            },
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root)}],
            "interfaces": [{"kind": "io.l5d.httpController", "port": api}],
        }
    )
    proc = namerd_process(config, admin, api)
    proc.url = f"http://127.0.0.1:{api}"
    return proc


def run(capsys: Any, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv))
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


def test_list_get_and_json(namerd: Any, capsys: Any) -> None:
    code, out, _ = run(capsys, "dtab", "list", "--namerd", namerd.url)
    assert (code, out) == (0, "default\n")
    code, out, _ = run(capsys, "dtab", "list", "--namerd", namerd.url, "--json")
    assert json.loads(out) == ["default"]
    code, out, _ = run(capsys, "dtab", "get", "--namerd", namerd.url)
    assert (code, out) == (0, "/svc => /#/io.l5d.fs;\n")
    code, out, _ = run(capsys, "dtab", "get", "default", "--namerd", namerd.url, "--json")
    assert json.loads(out) == {"namespace": "default", "dtab": "/svc=>/#/io.l5d.fs", "version": V1}
    code, _, err = run(capsys, "dtab", "get", "--namespace", "nope", "--namerd", namerd.url)
    assert code == 1 and "namespace 'nope' does not exist" in err


def test_put_shows_diff_and_writes_with_if_match(namerd: Any, capsys: Any, tmp_path: Path) -> None:
    new = tmp_path / "new.dtab"
    new.write_text("/svc => /#/io.l5d.fs;\n/svc/api => /svc/web;\n")
    code, out, err = run(capsys, "dtab", "put", str(new), "--namerd", namerd.url)
    assert code == 0, err
    assert f"--- namerd:default (version {V1})" in out
    assert "+/svc/api => /svc/web;" in out and " /svc => /#/io.l5d.fs;" in out
    assert "updated" in out
    assert json.loads(namerd.request("GET", "/api/1/dtabs/default").body) == [
        {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
        {"prefix": "/svc/api", "dst": "/svc/web"},
    ]
    # the same again: no change, nothing written (the version stays)
    code, out, _ = run(capsys, "dtab", "put", "default", str(new), "--namerd", namerd.url)
    assert code == 0 and "no change" in out
    assert namerd.request("HEAD", "/api/1/dtabs/default").header("etag") == V2
    # --dry-run prints the diff only
    code, out, _ = run(
        capsys, "dtab", "put", "-", "--dry-run", "--namerd", namerd.url, stdin="/a=>/b"
    )
    assert code == 0 and "-/svc/api => /svc/web;" in out and "+/a => /b;" in out
    assert namerd.request("HEAD", "/api/1/dtabs/default").header("etag") == V2


def test_put_refuses_a_bad_dtab_before_contacting_namerd(capsys: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: a contact would say so
    code, _, err = run(
        capsys, "dtab", "put", "-", "--namerd", dead, stdin="/svc => /#/io.l5d.fs;\n/svc/x => ;\n"
    )
    assert code == 1
    assert "<stdin>: not a valid dtab: line 2, column 11" in err
    assert "unreachable" not in err and "nothing was written" in err


def test_put_conflict_is_a_clear_error(namerd: Any, capsys: Any, monkeypatch: Any) -> None:
    """Someone writes between our read and our write: 412, exit 1, nothing written."""
    from turnout.namerd import client as client_module

    real_get = client_module.NamerdClient.get

    def get_then_someone_writes(self: Any, ns: str) -> Any:
        found = real_get(self, ns)
        assert namerd.put(ns, "/svc => /#/io.l5d.fs; /x => /y").status == 204
        return found

    monkeypatch.setattr(client_module.NamerdClient, "get", get_then_someone_writes)
    code, _, err = run(capsys, "dtab", "put", "-", "--namerd", namerd.url, stdin="/a => /b")
    assert code == 1
    assert "changed meanwhile" in err and "re-run" in err
    assert json.loads(namerd.request("GET", "/api/1/dtabs/default").body)[-1] == {
        "prefix": "/x",
        "dst": "/y",
    }


def test_create_and_delete(namerd: Any, capsys: Any) -> None:
    code, _, err = run(capsys, "dtab", "put", "new", "-", "--namerd", namerd.url, stdin="/a=>/b")
    assert code == 1 and "add --create" in err
    code, out, err = run(
        capsys, "dtab", "put", "new", "-", "--create", "--namerd", namerd.url, stdin="/a=>/b"
    )
    assert code == 0, err
    assert "--- namerd:new (new)" in out and "created" in out
    code, _, err = run(
        capsys, "dtab", "put", "new", "-", "--create", "--namerd", namerd.url, stdin="/a=>/c"
    )
    assert code == 1 and "already exists" in err
    assert run(capsys, "dtab", "list", "--namerd", namerd.url)[1] == "default\nnew\n"
    code, out, _ = run(capsys, "dtab", "delete", "new", "--namerd", namerd.url)
    assert code == 0 and "deleted" in out
    code, _, err = run(capsys, "dtab", "delete", "new", "--namerd", namerd.url)
    assert code == 1 and "does not exist" in err
    code, _, err = run(capsys, "dtab", "delete", "../x", "--namerd", namerd.url)
    assert code == 1 and "invalid namespace" in err


def test_unreachable_namerd_and_bad_url(capsys: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "dtab", "list", "--namerd", dead)
    assert code == 1
    assert f"namerd at {dead} is unreachable" in err and "--namerd" in err
    code, _, err = run(capsys, "dtab", "list", "--namerd", "127.0.0.1:4180")
    assert code == 1 and "invalid namerd URL" in err


def test_base_url_from_the_environment_in_a_subprocess(namerd: Any) -> None:
    env = {**os.environ, "NAMERCTL_BASE_URL": namerd.url}
    out = subprocess.run(
        [sys.executable, "-m", "turnout", "dtab", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout) == (0, "default\n"), out.stderr


def test_local_dtab_commands_still_work(capsys: Any) -> None:
    code, out, _ = run(
        capsys, "dtab", "delegate", "/svc/web", "--dtab", "/svc=>/$/inet/127.0.0.1/1"
    )
    assert code == 0 and "/$/inet/127.0.0.1/1" in out
