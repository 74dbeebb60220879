"""Optional compilation of the HTTP data path with mypyc.

``TURNOUT_COMPILE=1 pip install ./plugins/turnout-protocol-http`` compiles the modules of the
per-request code (:data:`DATA_PATH`) into C extensions, in one group together with the core
request stack (``turnout/router/stack.py``, copied for the build in place of the ``_stack.py``
re-export, so that the data path calls the stack natively): the same source, about 30% less
CPU per request (see docs/performance.md). Without the variable the plugin is pure Python. If
the compilation fails (no C compiler, no stack source), the install fails loudly rather than
silently falling back, because whoever asked for it wants to know.
"""

import os
import pathlib
import shutil

from setuptools import setup

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
            "TURNOUT_COMPILE=1: turnout's request stack source (turnout/router/stack.py) was "
            "found neither beside this plugin nor installed; build from a turnout checkout"
        )
    return pathlib.Path(spec.origin).read_text()


if os.environ.get("_TURNOUT_BUILDING"):
    # setuptools copies into build/lib* without removing what is no longer in src/: a module
    # renamed or deleted since the last build (and its compiled twin) would be installed too
    for stale in HERE.glob("build/lib*/turnout_protocol_http"):
        shutil.rmtree(stale)

ext_modules = []
shim_text = None
# (setup.py also runs while pip only asks for build requirements; compile in the build itself)
if os.environ.get("TURNOUT_COMPILE", "") == "1" and os.environ.get("_TURNOUT_BUILDING"):
    from mypyc.build import mypycify

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
    setup(ext_modules=ext_modules)
finally:
    if shim_text is not None:
        SHIM.write_text(shim_text)  # (the checkout keeps the re-export)
