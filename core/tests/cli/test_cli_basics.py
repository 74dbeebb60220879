"""``turnout --version``, ``--help`` of every command, and ``turnout plugins``."""

from __future__ import annotations

import argparse
import json

import pytest
from turnout import __version__
from turnout.cli import _parser


def command_paths(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    """Every command and subcommand the parser knows, so new ones are covered too."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*prefix, name))
    return paths


COMMANDS = command_paths(_parser())


def test_the_known_commands_are_all_there():
    assert {
        ("run",),
        ("check",),
        ("plugins",),
        ("dtab",),
        ("dtab", "delegate"),
        ("dtab", "bind"),
    } <= set(COMMANDS)


def test_version_says_how_plugins_were_built(turnout):
    result = turnout("--version")
    assert result.returncode == 0
    assert result.stdout == (
        f"turnout {__version__}\nturnout_fake_http: data path: fake (for the CLI tests)\n"
    )


def test_version_without_plugins(turnout):
    result = turnout("--version", TURNOUT_PLUGIN_MODULES="")
    assert result.returncode == 0
    assert result.stdout == f"turnout {__version__}\n"


def test_version_with_a_broken_plugin_still_answers(turnout):
    result = turnout("--version", TURNOUT_PLUGIN_MODULES="turnout_no_such_plugin_xyz")
    assert result.returncode == 0
    assert result.stdout.startswith(f"turnout {__version__}\n(plugins not loaded: ")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "turnout")
def test_help(turnout, command):
    result = turnout(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(('turnout', *command))} ")
    assert result.stderr == ""


def test_no_command_prints_help_and_exits_2(turnout):
    result = turnout()
    assert result.returncode == 2
    assert "commands:" in result.stdout
    assert all(name in result.stdout for name in ("run", "check", "plugins", "dtab"))


def test_unknown_command_is_a_usage_error(turnout):
    result = turnout("chekc")
    assert result.returncode == 2
    assert "invalid choice: 'chekc'" in result.stderr


def test_plugins_lists_builtin_kinds(turnout):
    result = turnout("plugins")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"turnout.builtin.namers  [turnout {__version__}, built-in]" in out
    assert "    namer: io.l5d.fs, io.l5d.rewrite" in out
    assert "    interpreter: default, io.l5d.fs" in out
    assert "    load balancer: p2c" in out
    assert "/$/io.buoyant.rinet" in out
    assert "turnout_fake_http  [(no distribution), turnout_fake_http]" in out
    assert "    router: http" in out


def test_plugins_json(turnout):
    result = turnout("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    namers = plugins["turnout.builtin.namers"]
    assert namers["builtin"] is True
    assert (namers["distribution"], namers["version"]) == ("turnout", __version__)
    assert namers["hooks"] == ["turnout_register_namers"]
    kinds = {(k["family"], k["kind"]) for p in plugins.values() for k in p["kinds"]}
    assert {
        ("namer", "io.l5d.fs"),
        ("interpreter", "default"),
        ("load balancer", "p2c"),
        ("failure accrual", "none"),
        ("global namer", "/$/io.buoyant.http.status"),
        ("router", "http"),
    } <= kinds
    assert plugins["turnout_fake_http"]["distribution"] is None
    assert plugins["turnout_fake_http"]["build"] == "data path: fake (for the CLI tests)"
    assert namers["build"] is None


def test_plugins_text_shows_the_build(turnout):
    result = turnout("plugins")
    assert "    build: data path: fake (for the CLI tests)\n" in result.stdout


def test_plugins_without_autoload_lists_builtins_only(turnout):
    result = turnout("plugins", "--json", TURNOUT_PLUGIN_MODULES="")
    assert result.returncode == 0, result.stderr
    assert all(p["builtin"] for p in json.loads(result.stdout)["plugins"])


def test_broken_plugin_module_is_a_one_line_error(turnout):
    result = turnout("plugins", TURNOUT_PLUGIN_MODULES="turnout_no_such_plugin_xyz")
    assert result.returncode == 1
    assert result.stderr == (
        "turnout: TURNOUT_PLUGIN_MODULES names 'turnout_no_such_plugin_xyz', which failed to "
        "import: ModuleNotFoundError: No module named 'turnout_no_such_plugin_xyz'\n"
    )
    assert result.stdout == ""
