"""Entry points of one group, read from the installed distributions' metadata directories.

``importlib.metadata`` does this too, but importing it (with ``email``, ``csv``, ``zipfile``,
``shutil``, ``tempfile``...) costs every turnout process about 3 MB of resident memory (see
docs/performance.md "Memory at start-up"), and a linker reads one group once. This module reads
the same files the same way: each ``sys.path`` directory in order, its ``*.dist-info`` and
``*.egg-info`` directories, the first distribution of a (normalized) name winning, the
``[group]`` section of its ``entry_points.txt``, and the ``Name``/``Version`` headers of its
``METADATA`` (or ``PKG-INFO``). When ``sys.path`` holds something it does not read (a zip
archive, a path hook of its own), it answers with ``importlib.metadata`` instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(?::\s*(?P<attr>[\w.]+)\s*)?(?:\[.*\]\s*)?$")


@dataclass(frozen=True)
class EntryPoint:
    """One entry point: ``name = value`` of its distribution ``dist_name`` ``version``."""

    name: str
    value: str
    group: str
    dist_name: str | None
    version: str | None

    def load(self) -> Any:
        """Import the module and return the object the value names."""
        m = _VALUE.match(self.value)
        if m is None:
            raise ValueError(f"malformed entry point value {self.value!r}")
        obj: Any = importlib.import_module(m.group("module"))
        for attr in (m.group("attr") or "").split("."):
            if attr:
                obj = getattr(obj, attr)
        return obj


def entry_points(group: str, path: Sequence[str] | None = None) -> list[EntryPoint]:
    """The entry points of ``group`` in the distributions on ``path`` (``sys.path``)."""
    entries = list(sys.path if path is None else path)
    if not all(_plain_directory(e) for e in entries):
        return _from_importlib(group, entries)
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in entries:
        root = entry or "."
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            lower = name.lower()
            if not lower.endswith((".dist-info", ".egg-info")):
                continue
            directory = os.path.join(root, name)
            if not os.path.isdir(directory):
                continue
            dist_name, version = _name_and_version(directory)
            key = _normalize(dist_name or name.rsplit(".", 1)[0].split("-", 1)[0])
            if key in seen:
                continue
            seen.add(key)
            found.extend(_section(directory, group, dist_name, version))
    return found


def _plain_directory(entry: str) -> bool:
    """Whether ``entry`` is read here: a directory (or a missing path), no zip archive."""
    return not os.path.isfile(entry or ".")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_and_version(directory: str) -> tuple[str | None, str | None]:
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(directory, filename), encoding="utf-8") as f:
                name = version = None
                for line in f:
                    if not line.strip():
                        break  # the headers end at the first empty line
                    key, sep, value = line.partition(":")
                    if not sep:
                        continue
                    if key == "Name" and name is None:
                        name = value.strip()
                    elif key == "Version" and version is None:
                        version = value.strip()
                return name, version
        except OSError:
            continue
    return None, None


def _section(
    directory: str, group: str, dist_name: str | None, version: str | None
) -> list[EntryPoint]:
    try:
        with open(os.path.join(directory, "entry_points.txt"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    out: list[EntryPoint] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current != group:
            continue
        name, sep, value = line.partition("=")
        if sep:
            out.append(EntryPoint(name.strip(), value.strip(), group, dist_name, version))
    return out


def _from_importlib(group: str, path: list[str]) -> list[EntryPoint]:
    import importlib.metadata as md

    out: list[EntryPoint] = []
    seen: set[str] = set()
    for dist in md.distributions(path=path):
        name = dist.metadata["Name"]
        key = _normalize(name or "")
        if key in seen:
            continue
        seen.add(key)
        out.extend(
            EntryPoint(ep.name, ep.value, group, name, dist.version)
            for ep in dist.entry_points
            if ep.group == group
        )
    return out
