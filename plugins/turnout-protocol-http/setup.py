"""Compilation of the HTTP data path with mypyc, by default.

``pip install ./plugins/turnout-protocol-http`` compiles the modules of the per-request code
(:data:`DATA_PATH`) into C extensions whenever a C compiler is there, in one group together with
the core request stack (``turnout/router/stack.py``, copied for the build in place of the
``_stack.py`` re-export, so that the data path calls the stack natively): the same source,
about 30% less CPU per request (see docs/performance.md).

``TURNOUT_COMPILE`` chooses:

- unset: compile if possible; without a C compiler (or if compiling fails) install the
  pure-Python build, saying so in the build output (``pip install -v`` shows it) and, once
  installed, in ``turnout plugins`` and ``turnout --version`` ("data path: pure Python").
- ``1``: compile or fail the install loudly (whoever asked for it wants to know).
- ``0``: pure Python, no compiler used.

An editable install (``pip install -e``, as ``./dev setup`` does) stays pure Python unless
``TURNOUT_COMPILE=1``: compiled modules beside the source would shadow every edit.
"""

import os
import pathlib
import shutil
import sys
import sysconfig
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError

HERE = pathlib.Path(__file__).resolve().parent
SHIM = HERE / "src" / "turnout_protocol_http" / "_stack.py"

#: the modules compiled, in one group (calls between them are native): everything that runs
#: per request. (The other modules, tunnel.py, tls.py, accesslog.py, config.py... stay Python:
#: they run per connection, per upgrade or at start-up.)
DATA_PATH = [
    "_stack",  # the core request stack (see stack_source)
    "exchange",  # Exchange, header-name tables, the data path's constants
    "downstream",  # ServerProtocol: client connections
    "upstream",  # UpstreamProtocol, Pool: endpoint connections
    "heads",  # response heads, status lines, request ids
    "routecache",  # RouteExtras: per-route classifier and header blocks
    "servers",  # ServerRuntime, HttpServerStats
    "answers",  # HttpAnswers: answers, failures, the stack's protocol hooks
    "runtime",  # HttpRouter: dispatch, sending, sweeps
]


def stack_source() -> str:
    """The source of ``turnout.router.stack``: from the checkout beside this plugin, else from
    an installed turnout."""
    beside = HERE.parent.parent / "core" / "src" / "turnout" / "router" / "stack.py"
    if beside.is_file():
        return beside.read_text()
    import importlib.util

    spec = importlib.util.find_spec("turnout.router.stack")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "compiling the data path: turnout's request stack source (turnout/router/stack.py) was "
            "found neither beside this plugin nor installed; build from a turnout checkout"
        )
    return pathlib.Path(spec.origin).read_text()


if os.environ.get("_TURNOUT_BUILDING"):
    # setuptools copies into build/lib* without removing what is no longer in src/: a module
    # renamed or deleted since the last build (and its compiled twin) would be installed too
    for stale in HERE.glob("build/lib*/turnout_protocol_http"):
        shutil.rmtree(stale)

COMPILE = os.environ.get("TURNOUT_COMPILE", "")
#: set by _build/backend.py: "wheel" or "editable" while building, unset otherwise (pip also
#: runs setup.py only to ask for build requirements; compile in the build itself)
BUILDING = os.environ.get("_TURNOUT_BUILDING", "")


def wanted() -> bool:
    if COMPILE == "0" or not BUILDING:
        return False
    return COMPILE == "1" or BUILDING == "wheel"


def pure(reason: str) -> None:
    """Say loudly that this install is the pure-Python build, and why."""
    bar = "=" * 78
    sys.stderr.write(
        f"\n{bar}\nturnout-protocol-http: installing the PURE-PYTHON data path ({reason}).\n"
        "It works the same, but serves about 25% fewer requests per core (docs/performance.md).\n"
        "To compile: install a C compiler and the Python headers (Debian: gcc python3-dev),\n"
        "then reinstall; TURNOUT_COMPILE=1 makes a failed compilation fail the install.\n"
        f"{bar}\n\n"
    )


def c_compiler() -> str | None:
    """The C compiler Python's build tools will call, if it is installed."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(cc.split()[0])


class BuildExt(build_ext):
    """build_ext that, unless ``TURNOUT_COMPILE=1``, falls back to the pure-Python modules when
    the C compilation fails (their ``.py`` sources are in the wheel either way)."""

    def run(self) -> None:
        try:
            super().run()
        except (CCompilerError, BaseError, OSError) as exc:
            if COMPILE == "1":
                raise
            self.extensions = []
            for built in pathlib.Path(self.build_lib).glob("turnout_protocol_http*.so"):
                built.unlink()
            for built in pathlib.Path(self.build_lib, "turnout_protocol_http").glob("*.so"):
                built.unlink()
            if shim_text is not None:  # the pure build re-exports turnout's own stack
                pathlib.Path(self.build_lib, "turnout_protocol_http", "_stack.py").write_text(
                    shim_text
                )
            pure(f"compiling failed: {exc}")


ext_modules: list[Any] = []
shim_text = None
if wanted():
    if c_compiler() is None and COMPILE != "1":
        pure("no C compiler found")
    else:
        try:
            from mypyc.build import mypycify
        except ImportError as exc:
            if COMPILE == "1":
                raise
            pure(f"mypyc is not available: {exc}")
        else:
            shim_text = SHIM.read_text()
            SHIM.write_text(stack_source())
            try:
                ext_modules = mypycify(
                    [
                        "--config-file",
                        "_build/mypyc.ini",
                        *(f"src/turnout_protocol_http/{name}.py" for name in DATA_PATH),
                    ],
                    opt_level="3",
                    group_name="turnout_protocol_http",
                )
            except BaseException:
                SHIM.write_text(shim_text)
                raise

try:
    setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
finally:
    if shim_text is not None:
        SHIM.write_text(shim_text)  # (the checkout keeps the re-export)
