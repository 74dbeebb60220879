"""The example plugin installs like any third-party plugin: into a fresh venv, from its
directory (not editable), and ``turnout plugins`` then lists it through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CORE = ROOT / "core"
EXAMPLE = ROOT / "examples" / "turnout-example-plugin"


def run(cmd: list[str | Path], env: dict[str, str], timeout: float = 240):
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_installed_example_plugin_is_listed(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "PYTHON", "PIP_"))}
    (tmp_path / "tmp").mkdir()
    env.update(
        PIP_CACHE_DIR=str(tmp_path / "pip-cache"),  # cache nothing outside tmp_path
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        TMPDIR=str(tmp_path / "tmp"),
    )
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], env)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", CORE, EXAMPLE], env)
    turnout = venv / "bin" / "turnout"

    listed = json.loads(run([turnout, "plugins", "--json"], env).stdout)["plugins"]
    [example] = [p for p in listed if p["distribution"] == "turnout-example-plugin"]
    assert example["name"] == "example-plugin"
    assert example["module"] == "turnout_example_plugin.plugin"
    assert example["version"] == "0.1.0"
    assert example["builtin"] is False
    assert example["hooks"] == ["turnout_register_namers"]
    assert example["kinds"] == [{"family": "namer", "kind": "com.example.static"}]
    # it was installed as a wheel, not linked to the checkout
    where = run([python, "-c", "import turnout_example_plugin as m; print(m.__file__)"], env)
    assert str(venv) in where.stdout

    text = run([turnout, "plugins"], env).stdout
    assert "example-plugin  [turnout-example-plugin 0.1.0, turnout_example_plugin.plugin]" in text
    assert "    namer: com.example.static" in text

    hidden = {**env, "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    listed = json.loads(run([turnout, "plugins", "--json"], hidden).stdout)["plugins"]
    assert [p["name"] for p in listed if not p["builtin"]] == []
    assert "com.example.static" not in run([turnout, "plugins"], hidden).stdout
