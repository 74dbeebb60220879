"""The io.l5d.rewrite namer and the /$/io.buoyant.* global namers."""

import types
from typing import Any

import pytest
from turnout import hookimpl
from turnout.builtin.global_namers import STATUS_META
from turnout.builtin.namers import RewriteNamer, RewriteNamerConfig
from turnout.config import RouterConfig, load_text
from turnout.errors import ConfigError
from turnout.naming import (
    Activity,
    AddrBound,
    Address,
    ConfiguredNamersInterpreter,
    Dtab,
    Failed,
    GlobalNamer,
    Leaf,
    NameBound,
    Namer,
    Neg,
    Ok,
    Path,
    PathMatcher,
    State,
)
from turnout.plugin_manager import Plugins, load_plugins
from turnout.testing.config import build_context

P = Path.read


class TinyRouterConfig(RouterConfig):
    """A protocol that exists only so that a whole config validates."""

    kind = "test.tiny"
    default_port = 4140


def _tiny_protocol_module() -> types.ModuleType:
    module = types.ModuleType("tiny_protocol_for_tests")

    @hookimpl
    def turnout_register_protocols() -> list[type[RouterConfig]]:
        return [TinyRouterConfig]

    module.turnout_register_protocols = turnout_register_protocols  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins(autoload=False, extra=[_tiny_protocol_module()])


class Cached(Namer):
    """One Activity per path, as the Namer contract asks (see the converge bug below)."""

    def __init__(self, namer: Namer) -> None:
        self.namer = namer
        self.acts: dict[Path, Activity[Any]] = {}

    def lookup(self, path: Path) -> Activity[Any]:
        if path not in self.acts:
            self.acts[path] = self.namer.lookup(path)
        return self.acts[path]


@pytest.fixture(scope="module")
def global_namer(plugins: Plugins) -> GlobalNamer:
    namers = plugins.registry.global_namers.items()
    return GlobalNamer({name: Cached(reg.namer) for name, reg in namers})


def rewrite(pattern: str, name: str) -> RewriteNamer:
    namer = RewriteNamerConfig(prefix=P("/rw"), pattern=PathMatcher(pattern), name=name).new_namer(
        build_context()
    )
    assert isinstance(namer, RewriteNamer)
    return namer


def first_bind(interp: ConfiguredNamersInterpreter, dtab: str, path: str) -> State[Any]:
    seen: list[State[Any]] = []
    interp.bind(Dtab.read(dtab), P(path)).observe(seen.append).close()
    return seen[0]


def bound_leaf(state: State[Any]) -> NameBound:
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    return state.value.value


# ---------------------------------------------------------------------------------------------
# io.l5d.rewrite
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "path", "expected"),
    [
        ("/{service}/api", "/srv/{service}", "/users/api", "/srv/users"),
        ("/{service}/api", "/srv/{service}", "/users/api/v1/extra", "/srv/users"),
        ("/{host}/{port}", "/$/inet/{host}/{port}", "/127.1/8080", "/$/inet/127.1/8080"),
        ("/*/{svc}", "/srv/{svc}", "/anything/web", "/srv/web"),
        ("/{a}-{b}", "/x/{b}/{a}", "/us-west-1", "/x/1/us-west"),  # greedy
        ("/svc-{name}.{ns}", "/k8s/{ns}/{name}", "/svc-web.prod", "/k8s/prod/web"),
        ("/{a}/{b}", "/{b}/{a}/{b}", "/x/y", "/y/x/y"),
        ("/fixed", "/other", "/fixed/z", "/other"),
        ("/{x}", "/srv/{x}", "/a\\x20b", "/srv/a\\x20b"),  # escaped labels survive
    ],
)
def test_rewrite_lookup(pattern: str, name: str, path: str, expected: str) -> None:
    assert rewrite(pattern, name).lookup(P(path)).value == Ok(Leaf(P(expected)))


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/{service}/api", "/users/web"),
        ("/{service}/api", "/users"),
        ("/{service}/api", "/"),
        ("/{a}-{b}", "/nodash"),
        ("/{a}-{b}", "/-x"),  # captures are never empty
        ("/*/x", "/a/y"),
        ("/fixed", "/fixedx"),
    ],
)
def test_rewrite_non_match_is_neg(pattern: str, path: str) -> None:
    assert rewrite(pattern, "/srv/{a}" if "{a}" in pattern else "/srv").lookup(P(path)).value == Ok(
        Neg
    )


def test_rewrite_result_that_is_not_a_path_fails() -> None:
    state = rewrite("/{x}", "srv/{x}").lookup(P("/web")).value
    assert isinstance(state, Failed)
    assert isinstance(state.error, ValueError)


def test_rewritten_name_is_bound_through_the_dtab(global_namer: GlobalNamer) -> None:
    interp = ConfiguredNamersInterpreter(
        [(P("/rw"), rewrite("/{service}/api", "/srv/{service}"))], global_namer
    )
    b = bound_leaf(
        first_bind(interp, "/srv/users=>/$/inet/127.1/9000;/svc=>/#/rw", "/svc/users/api")
    )
    assert b.id == P("/$/inet/127.1/9000")
    assert first_bind(interp, "/svc=>/#/rw", "/svc/users/web") == Ok(Neg)


CONFIG = """\
routers:
- protocol: test.tiny
  servers:
  - port: 4140
namers:
- kind: io.l5d.rewrite
{namer}"""


def load_rewrite(plugins: Plugins, namer: str) -> Any:
    return load_text(CONFIG.format(namer=namer), registry=plugins.registry)


def test_rewrite_config_loads(plugins: Plugins) -> None:
    loaded = load_rewrite(
        plugins, "  prefix: /rw\n  pattern: /{service}/api\n  name: /srv/{service}\n"
    )
    (namer,) = loaded.config.namers
    assert isinstance(namer, RewriteNamerConfig)
    assert namer.effective_prefix == P("/rw")
    assert namer.pattern == PathMatcher("/{service}/api")
    assert namer.new_namer(build_context()).lookup(P("/web/api")).value == Ok(Leaf(P("/srv/web")))


@pytest.mark.parametrize(
    ("namer", "message"),
    [
        ("  pattern: /{service}/api\n  name: /srv/{service}\n", "needs a 'prefix'"),
        (
            "  prefix: /rw\n  pattern: /{service}/api\n  name: /srv/{svc}/{zone}\n",
            "uses svc, zone, which the pattern does not capture",
        ),
        ("  prefix: /rw\n  pattern: /{service/api\n  name: /srv\n", "pattern"),
        ("  prefix: /rw\n  pattern: service/api\n  name: /srv\n", "pattern"),
        ("  prefix: /rw\n  name: /srv\n", "missing required key 'pattern'"),
        ("  prefix: /rw\n  pattern: /x\n", "missing required key 'name'"),
    ],
)
def test_rewrite_config_errors(plugins: Plugins, namer: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_rewrite(plugins, namer)
    assert message in str(info.value)
    assert all(p.line is not None for p in info.value.problems)


# ---------------------------------------------------------------------------------------------
# /$/io.buoyant.* (examples from Linkerd's own tests)
# ---------------------------------------------------------------------------------------------

ALL_GLOBAL = {
    "io.buoyant.rinet",
    "io.buoyant.hostportPfx",
    "io.buoyant.porthostPfx",
    "io.buoyant.http.anyMethod",
    "io.buoyant.http.anyMethodPfx",
    "io.buoyant.http.anyHost",
    "io.buoyant.http.anyHostPfx",
    "io.buoyant.http.subdomainOf",
    "io.buoyant.http.subdomainOfPfx",
    "io.buoyant.http.domainToPath",
    "io.buoyant.http.domainToPathPfx",
    "io.buoyant.http.status",
}


def test_every_global_namer_is_registered(plugins: Plugins) -> None:
    assert set(plugins.registry.global_namers) == ALL_GLOBAL


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/$/io.buoyant.http.anyMethod/GET/foo/bar/bah", "/foo/bar/bah"),
        ("/$/io.buoyant.http.anyMethod/A.B/foo/bar/bah", None),
        ("/$/io.buoyant.http.anyMethod", None),
        ("/$/io.buoyant.http.anyMethodPfx/foo/GET/bar/bah", "/foo/bar/bah"),
        ("/$/io.buoyant.http.anyMethodPfx/foo/A.B/bar/bah", None),
        ("/$/io.buoyant.http.anyHost/a.b/foo/bar/bah", "/foo/bar/bah"),
        ("/$/io.buoyant.http.anyHost/a%b/foo/bar/bah", None),
        ("/$/io.buoyant.http.anyHostPfx/foo/a.b/bar/bah", "/foo/bar/bah"),
        ("/$/io.buoyant.http.anyHostPfx/foo/a%b/bar/bah", None),
        ("/$/io.buoyant.http.subdomainOf/a.b/foo.a.b/bar/bah", "/foo/bar/bah"),
        ("/$/io.buoyant.http.subdomainOf/a.b/foo.c.d/bar/bah", None),
        ("/$/io.buoyant.http.subdomainOf/a.b/a.b/bar", None),
        ("/$/io.buoyant.http.subdomainOfPfx/a.b/foo/bar.a.b/bah", "/foo/bar/bah"),
        ("/$/io.buoyant.http.subdomainOfPfx/a.b/foo/bar_suffix.a.b/bah", "/foo/bar_suffix/bah"),
        ("/$/io.buoyant.http.subdomainOfPfx/a.b/foo/bar-suffix.a.b/bah", "/foo/bar-suffix/bah"),
        ("/$/io.buoyant.http.subdomainOfPfx/a.b/foo/bar.a.b:9090/bah", "/foo/bar/bah"),
        ("/$/io.buoyant.http.domainToPath/foo.buoyant.io", "/io/buoyant/foo"),
        ("/$/io.buoyant.http.domainToPath/foo.buoyant.io/rest", "/io/buoyant/foo/rest"),
        ("/$/io.buoyant.http.domainToPathPfx/pfx/foo.buoyant.io", "/pfx/io/buoyant/foo"),
        ("/$/io.buoyant.http.domainToPathPfx/pfx/a%b", None),
        ("/$/io.buoyant.hostportPfx/ia/127.1:8080/etc", "/ia/127.1/8080/etc"),
        ("/$/io.buoyant.hostportPfx/ia/google.com:8180/etc", "/ia/google.com/8180/etc"),
        ("/$/io.buoyant.hostportPfx/ia/google.com:8180:abcdef/etc", None),
        ("/$/io.buoyant.hostportPfx/ia/google.com:http/etc", "/ia/google.com/http/etc"),
        ("/$/io.buoyant.hostportPfx/ia/127.1:http/etc", "/ia/127.1/http/etc"),
        ("/$/io.buoyant.hostportPfx/ia/google.com:http:abcdef/etc", None),
        ("/$/io.buoyant.hostportPfx/ia/google.com/etc", None),
        ("/$/io.buoyant.hostportPfx/ia/google.com:HTTP/etc", None),
        ("/$/io.buoyant.hostportPfx/ia/google.com:" + "p" * 64 + "/etc", None),
        ("/$/io.buoyant.porthostPfx/ia/127.1:8080/etc", "/ia/8080/127.1/etc"),
        ("/$/io.buoyant.porthostPfx/ia/127.1:http/etc", "/ia/http/127.1/etc"),
        ("/$/io.buoyant.porthostPfx/ia/my-svc.ns:grpc-web", "/ia/grpc-web/my-svc.ns"),
        ("/$/io.buoyant.rinet/12345", None),
        ("/$/io.buoyant.http.status/foo/bar.a.b/bah", None),
        ("/$/io.buoyant.http.status", None),
        ("/$/io.buoyant.http.status/99", None),
        ("/$/io.buoyant.http.status/600", None),
    ],
)
def test_global_rewrites(global_namer: GlobalNamer, path: str, expected: str | None) -> None:
    want = Ok(Neg) if expected is None else Ok(Leaf(P(expected)))
    assert global_namer.lookup(P(path)) == want


@pytest.mark.parametrize(
    ("path", "code", "residual"),
    [
        ("/$/io.buoyant.http.status/401/foo/bar.a.b/bah", 401, "/foo/bar.a.b/bah"),
        ("/$/io.buoyant.http.status/503", 503, "/"),
        ("/$/io.buoyant.http.status/100", 100, "/"),
        ("/$/io.buoyant.http.status/599/x", 599, "/x"),
    ],
)
def test_status_binds_to_a_synthetic_endpoint(
    global_namer: GlobalNamer, path: str, code: int, residual: str
) -> None:
    interp = ConfiguredNamersInterpreter([], global_namer)
    b = bound_leaf(first_bind(interp, "", path))
    assert b.id == P(f"/$/io.buoyant.http.status/{code}")
    assert b.residual == P(residual)
    addr = b.addr.value
    assert isinstance(addr, AddrBound)
    (address,) = addr.addresses
    assert address.meta[STATUS_META] == code


def test_status_fallback_route(global_namer: GlobalNamer) -> None:
    interp = ConfiguredNamersInterpreter([], global_namer)
    dtab = "/svc=>/$/io.buoyant.http.status/404;/svc=>/nothing"
    assert (
        str(bound_leaf(first_bind(interp, dtab, "/svc/web")).id) == "/$/io.buoyant.http.status/404"
    )


def test_hostport_rewrite_binds_through_the_dtab(global_namer: GlobalNamer) -> None:
    interp = ConfiguredNamersInterpreter([], global_namer)
    dtab = "/ip-hostport=>/$/inet;/svc=>/$/io.buoyant.hostportPfx/ip-hostport"
    b = bound_leaf(first_bind(interp, dtab, "/svc/127.1:8080/rest"))
    assert (str(b.id), str(b.residual)) == ("/$/inet/127.1/8080", "/rest")
    assert b.addr.value == AddrBound([Address("127.0.0.1", 8080)])


def test_linkerd_egress_dtab(global_namer: GlobalNamer) -> None:
    interp = ConfiguredNamersInterpreter([], global_namer)
    dtab = "/ph=>/$/io.buoyant.rinet;/svc=>/ph/80;/svc=>/$/io.buoyant.porthostPfx/ph"
    explicit = bound_leaf(first_bind(interp, dtab, "/svc/127.0.0.1:8443"))
    assert explicit.addr.value == AddrBound([Address("127.0.0.1", 8443)])
    default = bound_leaf(first_bind(interp, dtab, "/svc/127.0.0.1"))
    assert default.addr.value == AddrBound([Address("127.0.0.1", 80)])


def test_rinet_binds_host_and_port_with_residual(global_namer: GlobalNamer) -> None:
    interp = ConfiguredNamersInterpreter([], global_namer)
    b = bound_leaf(first_bind(interp, "", "/$/io.buoyant.rinet/12345/127.0.0.1/residual"))
    assert b.residual == P("/residual")
    assert b.addr.value == AddrBound([Address("127.0.0.1", 12345)])


def test_rinet_bound_id_is_the_rinet_path(global_namer: GlobalNamer) -> None:
    interp = ConfiguredNamersInterpreter([], global_namer)
    b = bound_leaf(first_bind(interp, "", "/$/io.buoyant.rinet/12345/127.0.0.1/residual"))
    assert b.id == P("/$/io.buoyant.rinet/12345/127.0.0.1")


def test_binding_through_registered_global_namers_converges(plugins: Plugins) -> None:
    raw = {name: reg.namer for name, reg in plugins.registry.global_namers.items()}
    interp = ConfiguredNamersInterpreter([], GlobalNamer(raw))
    lookup = interp.lookup
    calls: list[Path] = []

    def guarded(dtab: Dtab, path: Path) -> State[Any]:
        calls.append(path)
        if len(calls) > 1000:  # the bug: an endless recompute loop
            raise RuntimeError("binding does not converge")
        return lookup(dtab, path)

    interp.lookup = guarded  # type: ignore[method-assign]
    b = bound_leaf(first_bind(interp, "", "/$/io.buoyant.http.status/404/x"))
    assert b.id == P("/$/io.buoyant.http.status/404")
