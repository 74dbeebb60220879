"""The ``io.l5d.consul`` announcer (a turnout extension: Linkerd 1 has only ``io.l5d.serversets``).

``servers[].announce: [/#/io.l5d.consul/<dc>/<service>]`` (the namer's path format) registers
the server with the local Consul agent as an instance of ``<service>``::

    PUT /v1/agent/service/register
    {"ID": "<service>-<host>-<port>", "Name": "<service>", "Address": "<host>", "Port": <port>,
     "Tags": [...], "Check": {"TTL": "<ttl>s", "DeregisterCriticalServiceAfter": "..."}}

and deregisters it (``PUT /v1/agent/service/deregister/<id>``) when turnout starts draining.
An agent registers services in its own datacenter: ``<dc>`` is matched against nothing (use
``.local``, as with the namer). Without ``ttlMs`` the registration has no check (the agent
keeps it until it is deregistered); with ``ttlMs`` it carries a TTL check that turnout passes
every third of the TTL (``PUT /v1/agent/check/pass/service:<id>``), so that a turnout that
was killed turns critical, and is removed after ``deregisterCriticalServiceAfterMs``. A
registration the agent forgot (a pass answered 404) is made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
from turnout.api import Announcement, Announcer, Path

log = logging.getLogger("turnout.announcer.consul")

RETRY_MAX_DELAY = 5.0


class ConsulAnnouncer(Announcer):
    """Registrations with one Consul agent, over one aiohttp session."""

    scheme = "consul"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str | None = None,
        tags: list[str] | None = None,
        ttl: float | None = None,
        deregister_after: float | None = None,
    ) -> None:
        self.base = f"http://{host}:{port}"
        self.token = token
        self.tags = list(tags or [])
        self.ttl = ttl
        self.deregister_after = deregister_after
        self._session: aiohttp.ClientSession | None = None
        self.registrations: list[ConsulRegistration] = []

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"X-Consul-Token": self.token} if self.token else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            )
        return self._session

    async def put(self, path: str, body: Any = None) -> int:
        async with self.session().put(self.base + path, json=body) as response:
            text = await response.text()
            if response.status >= 400 and response.status != 404:
                raise RuntimeError(f"{path}: {response.status} {text.strip()[:200]}")
            return response.status

    async def announce(self, host: str, port: int, name: Path) -> ConsulRegistration:
        if len(name) == 0:
            raise ValueError("an io.l5d.consul announcement needs /<dc>/<service>")
        service = name.labels()[-1]
        registration = ConsulRegistration(self, service, host, port)
        self.registrations.append(registration)
        registration.start()
        return registration

    async def close(self) -> None:
        for registration in list(self.registrations):
            await registration.withdraw()
        if self._session is not None:
            await self._session.close()
            self._session = None


class ConsulRegistration(Announcement):
    def __init__(self, announcer: ConsulAnnouncer, service: str, host: str, port: int) -> None:
        self.announcer = announcer
        self.service = service
        self.host = host
        self.port = port
        self.service_id = f"{service}-{host}-{port}"
        self.registered = False
        self.registrations = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._withdrawn = False

    def definition(self) -> dict[str, Any]:
        a = self.announcer
        body: dict[str, Any] = {
            "ID": self.service_id,
            "Name": self.service,
            "Address": self.host,
            "Port": self.port,
            "Tags": a.tags,
        }
        if a.ttl is not None:
            check: dict[str, Any] = {"TTL": f"{a.ttl:g}s", "Status": "passing"}
            if a.deregister_after is not None:
                check["DeregisterCriticalServiceAfter"] = f"{a.deregister_after:g}s"
            body["Check"] = check
        return body

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        a = self.announcer
        delay = 0.1
        while True:
            try:
                if not self.registered:
                    await a.put("/v1/agent/service/register", self.definition())
                    self.registered = True
                    self.registrations += 1
                    self.last_error = None
                    log.info(
                        "registered %s (%s) with Consul %s", self.service_id, self.service, a.base
                    )
                if a.ttl is None:
                    return
                await asyncio.sleep(a.ttl / 3)
                status = await a.put(f"/v1/agent/check/pass/service:{self.service_id}")
                if status == 404:  # the agent forgot the registration
                    self.registered = False
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning(
                    "Consul registration of %s: %s; retrying", self.service_id, self.last_error
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)

    async def withdraw(self) -> None:
        if self._withdrawn:
            return
        self._withdrawn = True
        with contextlib.suppress(ValueError):
            self.announcer.registrations.remove(self)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            async with asyncio.timeout(3):
                await self.announcer.put(f"/v1/agent/service/deregister/{self.service_id}")
            log.info("deregistered %s from Consul %s", self.service_id, self.announcer.base)
        except Exception as e:
            log.warning("deregistering %s failed: %s: %s", self.service_id, type(e).__name__, e)
        self.registered = False

    def state(self) -> dict[str, Any]:
        return {
            "serviceId": self.service_id,
            "registered": self.registered,
            "registrations": self.registrations,
            "lastError": self.last_error,
        }
