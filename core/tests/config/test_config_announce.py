"""``servers[].announce`` and ``router.announcers``: a name no announcer answers is a located
config error; the linker announces after its servers listen (the name without the announcer's
prefix), and withdraws when draining starts, before the servers stop accepting."""

from __future__ import annotations

import asyncio
import textwrap

import pytest
import turnout
from turnout.announcer import Announcement, Announcer, announced_hosts
from turnout.config import AnnouncerConfig, RouterConfig, load_text, option
from turnout.errors import ConfigError
from turnout.linker import Linker
from turnout.naming import Path
from turnout.plugin_manager import load_plugins

EVENTS: list[str] = []


class RecordingAnnouncement(Announcement):
    def __init__(self, what: str) -> None:
        self.what = what

    async def withdraw(self) -> None:
        EVENTS.append(f"withdraw {self.what}")


class RecordingAnnouncer(Announcer):
    scheme = "test"

    async def announce(self, host: str, port: int, name: Path) -> Announcement:
        what = f"{host}:{port} {name.show}"
        EVENTS.append(f"announce {what}")
        return RecordingAnnouncement(what)

    async def close(self) -> None:
        EVENTS.append("close announcer")


class RecordingAnnouncerConfig(AnnouncerConfig):
    kind = "test.announcer"
    note: str = option("", doc="Unused.")

    def new_announcer(self, ctx):
        return RecordingAnnouncer()


class FakeRuntime:
    def __init__(self, config: RouterConfig) -> None:
        self.label = config.effective_label
        self.config = config
        self.interpreter = None
        self.dtab = config.dtab

    async def start(self) -> None:
        EVENTS.append("listen")

    def stop_accepting(self) -> None:
        EVENTS.append("stop accepting")

    async def drain(self) -> None:
        EVENTS.append("drain")

    async def close(self) -> None:
        EVENTS.append("close router")

    def servers(self) -> list[tuple[str, int]]:
        return [(s.ip, self.config.server_port(s)) for s in self.config.servers]

    def client_state(self) -> dict:
        return {}


class FakeRouterConfig(RouterConfig):
    kind = "fake"
    default_port = 4140

    def new_router(self, ctx):
        return FakeRuntime(self)


class Plugin:
    @staticmethod
    @turnout.hookimpl
    def turnout_register_announcers():
        return [RecordingAnnouncerConfig]

    @staticmethod
    @turnout.hookimpl
    def turnout_register_protocols():
        return [FakeRouterConfig]


@pytest.fixture(scope="module")
def plugins():
    return load_plugins({}, autoload=False, extra=[Plugin])


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def test_announcer_kind_is_registered_in_its_family(plugins):
    assert "test.announcer" in plugins.registry.kinds("announcer")
    info = next(i for i in plugins.infos if i.name == "Plugin")
    assert ("announcer", "test.announcer") in info.kinds


def test_a_name_no_announcer_answers_is_a_located_error(plugins):
    text = y(
        """
        routers:
        - protocol: fake
          announcers:
          - kind: test.announcer
          servers:
          - port: 4140
            announce:
            - /#/test.announcer/web
            - /#/io.l5d.serversets/discovery/web
        """
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, "l5d.yaml", registry=plugins.registry, environ={})
    [problem] = info.value.problems
    assert (problem.line, problem.column, problem.path) == (
        9,
        7,
        "routers[0].servers[0].announce[1]",
    )
    assert problem.message.startswith(
        "no announcer of router 'fake' announces /#/io.l5d.serversets/discovery/web"
    ), problem.message
    assert "/#/test.announcer" in problem.message


def test_announce_without_announcers_is_an_error_and_no_longer_a_warning(plugins):
    text = y(
        """
        routers:
        - protocol: fake
          servers:
          - announce: [/#/io.l5d.serversets/web]
        """
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, "l5d.yaml", registry=plugins.registry, environ={})
    [problem] = info.value.problems
    assert problem.path == "routers[0].servers[0].announce[0]"
    assert "add router.announcers" in problem.message


def test_configured_prefix_and_lifecycle_order(plugins):
    text = y(
        """
        admin: {port: 0}
        routers:
        - protocol: fake
          announcers:
          - kind: test.announcer
            prefix: /disco
          servers:
          - port: 4141
            announce: [/#/disco/prod/web]
        """
    )
    loaded = load_text(text, "l5d.yaml", registry=plugins.registry, environ={})
    assert loaded.warnings == []  # announce is implemented: no "not implemented yet"
    linker = Linker.build(loaded, plugins)
    EVENTS.clear()

    async def main() -> int:
        task = asyncio.create_task(linker.serve(install_signals=False))
        while not linker.ready:
            await asyncio.sleep(0.01)
        assert [a.name.show for a in linker.announcements] == ["/#/disco/prod/web"]
        linker.request_shutdown()
        return await task

    assert asyncio.run(main()) == 0
    assert EVENTS == [
        "listen",
        "announce 127.0.0.1:4141 /prod/web",
        "withdraw 127.0.0.1:4141 /prod/web",
        "stop accepting",
        "drain",
        "close router",
        "close announcer",
    ]


def test_any_address_is_announced_at_the_hosts_addresses():
    assert announced_hosts("10.0.0.5") == ["10.0.0.5"]
    hosts = announced_hosts("0.0.0.0")
    assert hosts and all(":" not in h for h in hosts)
    assert "0.0.0.0" not in hosts
