"""First-party kinds that live in separately installed plugins, for ``pip install`` hints.

When a configuration names a kind that is not installed but is provided by one of turnout's
own plugin distributions, the error says which one to install. A test checks that every
distribution named here exists under ``plugins/`` and registers the kinds listed for it.
"""

from __future__ import annotations

#: (family, kind) → distribution name
FIRST_PARTY_KINDS: dict[tuple[str, str], str] = {
    ("router", "http"): "turnout-protocol-http",
    ("http identifier", "io.l5d.header.token"): "turnout-protocol-http",
    ("http identifier", "io.l5d.methodAndHost"): "turnout-protocol-http",
    ("http identifier", "io.l5d.path"): "turnout-protocol-http",
    ("http identifier", "io.l5d.header"): "turnout-protocol-http",
    ("http identifier", "io.l5d.static"): "turnout-protocol-http",
}
