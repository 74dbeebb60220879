"""Transformers (issue 12): registration, each built-in's effect on live address sets, the
order of application, the transformed ids, delegation output and configuration errors."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest
from turnout import hookimpl
from turnout.builtin.transformers import (
    ConstTransformerConfig,
    HostFilter,
    LocalhostTransformerConfig,
    PortTransformerConfig,
    ReplaceTransformerConfig,
    SpecificHostTransformerConfig,
    local_addresses,
)
from turnout.config import RouterConfig, load_text
from turnout.errors import ConfigError
from turnout.linker import Linker
from turnout.naming import (
    Activity,
    Addr,
    AddrBound,
    Address,
    AddrNeg,
    ConfiguredNamersInterpreter,
    Dtab,
    GlobalNamer,
    Leaf,
    NameBound,
    Namer,
    NameTree,
    Neg,
    Ok,
    Path,
    State,
    Var,
    delegate,
)
from turnout.naming.render import delegate_text
from turnout.naming.transformer import TransformingInterpreter, TransformingNamer
from turnout.plugin_manager import Plugins, load_plugins
from turnout.testing.config import build_context

P = Path.read


class TinyRouterConfig(RouterConfig):
    """A protocol that exists only so that a whole config validates."""

    kind = "test.tiny.transformers"
    default_port = 4140


def _tiny_protocol_module() -> types.ModuleType:
    module = types.ModuleType("tiny_protocol_for_transformer_tests")

    @hookimpl
    def turnout_register_protocols() -> list[type[RouterConfig]]:
        return [TinyRouterConfig]

    module.turnout_register_protocols = turnout_register_protocols  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins(autoload=False, extra=[_tiny_protocol_module()])


class StaticNamer(Namer):
    """``/#/static/<name>`` binds to ``self.vars[name]`` (a Var the test updates)."""

    def __init__(self, **addrs: list[Address]) -> None:
        self.vars: dict[str, Var[Addr]] = {k: Var(AddrBound(v)) for k, v in addrs.items()}
        self.acts: dict[Path, Activity[Any]] = {}

    def lookup(self, path: Path) -> Activity[Any]:
        if path not in self.acts:
            name = path.elems[0].decode() if len(path) else ""
            var = self.vars.get(name)
            if var is None:
                self.acts[path] = Activity.of(Neg)
            else:
                bound = NameBound(P("/#/static") + path.take(1), var, path.drop(1))
                self.acts[path] = Activity.of(Leaf(bound))
        return self.acts[path]


def A(host: str, port: int) -> Address:
    return Address(host, port)


def interpreter(namer: Namer, *transformers: Any) -> TransformingInterpreter:
    base = ConfiguredNamersInterpreter([(P("/static"), namer)], GlobalNamer())
    return TransformingInterpreter(base, [t.new_transformer(build_context()) for t in transformers])


DTAB = Dtab.read("/svc => /#/static")


def observed(act: Activity[Any]) -> tuple[list[State[Any]], Any]:
    seen: list[State[Any]] = []
    return seen, act.observe(seen.append)


def only_leaf(state: State[NameTree[NameBound]]) -> NameBound:
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    return state.value.value


def addrs(bound: NameBound) -> set[tuple[str, int]]:
    addr = bound.addr.value
    assert isinstance(addr, AddrBound), addr
    return {(a.host, a.port) for a in addr.addresses}


# ---------------------------------------------------------------------------------------------
# registration


def test_builtin_transformers_are_registered_through_the_hook(plugins: Plugins) -> None:
    kinds = plugins.registry.kinds("transformer")
    for kind in ("io.l5d.localhost", "io.l5d.specificHost", "io.l5d.port", "io.l5d.replace"):
        assert kind in kinds
    assert "io.l5d.const" in kinds
    reg = plugins.registry.registration("transformer", "io.l5d.port")
    assert reg is not None and reg.hook == "turnout_register_transformers"
    (info,) = [i for i in plugins.infos if i.name == "turnout.builtin.transformers"]
    assert "turnout_register_transformers" in info.hooks
    assert ("transformer", "io.l5d.port") in info.kinds


def test_a_plugin_transformer_is_registered() -> None:
    class Upper(PortTransformerConfig):
        kind = "com.example.upper"

    module = types.ModuleType("example_transformer_plugin")

    @hookimpl
    def turnout_register_transformers() -> Any:
        return Upper

    module.turnout_register_transformers = turnout_register_transformers  # type: ignore[attr-defined]
    plugins = load_plugins(autoload=False, extra=[module])
    reg = plugins.registry.registration("transformer", "com.example.upper")
    assert reg is not None and reg.provider.plugin == "example_transformer_plugin"


# ---------------------------------------------------------------------------------------------
# each transformer on live address sets


def test_port_rewrites_every_port_and_follows_updates() -> None:
    namer = StaticNamer(web=[A("10.0.0.1", 8080), A("10.0.0.2", 8081)])
    seen, obs = observed(
        interpreter(namer, PortTransformerConfig(port=4141)).bind(DTAB, P("/svc/web"))
    )
    bound = only_leaf(seen[-1])
    assert bound.id == P("/%/io.l5d.port/4141/#/static/web")
    updates: list[Addr] = []
    addr_obs = bound.addr.observe(updates.append)
    assert addrs(bound) == {("10.0.0.1", 4141), ("10.0.0.2", 4141)}
    namer.vars["web"].update(AddrBound([A("10.0.0.3", 9000)]))
    assert updates[-1] == AddrBound([A("10.0.0.3", 4141)])
    assert only_leaf(seen[-1]) is bound  # the same bound name: no re-binding
    namer.vars["web"].update(AddrNeg)
    assert updates[-1] is AddrNeg
    addr_obs.close()
    obs.close()


def test_port_keeps_address_metadata() -> None:
    namer = StaticNamer(web=[Address("10.0.0.1", 80, {"endpoint_addr_weight": 2.0})])
    state = interpreter(namer, PortTransformerConfig(port=81)).bind(DTAB, P("/svc/web")).value
    (address,) = only_leaf(state).addr.value.addresses  # type: ignore[attr-defined]
    assert (address.port, address.weight) == (81, 2.0)


def test_specific_host_keeps_that_host_and_empty_is_neg() -> None:
    namer = StaticNamer(web=[A("10.0.0.1", 80), A("10.0.0.2", 80), A("10.0.0.1", 81)])
    act = interpreter(namer, SpecificHostTransformerConfig(host="10.0.0.1")).bind(
        DTAB, P("/svc/web")
    )
    seen, obs = observed(act)
    bound = only_leaf(seen[-1])
    assert bound.id == P("/%/io.l5d.specificHost/#/static/web")
    updates: list[Addr] = []
    addr_obs = bound.addr.observe(updates.append)
    assert addrs(bound) == {("10.0.0.1", 80), ("10.0.0.1", 81)}
    namer.vars["web"].update(AddrBound([A("10.0.0.2", 80)]))
    assert updates[-1] is AddrNeg  # Linkerd: a filtered-out address set is Neg
    namer.vars["web"].update(AddrBound([A("10.0.0.2", 80), A("10.0.0.1", 99)]))
    assert updates[-1] == AddrBound([A("10.0.0.1", 99)])
    addr_obs.close()
    obs.close()


def test_specific_host_by_name_is_resolved() -> None:
    t = SpecificHostTransformerConfig(host="localhost").new_transformer(build_context())
    assert isinstance(t, HostFilter)
    assert t.keeps(A("127.0.0.1", 1)) or t.keeps(A("::1", 1))
    assert t.keeps(A("localhost", 1))
    assert not t.keeps(A("192.0.2.7", 1))


def test_localhost_keeps_loopback_and_this_hosts_addresses() -> None:
    t = LocalhostTransformerConfig().new_transformer(build_context())
    assert isinstance(t, HostFilter)
    assert t.keeps(A("127.0.0.1", 80)) and t.keeps(A("127.0.0.2", 80)) and t.keeps(A("::1", 80))
    assert not t.keeps(A("192.0.2.7", 80))  # TEST-NET-1: never local
    ips, _ = local_addresses()
    for ip in ips:
        assert t.keeps(A(str(ip), 80))
    namer = StaticNamer(web=[A("127.0.0.1", 80), A("192.0.2.7", 80)])
    state = interpreter(namer, LocalhostTransformerConfig()).bind(DTAB, P("/svc/web")).value
    bound = only_leaf(state)
    assert bound.id == P("/%/io.l5d.localhost/#/static/web")
    assert addrs(bound) == {("127.0.0.1", 80)}


def test_replace_binds_every_name_to_the_path_but_keeps_neg() -> None:
    namer = StaticNamer(web=[A("10.0.0.1", 80)], api=[A("10.0.0.2", 80)])
    cfg = ReplaceTransformerConfig(path=P("/$/inet/127.0.0.1/9000"))
    interp = interpreter(namer, cfg)
    dtab = Dtab.read("/svc => /#/static; /both => /#/static/web & /#/static/api")
    bound = only_leaf(interp.bind(dtab, P("/svc/web")).value)
    assert bound.id == P("/%/io.l5d.replace/$/inet/127.0.0.1/9000")
    both = interp.bind(dtab, P("/both")).value
    assert isinstance(both, Ok)
    assert {b.id for b in both.value.eval() or ()} == {bound.id}
    assert interp.bind(dtab, P("/svc/nothing")).value == Ok(Neg)


def test_const_answers_the_path_even_for_neg() -> None:
    namer = StaticNamer(web=[A("10.0.0.1", 80)])
    interp = interpreter(namer, ConstTransformerConfig(path=P("/$/inet/127.0.0.1/9000")))
    for path in ("/svc/web", "/svc/nothing"):
        bound = only_leaf(interp.bind(DTAB, P(path)).value)
        assert bound.id == P("/%/io.l5d.const/$/inet/127.0.0.1/9000")


def test_transformers_apply_in_order() -> None:
    namer = StaticNamer(web=[A("10.0.0.1", 80), A("10.0.0.2", 80)])
    interp = interpreter(
        namer, SpecificHostTransformerConfig(host="10.0.0.2"), PortTransformerConfig(port=4141)
    )
    bound = only_leaf(interp.bind(DTAB, P("/svc/web")).value)
    assert bound.id == P("/%/io.l5d.port/4141/%/io.l5d.specificHost/#/static/web")
    assert addrs(bound) == {("10.0.0.2", 4141)}
    # port first, then a filter on the rewritten addresses
    interp = interpreter(
        namer, PortTransformerConfig(port=4141), SpecificHostTransformerConfig(host="10.0.0.1")
    )
    bound = only_leaf(interp.bind(DTAB, P("/svc/web")).value)
    assert bound.id == P("/%/io.l5d.specificHost/%/io.l5d.port/4141/#/static/web")
    assert addrs(bound) == {("10.0.0.1", 4141)}


def test_prefix_option_changes_the_id() -> None:
    namer = StaticNamer(web=[A("10.0.0.1", 80)])
    interp = interpreter(namer, PortTransformerConfig(port=1, prefix=P("/local")))
    assert only_leaf(interp.bind(DTAB, P("/svc/web")).value).id == P("/%/local/#/static/web")


def test_namer_transformers_apply_to_bound_results_only() -> None:
    namer = StaticNamer(web=[A("10.0.0.1", 80)])
    wrapped = TransformingNamer(
        namer, [PortTransformerConfig(port=7).new_transformer(build_context())]
    )
    assert wrapped.lookup(P("/web")) is wrapped.lookup(P("/web"))  # cached per path
    bound = only_leaf(wrapped.lookup(P("/web")).value)
    assert bound.id == P("/%/io.l5d.port/7/#/static/web")
    assert addrs(bound) == {("10.0.0.1", 7)}
    assert wrapped.lookup(P("/nothing")).value == Ok(Neg)


# ---------------------------------------------------------------------------------------------
# configuration: namers[].transformers and routers[].interpreter.transformers


CONFIG = """\
namers:
- kind: io.l5d.fs
  rootDir: {root}
  transformers:
  - kind: io.l5d.port
    port: 7000
routers:
- protocol: test.tiny.transformers
  label: r
  dtab: /svc => /#/io.l5d.fs
  interpreter:
    transformers:
    - kind: io.l5d.specificHost
      host: 127.0.0.1
    - kind: io.l5d.port
      port: 4141
  servers:
  - port: 4140
"""


def test_configured_transformers_are_applied(plugins: Plugins, tmp_path: Any) -> None:
    (tmp_path / "web").write_text("127.0.0.1 8080\n10.1.1.1 8080\n")
    loaded = load_text(CONFIG.format(root=tmp_path), registry=plugins.registry)
    linker = Linker.build(loaded, plugins, routers=False)

    async def run() -> None:
        try:
            interp = linker.interpreters["r"]
            tree = await interp.bind(Dtab.read("/svc => /#/io.l5d.fs"), P("/svc/web")).wait(5)
            assert isinstance(tree, Leaf)
            bound = tree.value
            assert bound.id == P(
                "/%/io.l5d.port/4141/%/io.l5d.specificHost/%/io.l5d.port/7000/#/io.l5d.fs/web"
            )
            addr = await bound.addr.changes(lambda a: isinstance(a, AddrBound))
            assert {(a.host, a.port) for a in addr.addresses} == {("127.0.0.1", 4141)}
            # delegation shows the interpreter's transformations as nodes
            dtree = await delegate(interp, Dtab.read("/svc => /#/io.l5d.fs"), P("/svc/web"))
            js = dtree.to_json()
            assert js["type"] == "delegate" and js["path"] == "/svc/web"
            # (read top down, the nodes are in the order of application, as in Linkerd)
            node = js["delegate"]
            assert node["type"] == "transformation" and node["name"] == "io.l5d.specificHost"
            assert node["path"] == "/#/io.l5d.fs/web"
            # the namer's own transformer is already in the bound name the namer returns
            assert node["bound"]["id"] == "/%/io.l5d.port/7000/#/io.l5d.fs/web"
            assert node["bound"]["addr"]["type"] == "bound"
            inner = node["tree"]
            assert inner["type"] == "transformation" and inner["name"] == "io.l5d.port"
            assert (
                inner["bound"]["id"] == "/%/io.l5d.specificHost/%/io.l5d.port/7000/#/io.l5d.fs/web"
            )
            leaf = inner["tree"]
            assert leaf["type"] == "leaf"
            assert leaf["path"] == str(bound.id)
            assert leaf["dentry"] == {"prefix": "/svc", "dst": "/#/io.l5d.fs"}
            assert [(a["ip"], a["port"]) for a in leaf["bound"]["addr"]["addrs"]] == [
                ("127.0.0.1", 4141)
            ]
            text = "\n".join(delegate_text(dtree))
            assert "transformed" in text and "by io.l5d.port" in text
            assert "/%/io.l5d.port/4141/%/io.l5d.specificHost" in text
        finally:
            await linker.close()

    asyncio.run(run())


def test_const_delegation_shows_the_constant(plugins: Plugins) -> None:
    interp = interpreter(StaticNamer(), ConstTransformerConfig(path=P("/$/inet/127.0.0.1/9")))

    async def run() -> dict[str, Any]:
        return (await delegate(interp, DTAB, P("/svc/web"))).to_json()

    js = asyncio.run(run())
    assert js["type"] == "transformation" and js["name"] == "io.l5d.const"
    assert js["tree"]["type"] == "leaf"
    assert js["tree"]["bound"]["id"] == "/%/io.l5d.const/$/inet/127.0.0.1/9"


@pytest.mark.parametrize(
    ("transformer", "message", "line"),
    [
        ("  - kind: io.l5d.port\n    port: 70000\n", "70000", 8),
        ("  - kind: io.l5d.port\n", "missing required key 'port'", 7),
        ("  - kind: io.l5d.specificHost\n", "missing required key 'host'", 7),
        ("  - kind: io.l5d.replace\n    path: nope\n", "path", 8),
        ("  - kind: io.l5d.portt\n    port: 1\n", "io.l5d.port", 7),
    ],
)
def test_config_errors_are_located(
    plugins: Plugins, transformer: str, message: str, line: int
) -> None:
    text = (
        "routers:\n- protocol: test.tiny.transformers\n  servers:\n  - port: 4140\n"
        "  interpreter:\n    transformers:\n"
        + "\n".join("  " + x for x in transformer.splitlines())
    )
    with pytest.raises(ConfigError) as info:
        load_text(text + "\n", registry=plugins.registry)
    assert message in str(info.value)
    assert [p.line for p in info.value.problems] == [line], str(info.value)


def test_hosts_written_as_ipv4_shorthand_are_ips() -> None:
    """Linkerd's own io.l5d.fs files write ``127.1``: the host filters must read it as the IP
    getaddrinfo makes of it, and still tell names apart."""
    from turnout.builtin.transformers import _ip

    assert str(_ip("127.1")) == "127.0.0.1"
    assert str(_ip("10.1.2")) == "10.1.0.2"
    assert str(_ip("[::ffff:127.0.0.1]")) == "127.0.0.1"
    assert _ip("localhost") is None and _ip("deadbeef") is None and _ip("") is None
