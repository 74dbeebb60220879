"""turnout.entry_points finds what importlib.metadata finds: on the installed workspace, and on
metadata directories written here (the first distribution of a name wins, sections and
comments, egg-info, values with attributes and extras, a zip archive on the path)."""

from __future__ import annotations

import importlib.metadata as md
import sys
import zipfile
from pathlib import Path

import pytest
from turnout.entry_points import EntryPoint, entry_points


def from_importlib(group: str, path: list[str] | None = None) -> list[tuple[str, ...]]:
    dists = md.distributions() if path is None else md.distributions(path=path)
    seen: set[str] = set()
    out = []
    for dist in dists:
        name = dist.metadata["Name"]
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        seen.add(key)
        for ep in dist.entry_points:
            if ep.group == group:
                out.append((ep.name, ep.value, name, dist.version))
    return sorted(out)


def ours(group: str, path: list[str] | None = None) -> list[tuple[str, ...]]:
    return sorted(
        (e.name, e.value, e.dist_name or "", e.version or "") for e in entry_points(group, path)
    )


@pytest.mark.parametrize("group", ["turnout", "console_scripts", "pytest11"])
def test_the_installed_workspace_reads_the_same(group: str) -> None:
    found = ours(group)
    assert found == from_importlib(group)
    if group == "turnout":
        assert ("protocol-http", "turnout_protocol_http.plugin", "turnout-protocol-http") in {
            f[:3] for f in found
        }


def dist(root: Path, dirname: str, name: str, version: str, entry_points_txt: str) -> None:
    d = root / dirname
    d.mkdir(parents=True)
    meta = "METADATA" if dirname.endswith(".dist-info") else "PKG-INFO"
    (d / meta).write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: not-a-header\n"
    )
    (d / "entry_points.txt").write_text(entry_points_txt)


def test_metadata_directories_written_here(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist(
        first,
        "demo_plugin-1.0.dist-info",
        "demo-plugin",
        "1.0",
        "# a comment\n[console_scripts]\ndemo = demo:main\n\n"
        "[turnout]\n# another comment\nplugin-a = demo_a.plugin\n"
        "plugin-b = demo_b.mod:obj.attr [extra]\n",
    )
    dist(first, "old_thing-0.1.egg-info", "old-thing", "0.1", "[turnout]\nold = old.plugin\n")
    # the same distribution again, later on the path: shadowed, as importlib.metadata does
    dist(second, "demo_plugin-2.0.dist-info", "demo_plugin", "2.0", "[turnout]\nnew = x.y\n")
    path = [str(first), str(second), str(tmp_path / "missing")]
    found = ours("turnout", path)
    assert found == from_importlib("turnout", path)
    assert found == [
        ("old", "old.plugin", "old-thing", "0.1"),
        ("plugin-a", "demo_a.plugin", "demo-plugin", "1.0"),
        ("plugin-b", "demo_b.mod:obj.attr [extra]", "demo-plugin", "1.0"),
    ]


def test_load_imports_the_module_and_walks_the_attributes() -> None:
    ep = EntryPoint("x", "turnout.entry_points:EntryPoint.load", "g", None, None)
    assert ep.load() is EntryPoint.load
    assert (
        EntryPoint("m", "turnout.entry_points", "g", None, None).load()
        is sys.modules["turnout.entry_points"]
    )
    with pytest.raises(ValueError, match="malformed"):
        EntryPoint("bad", "not a value!", "g", None, None).load()


def test_a_zip_archive_on_the_path_is_read_by_importlib(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        z.writestr("zipped-1.0.dist-info/entry_points.txt", "[turnout]\nz = zipped.plugin\n")
    path = [str(archive)]
    assert ours("turnout", path) == [("z", "zipped.plugin", "zipped", "1.0")]
