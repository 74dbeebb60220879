"""Linkerd's ``linkerd/examples/thrift.yaml`` loads unchanged (but for ports and paths), passes
``turnout check`` with no warning, and routes a real Thrift call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from turnout.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "linkerd" / "thrift.yaml"
LINKERD_TEXT = """\
namers:
- kind: io.l5d.fs
  rootDir: linkerd/examples/io.l5d.fs
routers:
- protocol: thrift
  thriftProtocol: binary
  thriftMethodInDst: true
  dtab: |
    /svc => /#/io.l5d.fs/thrift;
  servers:
  - port: 4114
    thriftFramed: true
  client:
    thriftFramed: true
    attemptTTwitterUpgrade: true
"""


def test_linkerd_thrift_example(tmp_path, turnout_process, thrift_backend, thrift_client) -> None:
    text = EXAMPLE.read_text() if EXAMPLE.exists() else LINKERD_TEXT
    config = yaml.safe_load(text)
    backend = thrift_backend("thrift")
    # /svc/<method> => /#/io.l5d.fs/thrift/<method>: the io.l5d.fs namer binds the file
    # "thrift" (Linkerd's example has "127.1 9991" in it) and keeps /<method> as the residual
    fs = tmp_path / "io.l5d.fs"
    fs.mkdir()
    (fs / "thrift").write_text(f"127.0.0.1 {backend.port}\n")
    config["namers"][0]["rootDir"] = str(fs)
    config["routers"][0]["servers"][0]["port"] = free_port()
    config["admin"] = {"port": free_port()}
    path = tmp_path / "thrift.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "OK" in output, output
    for word in ("not implemented", "ignored", "warning"):
        assert word not in output.lower(), output
    proxy = turnout_process(path.read_text())
    client = thrift_client(proxy.port)
    assert client.echo("hello") == "thrift:hello"
    assert client.other("there") == "thrift-other:there"
    assert backend.calls == [("echo", "hello"), ("other", "there")]
    # the example asks for the TTwitter upgrade; a plain thriftpy2 server refuses it
    assert "Traceback" not in proxy.log()
    assert proxy.stop() == 0
