"""docs/configuration-reference.md is generated from the config classes; keep it current."""

from __future__ import annotations

from pathlib import Path

from turnout.config.reference import first_party_registry, generate

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration-reference.md").read_text(encoding="utf-8")
    assert committed == generate(first_party_registry()), (
        "docs/configuration-reference.md is stale: run "
        "`.venv/bin/python -m turnout.config.reference > docs/configuration-reference.md`"
    )


def test_reference_lists_every_first_party_kind() -> None:
    registry = first_party_registry()
    text = generate(registry)
    for family in registry.families():
        for kind in registry.kinds(family):
            assert f": {kind}`" in text, (family, kind)
