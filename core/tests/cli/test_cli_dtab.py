"""``turnout dtab delegate`` and ``turnout dtab bind``: routing explained from the shell."""

from __future__ import annotations

import json

import pytest

INET = "/$/inet/127.0.0.1/8080"


@pytest.fixture
def config(tmp_path):
    disco = tmp_path / "disco"
    disco.mkdir()
    (disco / "web").write_text("10.0.0.1 8080\n10.0.0.2 8081 * 0.5\n")
    (tmp_path / "l5d.yaml").write_text(
        "namers:\n"
        "- kind: io.l5d.fs\n"
        f"  rootDir: {disco}\n"
        "routers:\n"
        "- protocol: http\n"
        "  label: edge\n"
        "  dtab: /svc=>/#/io.l5d.fs\n"
        "  servers: [{port: 4140}]\n"
    )
    return "l5d.yaml"


def ok_json(result):
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return json.loads(result.stdout)


# -- without a configuration: the /$ namers ------------------------------------------------------


def test_bind_inet_json(turnout):
    result = turnout("dtab", "bind", "--json", INET)
    assert ok_json(result) == {
        "type": "leaf",
        "id": "/$/inet/127.0.0.1/8080",
        "residual": "/",
        "addr": {"type": "bound", "addrs": ["127.0.0.1:8080"], "meta": {}},
    }


def test_bind_inet_text(turnout):
    result = turnout("dtab", "bind", INET)
    assert result.returncode == 0
    assert result.stdout == "dtab: (empty)\n/$/inet/127.0.0.1/8080 -> 127.0.0.1:8080\n"


def test_delegate_inet_text(turnout):
    result = turnout("dtab", "delegate", INET)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "dtab: (empty)",
        "/$/inet/127.0.0.1/8080",
        "  => bound /$/inet/127.0.0.1/8080: 127.0.0.1:8080",
    ]


def test_delegate_inet_json(turnout):
    tree = ok_json(turnout("dtab", "delegate", "--json", INET))
    assert tree["type"] == "leaf"
    assert tree["path"] == INET
    assert tree["bound"]["id"] == INET
    assert tree["bound"]["path"] == "/"
    assert tree["bound"]["addr"]["type"] == "bound"
    assert [(a["ip"], a["port"]) for a in tree["bound"]["addr"]["addrs"]] == [("127.0.0.1", 8080)]


def test_bind_with_dtab_rewrites_first(turnout):
    tree = ok_json(
        turnout("dtab", "bind", "--json", "--dtab", "/svc=>/$/inet/127.0.0.1", "/svc/9000/x")
    )
    assert (tree["id"], tree["residual"]) == ("/$/inet/127.0.0.1/9000", "/x")
    assert tree["addr"]["addrs"] == ["127.0.0.1:9000"]


def test_bind_fail_is_a_tree_not_an_error(turnout):
    result = turnout("dtab", "bind", "--json", "/$/fail")
    assert ok_json(result) == {"type": "fail"}
    result = turnout("dtab", "bind", "/$/fail")
    assert (result.returncode, result.stdout) == (0, "dtab: (empty)\n! (fail)\n")


def test_bind_unrouted_name_is_neg(turnout):
    assert ok_json(turnout("dtab", "bind", "--json", "/svc/web")) == {"type": "neg"}


def test_bind_through_unknown_global_namer_fails(turnout):
    result = turnout("dtab", "bind", "/$/com.example.nope/x")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "turnout: binding /$/com.example.nope/x failed: Unknown namer: com.example.nope for "
        "path: /$/com.example.nope/x\n"
    )


def test_invalid_dtab_option(turnout):
    result = turnout("dtab", "bind", "--dtab", "/svc=>", "/svc/web")
    assert result.returncode != 0
    assert result.stderr == (
        "turnout: invalid --dtab: simple expected but end of input found at '/svc=>[]'\n"
    )
    result = turnout("dtab", "delegate", "--dtab", "svc=>/a", "/svc/web")
    assert result.returncode != 0
    assert "invalid --dtab: '/' expected but 's' found at '[s]vc=>/a'" in result.stderr


def test_invalid_path_argument(turnout):
    result = turnout("dtab", "bind", "svc/web")
    assert result.returncode != 0
    assert result.stderr == "turnout: invalid path: '/' expected but 's' found at '[s]vc/web'\n"


def test_router_needs_config(turnout):
    result = turnout("dtab", "bind", "--router", "edge", "/svc/web")
    assert (result.returncode, result.stderr) == (1, "turnout: --router needs --config\n")


# -- with a configuration ------------------------------------------------------------------------


def test_bind_with_config_and_dtab_goes_through_the_fs_namer(turnout, config):
    tree = ok_json(
        turnout(
            "dtab", "bind", "--json", "--config", config, "--dtab", "/svc=>/#/io.l5d.fs", "/svc/web"
        )
    )
    assert (tree["type"], tree["id"], tree["residual"]) == ("leaf", "/#/io.l5d.fs/web", "/")


def test_bind_with_config_shows_the_fs_addresses(turnout, config):
    tree = ok_json(
        turnout(
            "dtab", "bind", "--json", "--config", config, "--dtab", "/svc=>/#/io.l5d.fs", "/svc/web"
        )
    )
    assert tree["addr"]["addrs"] == ["10.0.0.1:8080", "10.0.0.2:8081"]


def test_without_router_the_router_dtab_is_not_used(turnout, config):
    assert ok_json(turnout("dtab", "bind", "--json", "--config", config, "/svc/web")) == {
        "type": "neg"
    }


def test_router_option_uses_the_router_dtab(turnout, config):
    result = turnout("dtab", "bind", "--config", config, "--router", "edge", "/svc/web/extra")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dtab: /svc=>/#/io.l5d.fs"
    assert lines[1].startswith("/#/io.l5d.fs/web residual /extra -> ")


def test_dtab_option_is_appended_after_the_router_dtab_and_wins(turnout, config):
    result = turnout(
        "dtab", "bind", "--config", config, "--router", "edge",
        "--dtab", "/svc/web=>/$/inet/127.0.0.1/9000", "/svc/web",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "dtab: /svc=>/#/io.l5d.fs;/svc/web=>/$/inet/127.0.0.1/9000",
        "/$/inet/127.0.0.1/9000 -> 127.0.0.1:9000",
    ]


def test_delegate_with_router_explains_the_fs_binding(turnout, config):
    result = turnout("dtab", "delegate", "--config", config, "--router", "edge", "/svc/web")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "dtab: /svc=>/#/io.l5d.fs",
        "/svc/web",
        "  /#/io.l5d.fs/web  (via /svc=>/#/io.l5d.fs)",
        "    => bound /#/io.l5d.fs/web: 10.0.0.1:8080, 10.0.0.2:8081 (weight 0.5)",
    ]


def test_unknown_router_label(turnout, config):
    result = turnout("dtab", "bind", "--config", config, "--router", "nope", "/svc/web")
    assert result.returncode == 1
    assert result.stderr == "turnout: no router labelled 'nope' (routers: edge)\n"


def test_invalid_config_is_reported_like_check(turnout, tmp_path):
    (tmp_path / "bad.yaml").write_text("routers: []\n")
    result = turnout("dtab", "bind", "--config", "bad.yaml", "/svc/web")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "error: bad.yaml:1:10: routers: at least one router is required"
    )
