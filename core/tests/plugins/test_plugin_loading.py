"""Loading plugins: built-ins through the hooks, entry points, the environment switches, and
the errors a broken plugin causes (each naming the plugin and how to fix it)."""

from __future__ import annotations

import pytest
import turnout
from turnout.builtin.namers import FsNamerConfig
from turnout.config import InterpreterConfig, NamerConfig, load_config
from turnout.errors import ConfigError, ConfigProblem, PluginError
from turnout.plugin_manager import BUILTIN_PLUGINS, load_plugins

NO_AUTOLOAD = {"TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}

PLUGIN_SOURCE = """
    import turnout
    from turnout.config import NamerConfig

    class ShinyNamerConfig(NamerConfig):
        kind = "com.example.shiny"

    @turnout.hookimpl
    def turnout_register_namers():
        return ShinyNamerConfig
"""


def plugin(name="TestPlugin", **hooks):
    """A plugin object called ``name`` whose hookimpls are ``hooks`` (hook name → function)."""
    return type(name, (), {n: staticmethod(turnout.hookimpl(f)) for n, f in hooks.items()})


def names(plugins):
    return [info.name for info in plugins.infos]


# -- built-ins ----------------------------------------------------------------------------------


def test_builtins_are_registered_through_the_hooks():
    plugins = load_plugins({}, autoload=False)
    builtins = [info for info in plugins.infos if info.builtin]
    assert [info.module for info in builtins] == list(BUILTIN_PLUGINS)
    for info in builtins:
        assert (info.distribution, info.version) == ("turnout", turnout.__version__)
        assert plugins.manager.get_plugin(info.name) is not None
    kinds = {kind for info in builtins for kind in info.kinds}
    assert {
        ("namer", "io.l5d.fs"),
        ("namer", "io.l5d.rewrite"),
        ("interpreter", "default"),
        ("interpreter", "io.l5d.fs"),
        ("load balancer", "p2c"),
        ("failure accrual", "io.l5d.consecutiveFailures"),
        ("global namer", "/$/io.buoyant.rinet"),
        ("global namer", "/$/io.buoyant.http.status"),
    } <= kinds
    by_module = {info.module: info for info in builtins}
    assert by_module["turnout.builtin.namers"].hooks == ["turnout_register_namers"]
    assert ("namer", "io.l5d.fs") in by_module["turnout.builtin.namers"].kinds


def test_builtin_kinds_come_from_calling_the_hook():
    plugins = load_plugins({}, autoload=False)
    results = plugins.hook.turnout_register_namers()
    assert any(FsNamerConfig in r for r in results)
    reg = plugins.registry.registration("namer", "io.l5d.fs")
    assert reg is not None and reg.cls is FsNamerConfig
    assert reg.hook == "turnout_register_namers"
    assert reg.provider.plugin == "turnout.builtin.namers"
    assert reg.provider.distribution == "turnout"


def test_infos_serialise_for_the_plugins_command():
    info = load_plugins({}, autoload=False).infos[0].as_dict()
    assert info["name"] == "turnout.builtin.namers"
    assert info["builtin"] is True
    assert {"family": "namer", "kind": "io.l5d.fs"} in info["kinds"]


def test_global_namers_are_in_the_registry():
    registry = load_plugins({}, autoload=False).registry
    assert "io.buoyant.rinet" in registry.global_namers
    assert registry.global_namers["io.buoyant.rinet"].provider.distribution == "turnout"


# -- registration errors --------------------------------------------------------------------------


def test_duplicate_kind_is_refused_naming_both_providers():
    class OtherFsConfig(NamerConfig):
        kind = "io.l5d.fs"

    with pytest.raises(PluginError) as info:
        load_plugins(
            {}, autoload=False, extra=[plugin(turnout_register_namers=lambda: OtherFsConfig)]
        )
    message = str(info.value)
    assert "namer kind 'io.l5d.fs' is provided twice" in message
    assert "turnout 0.1.0 (plugin 'turnout.builtin.namers')" in message
    assert "turnout.builtin.namers:FsNamerConfig" in message
    assert "plugin 'TestPlugin'" in message
    assert "OtherFsConfig" in message
    assert "TURNOUT_DISABLED_PLUGINS" in message


def test_duplicate_kind_between_two_outside_plugins():
    class A(NamerConfig):
        kind = "com.example.same"

    class B(NamerConfig):
        kind = "com.example.same"

    first = plugin("first_plugin", turnout_register_namers=lambda: [A])
    second = plugin("second_plugin", turnout_register_namers=lambda: [B])
    with pytest.raises(PluginError) as info:
        load_plugins({}, autoload=False, extra=[first, second])
    assert str(info.value).startswith(
        "namer kind 'com.example.same' is provided twice: by plugin 'first_plugin' "
    )
    assert "and by plugin 'second_plugin' " in str(info.value)


def test_same_kind_in_different_families_is_fine():
    class FsInterp(InterpreterConfig):
        kind = "com.example.both"

    class FsNamer(NamerConfig):
        kind = "com.example.both"

    plugins = load_plugins(
        {},
        autoload=False,
        extra=[
            plugin(
                turnout_register_namers=lambda: [FsNamer],
                turnout_register_interpreters=lambda: FsInterp,
            )
        ],
    )
    assert plugins.registry.config_class("namer", "com.example.both") is FsNamer
    assert plugins.registry.config_class("interpreter", "com.example.both") is FsInterp


class NotAConfig:
    kind = "com.example.nope"


class WrongFamily(InterpreterConfig):
    kind = "com.example.interp"


@pytest.mark.parametrize(
    "returned",
    [
        pytest.param(NotAConfig, id="plain-class"),
        pytest.param(["io.l5d.fs"], id="a-kind-name"),
        pytest.param(FsNamerConfig(root_dir="/srv"), id="a-config-instance"),
        pytest.param(WrongFamily, id="config-class-of-another-family"),
        pytest.param(lambda: None, id="a-function"),
    ],
)
def test_registration_hook_returning_a_non_config_class_is_refused(returned):
    with pytest.raises(PluginError) as info:
        load_plugins({}, autoload=False, extra=[plugin(turnout_register_namers=lambda: returned)])
    assert "from turnout_register_namers; expected subclasses of turnout.config.NamerConfig" in str(
        info.value
    )
    assert "plugin 'TestPlugin'" in str(info.value)


def test_config_class_without_kind_is_refused():
    class NoKind(NamerConfig):
        pass

    with pytest.raises(PluginError, match=r"does not set both a family .* and a kind"):
        load_plugins({}, autoload=False, extra=[plugin(turnout_register_namers=lambda: NoKind)])


def test_hook_that_raises_is_named():
    def broken():
        raise RuntimeError("cannot reach the license server")

    with pytest.raises(PluginError) as info:
        load_plugins({}, autoload=False, extra=[plugin(turnout_register_namers=broken)])
    assert str(info.value) == (
        "plugin 'TestPlugin' raised in turnout_register_namers: RuntimeError: cannot reach the "
        "license server"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_misspelled_hook_name_is_a_plugin_error_naming_it():
    def register():
        return [FsNamerConfig]

    with pytest.raises(PluginError) as info:
        load_plugins({}, autoload=False, extra=[plugin(turnout_register_namer=register)])
    assert "turnout_register_namer" in str(info.value)
    assert "turnout.hookspecs" in str(info.value)


def test_hookimpl_with_unknown_argument_is_a_plugin_error():
    with pytest.raises(PluginError, match="turnout_configure"):
        load_plugins({}, autoload=False, extra=[plugin(turnout_configure=lambda cfg: None)])


def test_hookimpl_may_take_a_subset_of_the_arguments(tmp_path, fake_http_on_path):
    import turnout_fake_http

    calls = []
    configure = plugin(turnout_configure=lambda: calls.append("configured"))
    plugins = load_plugins({}, autoload=False, extra=[turnout_fake_http, configure])
    (tmp_path / "bad.yaml").write_text("routers: []\n")
    with pytest.raises(ConfigError):
        load_config(str(tmp_path / "bad.yaml"), plugins, environ={})
    assert calls == []  # hooks see valid configurations only
    (tmp_path / "good.yaml").write_text("routers:\n- protocol: http\n  servers: [{port: 1}]\n")
    load_config(str(tmp_path / "good.yaml"), plugins, environ={})
    assert calls == ["configured"]


def test_configure_hook_can_refuse_a_configuration(tmp_path, fake_http_on_path):
    import turnout_fake_http

    def refuse(config):
        if len(config.routers) > 1:
            raise ConfigError([ConfigProblem("one router only, please")])

    plugins = load_plugins(
        {}, autoload=False, extra=[turnout_fake_http, plugin(turnout_configure=refuse)]
    )
    one = "routers:\n- protocol: http\n  servers: [{port: 1}]\n"
    two = one + "- protocol: http\n  label: b\n  servers: [{port: 2}]\n"
    (tmp_path / "one.yaml").write_text(one)
    (tmp_path / "two.yaml").write_text(two)
    assert load_config(str(tmp_path / "one.yaml"), plugins, environ={}).config.routers
    with pytest.raises(ConfigError, match="one router only"):
        load_config(str(tmp_path / "two.yaml"), plugins, environ={})


# -- entry points and switches -----------------------------------------------------------------


def test_entry_point_plugin_is_loaded_with_its_distribution(make_dist):
    make_dist("turnout-shiny", "1.2.3", "shiny", "turnout_shiny_plugin", PLUGIN_SOURCE)
    plugins = load_plugins({"TURNOUT_PLUGINS": "turnout-shiny"})
    [info] = [i for i in plugins.infos if not i.builtin]
    assert (info.name, info.module) == ("shiny", "turnout_shiny_plugin")
    assert (info.distribution, info.version) == ("turnout-shiny", "1.2.3")
    assert info.kinds == [("namer", "com.example.shiny")]
    reg = plugins.registry.registration("namer", "com.example.shiny")
    assert str(reg.provider) == "turnout-shiny 1.2.3 (plugin 'shiny')"


def test_allow_list_accepts_the_entry_point_name_too(make_dist):
    make_dist("turnout-shiny", "1.2.3", "shiny", "turnout_shiny_plugin", PLUGIN_SOURCE)
    assert "shiny" in names(load_plugins({"TURNOUT_PLUGINS": "shiny"}))


def test_autoload_can_be_disabled(make_dist):
    make_dist("turnout-shiny", "1.2.3", "shiny", "turnout_shiny_plugin", PLUGIN_SOURCE)
    only = {"TURNOUT_PLUGINS": "turnout-shiny"}
    assert "shiny" in names(load_plugins(only))
    for value in ("1", "true", "yes"):
        plugins = load_plugins({**only, "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": value})
        assert "shiny" not in names(plugins)
        assert plugins.registry.config_class("namer", "com.example.shiny") is None
        assert all(info.builtin for info in plugins.infos)
    assert "shiny" in names(load_plugins({**only, "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "0"}))


def test_autoload_false_argument_wins_over_the_environment(make_dist):
    make_dist("turnout-shiny", "1.2.3", "shiny", "turnout_shiny_plugin", PLUGIN_SOURCE)
    assert "shiny" not in names(load_plugins({"TURNOUT_PLUGINS": "shiny"}, autoload=False))


def test_disabled_plugins_are_skipped(make_dist):
    make_dist("turnout-shiny", "1.2.3", "shiny", "turnout_shiny_plugin", PLUGIN_SOURCE)
    sparkly = PLUGIN_SOURCE.replace("shiny", "sparkly").replace("Shiny", "Sparkly")
    make_dist("turnout-sparkly", "2.0", "sparkly", "turnout_sparkly_plugin", sparkly)
    only = {"TURNOUT_PLUGINS": "turnout-shiny,turnout-sparkly"}
    for value in ("turnout-shiny", "shiny", "other, shiny"):
        loaded = names(load_plugins({**only, "TURNOUT_DISABLED_PLUGINS": value}))
        assert "shiny" not in loaded
        assert "sparkly" in loaded


def test_allow_list_naming_a_missing_plugin_is_an_error(make_dist):
    make_dist("turnout-shiny", "1.2.3", "shiny", "turnout_shiny_plugin", PLUGIN_SOURCE)
    with pytest.raises(PluginError) as info:
        load_plugins({"TURNOUT_PLUGINS": "turnout-shiny,turnout-nonesuch"})
    message = str(info.value)
    assert message.startswith(
        "TURNOUT_PLUGINS names turnout-nonesuch, but no such turnout plugin is installed"
    )
    assert "turnout-shiny" in message.split("installed:")[1]


def test_entry_point_that_fails_to_import_names_distribution_and_version(make_dist):
    make_dist(
        "turnout-broken", "0.0.1", "broken", "turnout_broken_plugin", "import no_such_dependency\n"
    )
    with pytest.raises(PluginError) as info:
        load_plugins({"TURNOUT_PLUGINS": "turnout-broken"})
    message = str(info.value)
    assert "entry point 'broken = turnout_broken_plugin'" in message
    assert "of distribution turnout-broken 0.0.1 failed to import" in message
    assert "ModuleNotFoundError: No module named 'no_such_dependency'" in message
    assert "TURNOUT_DISABLED_PLUGINS=broken" in message


def test_a_disabled_broken_plugin_does_not_stop_the_others(make_dist):
    make_dist("turnout-broken", "0.0.1", "broken", "turnout_broken_plugin", "raise SystemError\n")
    make_dist("turnout-shiny", "1.2.3", "shiny", "turnout_shiny_plugin", PLUGIN_SOURCE)
    plugins = load_plugins(
        {
            "TURNOUT_PLUGINS": "turnout-broken,turnout-shiny",
            "TURNOUT_DISABLED_PLUGINS": "turnout-broken",
        }
    )
    assert "shiny" in names(plugins)
    assert "broken" not in names(plugins)


def test_plugin_modules_switch_loads_a_module(fake_http_on_path):
    plugins = load_plugins({"TURNOUT_PLUGIN_MODULES": fake_http_on_path, **NO_AUTOLOAD})
    [info] = [i for i in plugins.infos if i.name == fake_http_on_path]
    assert (info.distribution, info.version, info.builtin) == (None, None, False)
    assert info.kinds == [("router", "http"), ("http identifier", "io.l5d.header.token")]
    assert plugins.registry.config_class("router", "http").default_port == 4140


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import no_such_dependency_xyz\n", "ModuleNotFoundError: No module named"),
        ("raise RuntimeError('bad plugin')\n", "RuntimeError: bad plugin"),
        ("def broken(:\n", "SyntaxError"),
    ],
)
def test_plugin_modules_switch_with_an_import_error_names_the_module(site_dir, source, error):
    (site_dir / "turnout_test_broken_mod.py").write_text(source)
    with pytest.raises(PluginError) as info:
        load_plugins({"TURNOUT_PLUGIN_MODULES": "turnout_test_broken_mod", **NO_AUTOLOAD})
    message = str(info.value)
    assert message.startswith(
        "TURNOUT_PLUGIN_MODULES names 'turnout_test_broken_mod', which failed to import: "
    )
    assert error in message


def test_plugin_modules_switch_with_a_missing_module():
    with pytest.raises(PluginError, match="'turnout_no_such_module_xyz', which failed to import"):
        load_plugins({"TURNOUT_PLUGIN_MODULES": "turnout_no_such_module_xyz", **NO_AUTOLOAD})
