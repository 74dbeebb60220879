"""Optional compilation of the HTTP data path with mypyc.

``TURNOUT_COMPILE=1 pip install ./plugins/turnout-protocol-http`` compiles ``proxy.py`` and
``runtime.py`` (the per-request code) into C extensions: the same source, about 30% less CPU
per request (see docs/performance.md). Without the variable the plugin is pure Python. If the
compilation fails (no C compiler), the install fails loudly rather than silently falling back,
because whoever asked for it wants to know.
"""

import os

from setuptools import setup

ext_modules = []
# (setup.py also runs while pip only asks for build requirements; compile in the build itself)
if os.environ.get("TURNOUT_COMPILE", "") == "1" and os.environ.get("_TURNOUT_BUILDING"):
    from mypyc.build import mypycify

    ext_modules = mypycify(
        [
            "--config-file",
            "_build/mypyc.ini",
            "src/turnout_protocol_http/proxy.py",
            "src/turnout_protocol_http/runtime.py",
        ],
        opt_level="3",
        group_name="turnout_protocol_http",
    )

setup(ext_modules=ext_modules)
