"""Tests of the example plugin: registration, configuration, and binding names through it."""

from __future__ import annotations

import pytest
from turnout.api import AddrBound, Address, Leaf, NameBound, NamerConfig, Neg, Path
from turnout.testing.config import bind_name, build_context, plugin_registry, read_entry
from turnout_example_plugin import plugin
from turnout_example_plugin.namer import StaticNamer, StaticNamerConfig

CONFIG = """
kind: com.example.static
services:
  web: ["10.0.0.1:8080", "10.0.0.2:8080"]
  api: ["[::1]:9000"]
  idle: []
"""


@pytest.fixture(scope="module")
def registry():
    # autoload=False: only turnout's built-ins and this plugin, whatever else is installed
    return plugin_registry(plugin)


def read_namer(registry, text: str):
    """Read one ``namers:`` entry the way ``turnout check`` does: (config, problems)."""
    return read_entry(registry, NamerConfig, text, "namer.yaml")


def bind(config: StaticNamerConfig, dtab: str, path: str):
    """Bind ``path`` as a router with ``dtab`` and this namer would; returns the bound tree."""
    return bind_name(dtab, path, config)


# -- registration ----------------------------------------------------------------------------


def test_the_plugin_registers_the_namer_kind(registry):
    registration = registry.registration("namer", "com.example.static")
    assert registration.cls is StaticNamerConfig
    assert registration.provider.plugin == "turnout_example_plugin.plugin"
    assert registration.hook == "turnout_register_namers"


# -- configuration -----------------------------------------------------------------------------


def test_config_is_read(registry):
    config, problems = read_namer(registry, CONFIG)
    assert problems == []
    assert isinstance(config, StaticNamerConfig)
    assert config.services["web"] == ["10.0.0.1:8080", "10.0.0.2:8080"]
    assert config.effective_prefix == Path.read("/com.example.static")


def test_prefix_can_be_changed(registry):
    config, _ = read_namer(registry, CONFIG + "prefix: /static\n")
    assert config.effective_prefix == Path.read("/static")


def test_a_bad_address_is_reported_where_it_is_written(registry):
    _, problems = read_namer(registry, 'kind: com.example.static\nservices:\n  web: ["a:1", "b"]\n')
    assert [(p.line, p.column, p.path) for p in problems] == [(3, 16, "services.web[1]")]
    assert (
        problems[0].message == "expected 'host:port' or '[ipv6]:port', got 'b': the port is missing"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: com.example.static\n", "missing required key 'services'"),
        ("kind: com.example.static\nservices: [a]\n", "expected a mapping, got a list"),
        ("kind: com.example.static\nservices: {}\nservice: {}\n", "did you mean 'services'?"),
    ],
)
def test_config_errors(registry, text, message):
    config, problems = read_namer(registry, text)
    assert config is None
    assert [message in p.message for p in problems] == [True]


# -- binding -------------------------------------------------------------------------------------


def test_name_binds_to_its_addresses(registry):
    config, _ = read_namer(registry, CONFIG)
    tree = bind(config, "/svc=>/#/com.example.static", "/svc/web")
    assert isinstance(tree, Leaf) and isinstance(tree.value, NameBound)
    assert tree.value.id == Path.read("/#/com.example.static/web")
    assert tree.value.residual == Path.empty
    assert tree.value.addr.value == AddrBound(
        [Address("10.0.0.1", 8080), Address("10.0.0.2", 8080)]
    )


def test_rest_of_the_path_is_the_residual(registry):
    config, _ = read_namer(registry, CONFIG)
    tree = bind(config, "/svc=>/#/com.example.static", "/svc/api/v1/users")
    assert tree.value.id == Path.read("/#/com.example.static/api")
    assert tree.value.residual == Path.read("/v1/users")
    assert tree.value.addr.value == AddrBound([Address("::1", 9000)])


def test_listed_service_without_addresses_binds_to_no_endpoints(registry):
    config, _ = read_namer(registry, CONFIG)
    tree = bind(config, "/svc=>/#/com.example.static", "/svc/idle")
    assert tree.value.addr.value == AddrBound([])


def test_unknown_name_is_neg(registry):
    config, _ = read_namer(registry, CONFIG)
    assert bind(config, "/svc=>/#/com.example.static", "/svc/nope") is Neg
    assert bind(config, "/svc=>/#/com.example.static", "/svc") is Neg


def test_neg_falls_through_to_the_next_alternative(registry):
    config, _ = read_namer(registry, CONFIG)
    dtab = "/svc=>/#/com.example.static | /$/inet/127.0.0.1/9999"
    assert bind(config, dtab, "/svc/web").value.id == Path.read("/#/com.example.static/web")
    assert bind(config, dtab, "/svc/nope").value.id == Path.read("/$/inet/127.0.0.1/9999")


def test_same_activity_for_the_same_path():
    namer = StaticNamerConfig(services={"web": ["10.0.0.1:8080"]}).new_namer(build_context())
    assert namer.lookup(Path.read("/web/x")) is namer.lookup(Path.read("/web/x"))
    assert namer.lookup(Path.read("/web/x")) is not namer.lookup(Path.read("/web/y"))


def test_address_updates_reach_existing_bindings():
    namer = StaticNamerConfig(services={"web": ["10.0.0.1:8080"]}).new_namer(build_context())
    assert isinstance(namer, StaticNamer)
    bound = namer.lookup(Path.read("/web")).value.value.value  # Ok → Leaf → NameBound
    seen = []
    observation = bound.addr.observe(seen.append)
    namer.addrs["web"].update(AddrBound([Address("10.0.0.3", 8080)]))
    observation.close()
    assert seen == [AddrBound([Address("10.0.0.1", 8080)]), AddrBound([Address("10.0.0.3", 8080)])]


def test_admin_views(registry):
    config, _ = read_namer(registry, CONFIG)
    namer = config.new_namer(build_context())
    assert [str(p) for p in namer.bound_names()] == [
        "/#/com.example.static/api",
        "/#/com.example.static/idle",
        "/#/com.example.static/web",
    ]
    assert namer.state()["web"] == ["10.0.0.1:8080", "10.0.0.2:8080"]
