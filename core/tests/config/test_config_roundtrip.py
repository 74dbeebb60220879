"""``config.to_dict()``: what ``/config.json`` serves (Linkerd's re-serialised config)."""

from __future__ import annotations

import json
import textwrap

from turnout.config import load_text

TEXT = textwrap.dedent(
    """
    namers:
    - kind: test.secret
      token: s3cr3t-token
    - kind: io.l5d.fs
      rootDir: /srv/disco
      prefix: /disco
    routers:
    - protocol: http
      dtab: |
        /svc  => /#/disco ;
        /host => /svc     # a comment
      identifier: {kind: io.l5d.header.token, header: x-service}
      servers:
      - port: 4140
    """
).lstrip()


def loaded(registry, text=TEXT):
    return load_text(text, "l5d.yaml", registry=registry, environ={}).config


def test_unset_options_are_omitted(registry):
    out = loaded(registry).to_dict()
    router = out["routers"][0]
    for unset in ("label", "client", "service"):
        assert unset not in router
    assert "tls" not in router["servers"][0]
    assert "usage" not in out
    assert "url" not in out["namers"][0]  # an optional option of a plugin kind
    assert "prefix" not in out["namers"][0]


def test_kinds_and_protocols_are_kept(registry):
    out = loaded(registry).to_dict()
    assert [n["kind"] for n in out["namers"]] == ["test.secret", "io.l5d.fs"]
    assert out["routers"][0]["protocol"] == "http"
    assert out["routers"][0]["identifier"] == {"kind": "io.l5d.header.token", "header": "x-service"}
    assert out["routers"][0]["interpreter"]["kind"] == "default"  # the default, made explicit


def test_dtabs_and_paths_are_strings(registry):
    out = loaded(registry).to_dict()
    assert out["routers"][0]["dtab"] == "/svc=>/#/disco;/host=>/svc"
    assert out["routers"][0]["dstPrefix"] == "/svc"
    assert out["namers"][1]["prefix"] == "/disco"
    assert out["routers"][0]["servers"][0] == {
        "port": 4140,
        "ip": "127.0.0.1",
        "clearContext": False,
        "announce": [],
    }


def test_secret_options_are_redacted(registry):
    config = loaded(registry)
    assert config.to_dict()["namers"][0]["token"] == "<redacted>"
    assert "s3cr3t" not in json.dumps(config.to_dict())
    assert config.to_dict(redact=False)["namers"][0]["token"] == "s3cr3t-token"


def test_unredacted_dict_reads_back_to_an_equal_config(registry):
    config = loaded(registry)
    text = json.dumps(config.to_dict(redact=False))
    assert loaded(registry, text) == config
