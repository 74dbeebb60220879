"""The public plugin API (:mod:`turnout.api`): every name it lists resolves, is the same object
as ``turnout.<name>``, and the list itself is well formed."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import turnout
import turnout.api


def test_all_has_no_duplicates_and_no_private_names() -> None:
    names = turnout.api.__all__
    assert len(names) == len(set(names))
    assert not [n for n in names if n.startswith("_")]


@pytest.mark.parametrize("name", turnout.api.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(turnout.api, name)
    assert getattr(turnout, name) is value, f"turnout.{name} is not turnout.api.{name}"


def test_star_imports_give_the_public_names() -> None:
    api: dict[str, object] = {}
    exec("from turnout.api import *", api)
    top: dict[str, object] = {}
    exec("from turnout import *", top)
    assert set(turnout.api.__all__) <= set(api)
    assert set(turnout.api.__all__) | {"__version__"} <= set(top)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        turnout.NoSuchName  # noqa: B018
    assert not hasattr(turnout, "_private")


def test_compatibility_names() -> None:
    """Names that moved and stay importable from their old homes."""
    linker = importlib.import_module("turnout.linker")
    assert linker.BuildContext is turnout.api.BuildContext
    hookspecs = importlib.import_module("turnout.hookspecs")
    assert hookspecs.hookimpl is turnout.hookimpl


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("10.0.0.1:8080", "10.0.0.1", 8080),
        ("web.example.org:80", "web.example.org", 80),
        ("[::1]:8080", "::1", 8080),
        ("[fe80::1%eth0]:1", "fe80::1%eth0", 1),
        ("h:65535", "h", 65535),
    ],
)
def test_address_parse(text: str, host: str, port: int) -> None:
    address = turnout.api.Address.parse(text)
    assert (address.host, address.port) == (host, port)
    assert turnout.api.Address.parse(str(address)) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1", "the port is missing"),
        ("[::1]", "the port is missing"),
        ("::1", "put an IPv6 address in brackets"),
        ("fe80::1:80", "put an IPv6 address in brackets"),
        ("h:0", "with a port from 1 to 65535"),
        ("h:65536", "with a port from 1 to 65535"),
        ("h:x", "with a port from 1 to 65535"),
        ("h:", "with a port from 1 to 65535"),
        ("h:٣", "with a port from 1 to 65535"),  # a digit, but not an ASCII one
        (":80", "got ':80'"),
        ("", "got ''"),
        ("a b:80", "got 'a b:80'"),
        (" h:80", "got ' h:80'"),
        ("[::1", "got '[::1'"),
        ("[::1]80", "got '[::1]80'"),
        ("[]:80", "got '[]:80'"),
    ],
)
def test_address_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="expected 'host:port' or '\\[ipv6\\]:port'") as caught:
        turnout.api.Address.parse(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("h", "h", 53), ("::1", "::1", 53), ("[::1]", "::1", 53), ("[::1]:54", "::1", 54)],
)
def test_address_parse_with_a_default_port(text: str, host: str, port: int) -> None:
    address = turnout.api.Address.parse(text, default_port=53)
    assert (address.host, address.port) == (host, port)


def test_address_parse_keeps_metadata() -> None:
    address = turnout.api.Address.parse("h:1", meta={turnout.api.WEIGHT_KEY: 2.0})
    assert address.weight == 2.0


def test_every_distribution_ships_py_typed() -> None:
    """Each distribution's packages carry ``py.typed`` (PEP 561), so that its users' type
    checkers read its annotations; the build backends put every file of a package directory
    in the wheel."""
    root = Path(__file__).resolve().parents[2]
    dists = [root / "core"] + [
        d
        for pattern in ("plugins/*", "plugins-contrib/*", "examples/*")
        for d in sorted(root.glob(pattern))
        if (d / "pyproject.toml").is_file()
    ]
    packages = [p for d in dists for p in (d / "src").glob("*/__init__.py")]
    assert len(packages) >= len(dists) >= 10
    missing = [
        str(p.parent.relative_to(root)) for p in packages if not (p.parent / "py.typed").is_file()
    ]
    assert not missing, f"no py.typed in {missing}"
