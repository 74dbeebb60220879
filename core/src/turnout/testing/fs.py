"""A directory of service files for the ``io.l5d.fs`` namer, rewritten atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class DiscoDir:
    """``<root>/<service>`` files holding one ``host port [* weight]`` line per endpoint.

    :meth:`write` replaces a file atomically (write, then rename), so the namer never reads
    a half-written file.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, service: str, *endpoints: Any) -> Path:
        """Write ``service``'s endpoints: objects with an ``address`` attribute (backends),
        ``"host port"`` strings, ``(host, port)`` pairs, or ``(endpoint, weight)`` pairs."""
        lines = [_line(e) for e in endpoints]
        path = self.root / service
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
        return path

    def remove(self, service: str) -> None:
        """Delete ``service``'s file (the name becomes negative)."""
        (self.root / service).unlink(missing_ok=True)


def _line(endpoint: Any) -> str:
    if isinstance(endpoint, str):
        return endpoint
    if hasattr(endpoint, "address"):
        return str(endpoint.address)
    first, second = endpoint
    if isinstance(second, int) and isinstance(first, str):
        return f"{first} {second}"
    return f"{_line(first)} * {second}"
