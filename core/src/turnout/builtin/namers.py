"""Built-in namers: ``io.l5d.fs`` (files of addresses) and ``io.l5d.rewrite``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path as FsPath
from typing import Any

from ..config.model import NamerConfig
from ..config.schema import option
from ..context import BuildContext
from ..hookspecs import hookimpl
from ..metrics import MetricsTree
from ..naming import (
    Activity,
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    AddrPending,
    Failed,
    Leaf,
    NameBound,
    Namer,
    NameTree,
    Neg,
    Ok,
    Path,
    PathMatcher,
    Pending,
    State,
    Var,
    derive_activity,
)
from ..naming.addr import WEIGHT_KEY
from ..naming.namer import Name
from .watch import NOT_READ, FileContent, PollingWatcher, list_dir

# ---------------------------------------------------------------------------------------------
# io.l5d.fs
# ---------------------------------------------------------------------------------------------


class FsNamerConfig(NamerConfig):
    """Service addresses from files: ``<rootDir>/<service>`` holds one ``host port`` per line.

    A line may end with ``* <weight>`` (for example ``10.0.0.1 8080 * 0.5``) to give that
    endpoint a load-balancing weight; ``#`` starts a comment. Files are watched: edits, new
    files and removed files take effect within ``pollIntervalMs``. A removed file makes the
    name ``Neg`` (the next namer or dtab alternative is tried). Subdirectories are namespaces:
    ``/#/io.l5d.fs/team/web`` reads ``<rootDir>/team/web``. A file or directory that cannot be
    read for another reason than being gone (out of file descriptors, permissions) keeps its
    last good content: the error is logged, counted (``namer/<prefix>/errors``) and shown in
    ``/namer_state``, and the read is retried at every poll.
    """

    kind = "io.l5d.fs"
    root_dir: str = option(doc="Directory of service files (relative paths: to the working dir).")
    poll_interval_ms: int = option(
        250, min=10, max=60_000, doc="How often watched files are checked (turnout extension)."
    )

    def new_namer(self, ctx: BuildContext) -> Namer:
        id_prefix = Path.of("#") + self.effective_prefix
        return FsNamer(
            FsPath(self.root_dir),
            id_prefix,
            PollingWatcher(
                self.poll_interval_ms / 1000, name=f"{self.kind} namer {self.effective_prefix}"
            ),
            metrics=ctx.metrics,
        )


class FsNamer(Namer):
    """The ``io.l5d.fs`` namer (see :class:`FsNamerConfig`)."""

    def __init__(
        self,
        root: FsPath,
        id_prefix: Path,
        watcher: PollingWatcher,
        *,
        metrics: MetricsTree | None = None,
    ) -> None:
        self.root = root
        self.id_prefix = id_prefix
        self.watcher = watcher
        self._lookups: dict[Path, Activity[NameTree[Name]]] = {}
        self._addrs: dict[FsPath, Var[Addr]] = {}
        self._errors: dict[str, str] = {}
        self._updated: dict[str, float] = {}
        if metrics is not None:  # the scope discovery namers use: namer/#/io.l5d.fs/...
            scope = ("namer", *(label.decode("utf-8", "replace") for label in id_prefix.elems))
            metrics.derived_counter(*scope, "errors", fn=lambda: watcher.errors)
            metrics.gauge(*scope, "stale_seconds", fn=watcher.stalest)

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        act = self._lookups.get(path)
        if act is None:
            if len(self._lookups) > 10_000:
                self._lookups = {p: a for p, a in self._lookups.items() if a.observed}
            act = self._lookups[path] = derive_activity(lambda: self._resolve(path))
        return act

    def _resolve(self, path: Path) -> State[NameTree[Name]]:
        directory = self.root
        for depth in range(len(path)):
            name = _file_name(path[depth])
            if name is None:
                return Ok(Neg)
            entries = self.watcher.dir(directory).sample()
            if entries is NOT_READ:
                return Pending
            if entries is None:
                return Ok(Neg)
            if isinstance(entries, OSError):  # never listed yet: fail fast with the error
                return Failed(
                    OSError(
                        entries.errno,
                        f"io.l5d.fs: cannot list {directory}: {entries.strerror or entries}",
                    )
                )
            if (name, False) in entries:
                bound_id = self.id_prefix + path.take(depth + 1)
                addr = self._addr(directory / name, str(path.take(depth + 1)))
                return Ok(Leaf(NameBound(bound_id, addr, path.drop(depth + 1))))
            if (name, True) not in entries:
                return Ok(Neg)
            directory = directory / name
        return Ok(Neg)

    def _addr(self, file: FsPath, name: str) -> Var[Addr]:
        var = self._addrs.get(file)
        if var is None:
            content = self.watcher.file(file)
            last: list[Addr] = []

            def parse() -> Addr:
                data = content.sample()
                if data is NOT_READ:
                    return AddrPending
                addr = self._parse(data, name, last[0] if last else None)
                if isinstance(addr, AddrBound) and isinstance(data, bytes):
                    last[:] = [addr]  # only real, valid content is "last good"
                return addr

            from ..naming import derive

            var = self._addrs[file] = derive(parse)
        return var

    def _parse(self, data: FileContent, name: str, previous: Addr | None) -> Addr:
        self._updated[name] = time.time()
        if data is None:
            return AddrBound()  # the file vanished; the lookup turns Neg at the same time
        try:
            if isinstance(data, OSError):
                raise ValueError(f"cannot read: {data}")
            addr = parse_addresses(data.decode("utf-8"))
        except ValueError as e:
            self._errors[name] = str(e)
            if isinstance(previous, AddrBound):
                return previous  # keep serving the last good addresses
            return AddrFailed(f"{self.root / name.lstrip('/')}: {e}")
        self._errors.pop(name, None)
        return addr

    def bound_names(self) -> Iterable[Path]:
        watch = self.watcher.dir(self.root)
        entries = watch.value if watch.observed else list_dir(self.root)
        if isinstance(entries, OSError) or not entries:
            return []
        return sorted(self.id_prefix + Path.of(n) for n, is_dir in entries if not is_dir)

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rootDir": str(self.root), "files": {}}
        now = time.time()
        for file, var in self._addrs.items():
            key = "/" + str(file.relative_to(self.root))
            value = var.value
            fresh = self.watcher.freshness(file)
            failing = fresh is not None and fresh.error_since is not None
            out["files"][key] = {
                "addresses": [str(a) for a in value.sorted()]
                if isinstance(value, AddrBound)
                else None,
                "lastUpdate": self._updated.get(key),
                "lastError": self._errors.get(key)
                or (fresh.last_error if failing and fresh is not None else None),
            }
            if failing and fresh is not None:  # read errors: the addresses shown are stale
                out["files"][key]["errorSince"] = fresh.error_since
                out["files"][key]["staleSeconds"] = round(fresh.stale_seconds(now), 3)
        failing_dirs = {
            str(path): fresh.freshness(now)
            for path, fresh in self.watcher.failing().items()
            if path not in self._addrs
        }
        if failing_dirs:
            out["unreadable"] = failing_dirs
        return out


def _file_name(label: bytes) -> str | None:
    """A path label as a file name, or None when it cannot name a file safely."""
    try:
        name = label.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if name in (".", "..") or "/" in name or "\0" in name or name.startswith("."):
        return None
    return name


def parse_addresses(text: str) -> AddrBound:
    """Parse ``host port [* weight]`` lines; raises ValueError naming the bad line."""
    addresses: list[Address] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        weight: float | None = None
        if len(parts) == 4 and parts[2] == "*":
            try:
                weight = float(parts[3])
            except ValueError:
                raise ValueError(f"line {number}: bad weight {parts[3]!r} in {raw!r}") from None
            if not weight >= 0:
                raise ValueError(f"line {number}: weight must be >= 0 in {raw!r}")
            parts = parts[:2]
        if len(parts) != 2:
            raise ValueError(f"line {number}: expected 'host port [* weight]', got {raw!r}")
        host, port_text = parts
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= 65535:
            raise ValueError(f"line {number}: bad port {port_text!r} in {raw!r}")
        meta = {WEIGHT_KEY: weight} if weight is not None else None
        addresses.append(Address(host, int(port_text), meta))
    return AddrBound(addresses)


# ---------------------------------------------------------------------------------------------
# io.l5d.rewrite
# ---------------------------------------------------------------------------------------------


class RewriteNamerConfig(NamerConfig):
    """Rewrites names by pattern: ``pattern: /{service}/api`` and ``name: /srv/{service}``
    turn ``/#/<prefix>/users/api`` into ``/srv/users``, which is bound again through the dtab.
    ``*`` matches any one segment; ``{var}`` captures (greedy, may be part of a segment)."""

    kind = "io.l5d.rewrite"
    pattern: PathMatcher = option(doc="Pattern matched against the path after the prefix.")
    name: str = option(doc="The new name; {var} is replaced by what the pattern captured.")

    def check(self) -> Iterable[tuple[str, str]]:
        if self.prefix is None:
            yield "prefix", "the io.l5d.rewrite namer needs a 'prefix' (for example /rewrite)"
        unknown = _template_vars(self.name) - set(self.pattern.names)
        if unknown:
            yield "name", f"uses {', '.join(sorted(unknown))}, which the pattern does not capture"

    def new_namer(self, ctx: BuildContext) -> Namer:
        return RewriteNamer(self.pattern, self.name)


def _template_vars(template: str) -> set[str]:
    import re

    return set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}", template))


class RewriteNamer(Namer):
    def __init__(self, pattern: PathMatcher, template: str) -> None:
        self.pattern = pattern
        self.template = template

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        variables = self.pattern.extract(path)
        if variables is None:
            return Activity.of(Neg)
        try:
            result = Path.read(PathMatcher.substitute(variables, self.template))
        except ValueError as e:
            return Activity.failed(e)
        return Activity.of(Leaf(result))


@hookimpl
def turnout_register_namers() -> list[type[NamerConfig]]:
    return [FsNamerConfig, RewriteNamerConfig]
