"""The config class of ``io.l5d.influxdb`` (registered at start-up; imports nothing heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from turnout.api import BuildContext, TelemeterConfig

if TYPE_CHECKING:
    from .telemeter import InfluxDbTelemeter

#: the admin path Linkerd 1 serves (not configurable there either)
PATH = "/admin/metrics/influxdb"


class InfluxDbConfig(TelemeterConfig):
    """Serves every metric of the tree in InfluxDB line protocol at
    ``/admin/metrics/influxdb``, for Telegraf's ``inputs.http`` (or ``inputs.exec``) to pull,
    with Linkerd 1's measurement names and tags (``rt:client,client=#/io.l5d.fs/web,host=...,
    rt=http requests=12``). Linkerd's kind has no options; neither has this one."""

    kind = "io.l5d.influxdb"

    def new_telemeter(self, ctx: BuildContext) -> InfluxDbTelemeter:
        from .telemeter import InfluxDbTelemeter

        return InfluxDbTelemeter(ctx.metrics)
