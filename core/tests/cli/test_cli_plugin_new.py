"""``turnout plugin new KIND NAME``: the skeleton it writes, its names, its refusals, and (slow)
that the generated namer plugin installs into a fresh venv, passes its own tests and is listed
by ``turnout plugins``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from turnout import __version__
from turnout.cli import _parser, cmd_plugin_new, cmd_plugins
from turnout.scaffold import KINDS, ScaffoldError, new_plugin, plugin_names

CORE = Path(__file__).resolve().parents[2]
DEMO = "turnout-namer-com-example-demo"
PACKAGE = "turnout_namer_com_example_demo"

NAMER_FILES = {
    "pyproject.toml",
    "README.md",
    f"src/{PACKAGE}/__init__.py",
    f"src/{PACKAGE}/py.typed",
    f"src/{PACKAGE}/plugin.py",
    f"src/{PACKAGE}/namer.py",
    "tests/conftest.py",
    "tests/test_namer_com_example_demo.py",
}


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def isolated_env(**extra: str) -> dict[str, str]:
    """The environment without turnout's plugin switches or Python/pip settings of this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "PYTHON", "PIP_"))}
    env.update(extra)
    return env


# -- the command ---------------------------------------------------------------------------------


def test_plugin_new_and_plugins_are_different_commands():
    parser = _parser()
    assert parser.parse_args(["plugins"]).func is cmd_plugins
    args = parser.parse_args(["plugin", "new", "namer", "com.example.demo", "--dir", "x"])
    assert args.func is cmd_plugin_new
    assert (args.kind_family, args.name, args.dir) == ("namer", "com.example.demo", "x")


def test_plugin_without_a_subcommand_prints_help(turnout):
    result = turnout("plugin")
    assert result.returncode == 2
    assert "new" in result.stdout


def test_help_lists_the_supported_kinds(turnout):
    result = turnout("plugin", "new", "--help")
    assert result.returncode == 0
    for kind, spec in KINDS.items():
        assert f"  {kind}" in result.stdout
        assert spec.summary in result.stdout


def test_the_namer_skeleton_is_written(turnout, tmp_path):
    result = turnout("plugin", "new", "namer", "com.example.demo")
    assert result.returncode == 0, result.stderr
    root = tmp_path / DEMO
    assert files_under(root) == NAMER_FILES
    assert f"created {DEMO}/" in result.stdout
    assert "pip install -e '.[test]'" in result.stdout

    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["name"] == DEMO
    assert project["entry-points"]["turnout"] == {"namer-com-example-demo": f"{PACKAGE}.plugin"}
    major, minor = __version__.split(".")[:2]
    assert project["dependencies"] == [f"turnout>={major}.{minor},<{major}.{int(minor) + 1}"]
    assert "Typing :: Typed" in project["classifiers"]
    assert pyproject["build-system"]["build-backend"] == "hatchling.build"
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [f"src/{PACKAGE}"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == f"src/{PACKAGE}/__init__.py"

    package = root / "src" / PACKAGE
    assert '__version__ = "0.1.0"' in (package / "__init__.py").read_text()
    plugin = (package / "plugin.py").read_text()
    assert "def turnout_register_namers() -> list[type[DemoNamerConfig]]:" in plugin
    namer = (package / "namer.py").read_text()
    assert "class DemoNamerConfig(NamerConfig):" in namer
    assert 'kind = "com.example.demo"' in namer
    assert "class DemoNamer(Namer):" in namer
    assert 'option(\n        doc="' in namer

    readme = (root / "README.md").read_text()
    assert "pip install ." in readme
    assert "- kind: com.example.demo\n" in readme
    assert "| Option | Type | Default | Meaning |" in readme
    assert "| `addresses` |" in readme
    test = (root / "tests" / "test_namer_com_example_demo.py").read_text()
    assert 'KIND = "com.example.demo"' in test
    assert "{{" not in "".join(p.read_text() for p in root.rglob("*") if p.is_file())


def test_dir_is_where_the_plugin_directory_is_created(turnout, tmp_path):
    result = turnout("plugin", "new", "namer", "com.example.demo", "--dir", "a/b")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "a" / "b" / DEMO) == NAMER_FILES


@pytest.mark.parametrize(
    ("family", "kind", "distribution", "package", "entry_point", "classes", "test_file"),
    [
        (
            "namer",
            "com.example.demo",
            "turnout-namer-com-example-demo",
            "turnout_namer_com_example_demo",
            "namer-com-example-demo",
            ("DemoNamerConfig", "DemoNamer"),
            "tests/test_namer_com_example_demo.py",
        ),
        (
            "load-balancer",
            "org.acme.HTTPFirstFit2",
            "turnout-load-balancer-org-acme-http-first-fit2",
            "turnout_load_balancer_org_acme_http_first_fit2",
            "load-balancer-org-acme-http-first-fit2",
            ("HTTPFirstFit2BalancerConfig", "HTTPFirstFit2Balancer"),
            "tests/test_load_balancer_org_acme_http_first_fit2.py",
        ),
        (
            "identifier",
            "com.example.subdomain",
            "turnout-identifier-com-example-subdomain",
            "turnout_identifier_com_example_subdomain",
            "identifier-com-example-subdomain",
            ("SubdomainIdentifierConfig", "SubdomainIdentifier"),
            "tests/test_identifier_com_example_subdomain.py",
        ),
    ],
)
def test_names(family, kind, distribution, package, entry_point, classes, test_file):
    names = plugin_names(family, kind)
    assert names.distribution == distribution
    assert names.package == package
    assert names.entry_point == entry_point
    assert (names.config_class, names.runtime_class) == classes
    assert names.test_file == test_file


@pytest.mark.parametrize("family", list(KINDS))
def test_every_kind_is_generated_with_its_hook_and_family(tmp_path, family):
    root, names = new_plugin(family, "com.example.demo", tmp_path)
    module = (root / "src" / names.package / f"{names.spec.module}.py").read_text()
    assert 'kind = "com.example.demo"' in module
    assert f"class {names.config_class}(" in module
    assert f"def {names.spec.hook}()" in (root / "src" / names.package / "plugin.py").read_text()
    readme = (root / "README.md").read_text()
    assert "kind: com.example.demo" in readme
    assert "| Option | Type | Default | Meaning |" in readme
    assert f"    {names.spec.family}: com.example.demo" in readme
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


# -- refusals ------------------------------------------------------------------------------------


def test_an_unknown_kind_is_refused_listing_the_supported_ones(turnout, tmp_path):
    result = turnout("plugin", "new", "router", "com.example.demo")
    assert result.returncode == 1
    assert result.stderr == (
        "turnout: unknown plugin kind 'router'; supported kinds: "
        "namer, identifier, telemeter, load-balancer, failure-accrual\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    [
        "demo",
        "com.example.",
        ".com.example",
        "com..example",
        "com.example.my-namer",
        "com.example.my_namer",
        "com.example.2fast",
        "com/example/demo",
        "com.example.démo",
        "",
    ],
)
def test_a_name_that_is_not_a_dotted_kind_is_refused(turnout, tmp_path, name):
    result = turnout("plugin", "new", "namer", name)
    assert result.returncode == 1
    assert result.stderr.startswith(f"turnout: invalid kind {name!r}: expected a dotted name")
    assert list(tmp_path.iterdir()) == []


def test_a_kind_in_turnouts_own_namespace_is_refused(tmp_path):
    with pytest.raises(ScaffoldError, match=r"io\.l5d\.\* kinds belong to turnout's own"):
        new_plugin("namer", "io.l5d.demo", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_not_overwritten(turnout, tmp_path):
    (tmp_path / DEMO).mkdir()
    (tmp_path / DEMO / "README.md").write_text("mine\n")
    result = turnout("plugin", "new", "namer", "com.example.demo")
    assert result.returncode == 1
    assert result.stderr == (
        f"turnout: {DEMO} already exists; choose another --dir or remove it first\n"
    )
    assert files_under(tmp_path / DEMO) == {"README.md"}
    assert (tmp_path / DEMO / "README.md").read_text() == "mine\n"


def test_an_existing_file_is_not_overwritten(tmp_path):
    (tmp_path / DEMO).write_text("mine\n")
    with pytest.raises(ScaffoldError, match="already exists"):
        new_plugin("namer", "com.example.demo", tmp_path)
    assert (tmp_path / DEMO).read_text() == "mine\n"


# -- the generated code --------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(KINDS))
def test_the_generated_tests_pass(tmp_path, family):
    """Run in this environment, uninstalled (the generated conftest finds ``src``): every
    test passes but the one that needs the distribution installed, which skips."""
    if family == "identifier":
        pytest.importorskip("turnout_protocol_http")
    root, _ = new_plugin(family, "com.example.demo", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "tests"],
        cwd=root,
        env=isolated_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\d+ passed, 1 skipped", result.stdout), result.stdout


def test_the_generated_code_is_ruff_clean(tmp_path):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    for family in KINDS:
        new_plugin(family, "com.example.demo", tmp_path)
        new_plugin(family, "org.acme.platform.serviceDiscovery", tmp_path)
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [ruff, *command, "--no-cache", "."],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# -- installed into a fresh venv ---------------------------------------------------------------


def run(cmd: list[str | Path], env: dict[str, str], cwd: Path | None = None, timeout=300):
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_generated_namer_installs_passes_its_tests_and_is_listed(tmp_path):
    started = time.monotonic()
    (tmp_path / "tmp").mkdir()
    env = isolated_env(
        PIP_CACHE_DIR=str(tmp_path / "pip-cache"),  # cache nothing outside tmp_path
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        TMPDIR=str(tmp_path / "tmp"),
    )
    run(
        [sys.executable, "-m", "turnout", "plugin", "new", "namer", "com.example.demo"],
        env,
        tmp_path,
    )
    plugin = tmp_path / DEMO

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], env)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", CORE, plugin, "pytest"], env)
    # both were installed as wheels, not linked to their source directories
    where = run(
        [python, "-c", f"import turnout, {PACKAGE} as m; print(turnout.__file__, m.__file__)"], env
    )
    assert where.stdout.count(str(venv)) == 2, where.stdout

    tests = run([python, "-m", "pytest", "-p", "no:cacheprovider", "tests"], env, plugin)
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary), tests.stdout
    assert "skipped" not in summary  # the entry-point test ran against the installed plugin

    turnout = venv / "bin" / "turnout"
    text = run([turnout, "plugins"], env).stdout
    assert f"namer-com-example-demo  [{DEMO} 0.1.0, {PACKAGE}.plugin]" in text
    assert "    namer: com.example.demo" in text
    listed = json.loads(run([turnout, "plugins", "--json"], env).stdout)["plugins"]
    [demo] = [p for p in listed if p["distribution"] == DEMO]
    assert demo["kinds"] == [{"family": "namer", "kind": "com.example.demo"}]

    # the templates are in turnout's wheel: the installed command writes the same skeleton
    run([turnout, "plugin", "new", "namer", "com.example.demo", "--dir", "again"], env, tmp_path)
    again = tmp_path / "again" / DEMO
    assert files_under(again) == NAMER_FILES
    for name in NAMER_FILES:
        assert (again / name).read_bytes() == (plugin / name).read_bytes(), name
    print(f"fresh venv: install, tests and listing took {time.monotonic() - started:.0f} s")
