"""Built-in interpreters: ``default`` and ``io.l5d.fs`` (a dtab read from a watched file)."""

from __future__ import annotations

import logging
from pathlib import Path as FsPath
from typing import Any

from ..config.model import InterpreterConfig
from ..config.schema import option
from ..context import BuildContext
from ..hookspecs import hookimpl
from ..naming import (
    Activity,
    ConfiguredNamersInterpreter,
    Dtab,
    DtabFileInterpreter,
    Failed,
    NameInterpreter,
    Ok,
    Pending,
    State,
    derive_activity,
)
from .watch import NOT_READ, PollingWatcher

log = logging.getLogger("turnout.interpreter")


class DefaultInterpreterConfig(InterpreterConfig):
    """Binds names through the router's dtab, the configured namers and the ``/$`` namers."""

    kind = "default"

    def new_interpreter(self, ctx: BuildContext) -> NameInterpreter:
        return ConfiguredNamersInterpreter(ctx.namers, ctx.global_namer)


class FsInterpreterConfig(InterpreterConfig):
    """Like ``default``, with a dtab read from a file that is watched: editing the file changes
    routing without a restart. The file's dtab comes first; the router's ``dtab`` entries and
    per-request overrides are appended (so they win). A file that becomes unreadable or
    invalid keeps the last good dtab in force (the error is logged and shown in the admin);
    read errors other than the file being gone (out of file descriptors, permissions) are
    retried at every poll and counted in ``rt/<router>/interpreter/io.l5d.fs/errors``."""

    kind = "io.l5d.fs"
    dtab_file: str = option(doc="Path of the dtab file.")

    def new_interpreter(self, ctx: BuildContext) -> NameInterpreter:
        router = getattr(ctx, "router", None)
        label = router.effective_label if router is not None else None
        watcher = PollingWatcher(
            name=f"{self.kind} interpreter" + (f" of router '{label}'" if label else "")
        )
        metrics = getattr(ctx, "metrics", None)
        if label is not None and metrics is not None:
            scope = ("rt", label, "interpreter", str(self.kind))
            metrics.derived_counter(*scope, "errors", fn=lambda: watcher.errors)
            metrics.gauge(*scope, "stale_seconds", fn=watcher.stalest)
        return DtabFileInterpreter(
            ctx.namers, ctx.global_namer, watched_dtab(watcher, self.dtab_file)
        )


def watched_dtab(watcher: PollingWatcher, location: str) -> Activity[Dtab]:
    """An Activity of the dtab in ``location``: Failed until a valid dtab was read once, then
    the latest valid one."""
    content = watcher.file(FsPath(location))
    last_good: list[Dtab] = []
    errors: list[str] = []

    def compute() -> State[Dtab]:
        data = content.sample()
        if data is NOT_READ:
            return Pending
        try:
            if data is None:
                raise ValueError("no such file")
            if isinstance(data, OSError):
                raise ValueError(str(data))
            dtab = Dtab.read(data.decode("utf-8"))
        except ValueError as e:
            message = f"dtab file {location}: {e}"
            if not errors or errors[-1] != message:
                log.warning("%s%s", message, "; keeping the last good dtab" if last_good else "")
            errors[:] = [message]
            return Ok(last_good[0]) if last_good else Failed(ValueError(message))
        errors.clear()
        last_good[:] = [dtab]
        return Ok(dtab)

    return derive_activity(compute)


@hookimpl
def turnout_register_interpreters() -> list[type[InterpreterConfig]]:
    return [DefaultInterpreterConfig, FsInterpreterConfig]


__all__: list[Any] = ["DefaultInterpreterConfig", "FsInterpreterConfig", "watched_dtab"]
