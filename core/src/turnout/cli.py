"""The ``turnout`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from . import __version__, scaffold
from .config.loader import LoadedConfig, load_file
from .errors import ConfigError, ParseError, PluginError, TurnoutError
from .naming import (
    ConfiguredNamersInterpreter,
    Dtab,
    Failed,
    GlobalNamer,
    NameInterpreter,
    Ok,
    Path,
    Pending,
    delegate,
)
from .naming.addr import AddrPending
from .naming.render import bound_tree_json, bound_tree_text, delegate_text
from .plugin_manager import Plugins, load_plugins

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ConfigError as e:
        _print_problems(e, getattr(args, "json", False))
        return EXIT_ERROR
    except (PluginError, TurnoutError) as e:
        print(f"turnout: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BaseExceptionGroup as group:  # (a task group's: serve() starts servers in one)
        matched, rest = group.split((PluginError, TurnoutError))
        if rest is not None:
            raise
        for error in _leaves(matched):
            print(f"turnout: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


class _VersionAction(argparse.Action):
    """``--version``: turnout's version, then each plugin that says how it was built
    (``turnout-protocol-http 0.1.0: data path: compiled``)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        lines = [f"turnout {__version__}"]
        try:
            plugins = load_plugins()
        except TurnoutError as e:
            lines.append(f"(plugins not loaded: {e})")
        else:
            for info in plugins.build_infos():
                name = f"{info.distribution or info.name} {info.version or ''}".rstrip()
                lines.append(f"{name}: {info.build}")
        print("\n".join(lines))
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="turnout",
        description="turnout: a service-mesh routing proxy that runs Linkerd 1 configurations.",
    )
    p.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="show turnout's version, and how its plugins were built, and exit",
    )
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser("run", help="run a configuration", description="Run turnout with CONFIG.")
    run.add_argument("config", metavar="CONFIG", help="YAML or JSON config file, or - for stdin")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--workers",
        metavar="N",
        type=_workers_arg,
        help="worker processes serving the same ports (a number, or auto: one per CPU); "
        "overrides the configuration's 'workers'",
    )
    run.add_argument(
        "--watch-config",
        metavar="SECONDS",
        nargs="?",
        const=2.0,
        type=float,
        default=None,
        help="poll the config file (every SECONDS, default 2) and reload it when its content "
        "changes (as SIGHUP does)",
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check",
        help="validate a configuration without running it",
        description="Read and validate CONFIG; print every problem with file:line:column. "
        "Opens no sockets and contacts no discovery system. Exit status 0 when valid. "
        "A namerd configuration (top-level 'storage'/'interfaces') is validated as one.",
    )
    check.add_argument("config", metavar="CONFIG", help="YAML or JSON config file, or - for stdin")
    check.add_argument("--json", action="store_true", help="print problems as JSON")
    check.set_defaults(func=cmd_check)

    namerd = sub.add_parser(
        "namerd",
        help="run namerd: the dtab store and binding service (see docs/namerd.md)",
        description="Run namerd with CONFIG (storage, namers, interfaces, admin, telemetry).",
    )
    namerd.add_argument("config", metavar="CONFIG", help="YAML or JSON namerd config file")
    namerd.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    namerd.set_defaults(func=cmd_namerd)

    plugins = sub.add_parser(
        "plugins",
        help="list installed plugins and the kinds they provide",
        description="List the installed plugins, their distributions, versions and kinds.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(func=cmd_plugins)

    plugin = sub.add_parser(
        "plugin", help="plugin development tools (new)", description="Plugin development tools."
    )
    psub = plugin.add_subparsers(title="plugin commands", metavar="COMMAND")
    new = psub.add_parser(
        "new",
        help="write a new plugin's skeleton: package, README, passing tests",
        description="Write an installable plugin providing the kind NAME into a new directory "
        "DIR/turnout-KIND-NAME (dots and camelCase become dashes; the import package uses "
        "underscores): pyproject.toml with the entry point, the config class and runtime "
        "object, a README with an options table, and tests that pass as generated.",
        epilog=f"KIND is one of:\n{scaffold.kinds_help()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    new.add_argument("kind_family", metavar="KIND", help="what the plugin provides (below)")
    new.add_argument("name", metavar="NAME", help="the kind to register, such as com.example.demo")
    new.add_argument("--dir", default=".", help="where to create the plugin directory (default .)")
    new.set_defaults(func=cmd_plugin_new, log_level="WARNING")
    plugin.set_defaults(func=_print_help(plugin))

    dtab = sub.add_parser(
        "dtab",
        help="explain and test routing (delegate, bind); namerd's dtabs (list, get, put, delete)",
        description="Dtab tools. delegate and bind work on a local config; list, get, put and "
        "delete manage the dtabs stored in namerd (Linkerd's namerctl).",
    )
    dsub = dtab.add_subparsers(title="dtab commands", metavar="COMMAND")
    for name, func, helptext in (
        ("delegate", cmd_delegate, "explain step by step how PATH is routed"),
        ("bind", cmd_bind, "bind PATH and show the bound tree with its addresses"),
    ):
        d = dsub.add_parser(name, help=helptext, description=helptext.capitalize() + ".")
        d.add_argument("path", metavar="PATH", help="the name, for example /svc/web")
        d.add_argument("--config", help="config file whose namers (and router) to use")
        d.add_argument("--router", help="label of the router whose dtab and interpreter to use")
        d.add_argument("--dtab", default="", help="dtab appended last (wins), like l5d-dtab")
        d.add_argument("--json", action="store_true", help="print JSON")
        d.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
        d.set_defaults(func=func, log_level="WARNING")
    _namerd_dtab_parsers(dsub)
    dtab.set_defaults(func=_print_help(dtab))
    return p


def _print_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The command of a command group given without a subcommand: its help, exit status 2."""

    def show(_: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_USAGE

    return show


# -- run ---------------------------------------------------------------------------------------
def _workers_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError("a number of processes from 1 to 256, or auto")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from .linker import Linker
    from .workers import WORKER_ADMIN_PORT_ENV, WORKER_ENV, resolve

    plugins = load_plugins()
    loaded = _load(args.config, plugins)
    worker = os.environ.get(WORKER_ENV)
    count = resolve(args.workers if args.workers is not None else loaded.config.workers)
    if worker is None and count > 1:
        from .workers.supervisor import Supervisor

        supervisor = Supervisor(
            args.config,
            loaded,
            count,
            log_level=args.log_level,
            watch_config=getattr(args, "watch_config", None),
        )
        return asyncio.run(supervisor.run())  # (the stdlib loop: the supervisor is no data path)
    if worker is not None:  # one of the supervisor's workers (turnout.workers.supervisor)
        _as_worker(loaded, worker, int(os.environ[WORKER_ADMIN_PORT_ENV]))
    from .tls import insecure_warnings

    for warning in insecure_warnings(loaded.config):
        logging.getLogger("turnout.tls").warning("INSECURE: %s", warning)
    linker = Linker.build(loaded, plugins)
    if os.environ.get("TURNOUT_GC_TUNING", "1") != "0":
        tune_gc()

    def announce(linker: Linker) -> None:
        if getattr(args, "watch_config", None):
            from .reload import watch_config

            linker.spawn(watch_config(linker, args.watch_config))
        for router in linker.routers:
            for ip, port in router.servers():
                log_line = f"router '{router.label}' listening on {ip}:{port}"
                logging.getLogger("turnout").info(log_line)
        if linker.admin is not None:
            admin = linker.config.admin
            logging.getLogger("turnout").info(
                "admin server on http://%s:%s/", admin.ip, linker.admin.port
            )

    return run_loop(linker.serve(on_ready=announce))


def _as_worker(loaded: Any, index: str, admin_port: int) -> None:
    """Make this linker a worker: its admin server on the loopback port the supervisor
    chose, its servers' sockets shared with the other workers (SO_REUSEPORT), its log lines
    marked with its index."""
    from .workers import as_worker_config

    as_worker_config(loaded.config, admin_port)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [worker {index}] %(name)s: %(message)s")
        )


def tune_gc() -> None:
    """Collect once, freeze what start-up built (config, plugins, caches) out of the
    collector's reach, and collect the young generation less often: request handling
    allocates many short-lived objects that reference counting frees anyway."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed (faster), else on the stdlib loop;
    ``TURNOUT_LOOP=asyncio`` forces the stdlib loop (tests run both where they can differ)."""
    if os.environ.get("TURNOUT_LOOP", "").lower() == "asyncio":
        return asyncio.run(coro)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- check -------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from .namerd.config import looks_like_namerd

    if looks_like_namerd(args.config):  # (top-level 'storage' or 'interfaces')
        return cmd_check_namerd(args)
    plugins = load_plugins()
    loaded = _load(args.config, plugins)
    if args.json:
        print(json.dumps({"valid": True, "warnings": [w.as_dict() for w in loaded.warnings]}))
    else:
        for w in loaded.warnings:
            print(f"warning: {w}", file=sys.stderr)
        from .tls import insecure_warnings

        for insecure in insecure_warnings(loaded.config):
            print(f"warning: INSECURE: {insecure}", file=sys.stderr)
        routers = ", ".join(r.effective_label for r in loaded.config.routers)
        print(f"{loaded.source.name}: OK ({len(loaded.config.routers)} router(s): {routers})")
    return EXIT_OK


def _load(location: str, plugins: Plugins) -> LoadedConfig:
    loaded = load_file(location, registry=plugins.registry)
    plugins.hook.turnout_configure(config=loaded.config)
    return loaded


def _print_problems(error: ConfigError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"valid": False, "errors": [p.as_dict() for p in error.problems]}))
        return
    for problem in error.problems:
        print(f"error: {problem}", file=sys.stderr)
    n = len(error.problems)
    print(f"{n} error{'s' if n != 1 else ''}; the configuration was not accepted", file=sys.stderr)


# -- plugins -----------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = load_plugins()
    plugins.build_infos()
    infos = [i.as_dict() for i in plugins.infos]
    if args.json:
        print(json.dumps({"plugins": infos}, indent=2))
        return EXIT_OK
    for info in plugins.infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(no distribution)"
        where = "built-in" if info.builtin else info.module
        print(f"{info.name}  [{dist}, {where}]")
        if info.build:
            print(f"    build: {info.build}")
        by_family: dict[str, list[str]] = {}
        for family, kind in info.kinds:
            by_family.setdefault(family, []).append(kind)
        for family in sorted(by_family):
            print(f"    {family}: {', '.join(by_family[family])}")
    return EXIT_OK


def cmd_plugin_new(args: argparse.Namespace) -> int:
    root, names = scaffold.new_plugin(args.kind_family, args.name, args.dir)
    print(scaffold.summary(root, names))
    return EXIT_OK


# -- dtab --------------------------------------------------------------------------------------
def _dtab_setup(args: argparse.Namespace) -> tuple[NameInterpreter, Dtab, Path, Any]:
    try:
        path = Path.read(args.path)
    except ParseError as e:
        raise TurnoutError(f"invalid path: {e}") from None
    try:
        extra = Dtab.read(args.dtab)
    except ParseError as e:
        raise TurnoutError(f"invalid --dtab: {e}") from None
    plugins = load_plugins()
    if args.config is None:
        if args.router:
            raise TurnoutError("--router needs --config")
        named = {n: reg.namer for n, reg in plugins.registry.global_namers.items()}
        return ConfiguredNamersInterpreter([], GlobalNamer(named)), extra, path, None
    from .linker import Linker

    linker = Linker.build(_load(args.config, plugins), plugins, routers=False)
    if args.router is None:
        interpreter: NameInterpreter = ConfiguredNamersInterpreter(
            linker.namers, linker.global_namer
        )
        return interpreter, extra, path, linker
    router = linker.router_config(args.router)
    return linker.interpreters[router.effective_label], router.dtab + extra, path, linker


def cmd_delegate(args: argparse.Namespace) -> int:
    interpreter, dtab, path, linker = _dtab_setup(args)

    async def go() -> Any:
        try:
            return await delegate(interpreter, dtab, path, timeout=args.timeout)
        finally:
            if linker is not None:
                await linker.close()

    try:
        tree = asyncio.run(go())
    except TimeoutError:
        raise TurnoutError(f"delegation of {path} timed out after {args.timeout}s") from None
    if args.json:
        print(json.dumps(tree.to_json(), indent=2))
    else:
        print(f"dtab: {dtab if len(dtab) else '(empty)'}")
        print("\n".join(delegate_text(tree)))
    return EXIT_OK


def cmd_bind(args: argparse.Namespace) -> int:
    interpreter, dtab, path, linker = _dtab_setup(args)

    async def go() -> Any:
        activity = interpreter.bind(dtab, path)
        obs = activity.observe(lambda _: None)
        try:
            state = await activity.changes(lambda s: s is not Pending)
            if isinstance(state, Ok):
                for bound in state.value.eval() or ():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            bound.addr.changes(lambda a: a is not AddrPending), args.timeout
                        )
            return state
        finally:
            obs.close()
            if linker is not None:
                await linker.close()

    try:
        state = asyncio.run(asyncio.wait_for(go(), args.timeout))
    except TimeoutError:
        raise TurnoutError(f"binding {path} timed out after {args.timeout}s") from None
    if isinstance(state, Failed):
        raise TurnoutError(f"binding {path} failed: {state.error}")
    assert isinstance(state, Ok)
    if args.json:
        print(json.dumps(bound_tree_json(state.value), indent=2))
    else:
        print(f"dtab: {dtab if len(dtab) else '(empty)'}")
        print("\n".join(bound_tree_text(state.value)))
    return EXIT_OK


# -- dtab list|get|put|delete (namerd's dtabs, Linkerd's namerctl) -----------------------------
def _namerd_dtab_parsers(dsub: Any) -> None:
    from .namerd.client import BASE_URL_ENV, DEFAULT_BASE_URL

    def common(d: argparse.ArgumentParser, namespace: bool) -> None:
        d.add_argument(
            "--namerd",
            metavar="URL",
            default=None,
            help=f"namerd's io.l5d.httpController (default ${BASE_URL_ENV}, else "
            f"{DEFAULT_BASE_URL})",
        )
        d.add_argument("--timeout", type=float, default=10.0, help="seconds per request (10)")
        if namespace:
            d.add_argument(
                "--namespace", "-n", default=None, help="the namespace (default: default)"
            )

    ls = dsub.add_parser(
        "list", help="list namerd's namespaces", description="Print namerd's namespaces."
    )
    common(ls, namespace=False)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_dtab_list, log_level="WARNING")

    get = dsub.add_parser(
        "get",
        help="print a namespace's dtab from namerd",
        description="Print the dtab of a namespace, one dentry per line; --json adds its version.",
    )
    get.add_argument("name", metavar="NAMESPACE", nargs="?", help="the namespace (default)")
    common(get, namespace=True)
    get.add_argument("--json", action="store_true", help="print {namespace, dtab, version}")
    get.set_defaults(func=cmd_dtab_get, log_level="WARNING")

    put = dsub.add_parser(
        "put",
        help="replace a namespace's dtab in namerd (shows the diff; safe against races)",
        description="Read a dtab from FILE (- for standard input), refuse it if it does not "
        "parse, show the unified diff against namerd's current dtab, and write it only if "
        "nobody changed the namespace since it was read (If-Match). --create creates a new "
        "namespace.",
    )
    put.add_argument("args", metavar="[NAMESPACE] FILE", nargs="+")
    common(put, namespace=True)
    put.add_argument("--create", action="store_true", help="create a namespace that is new")
    put.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    put.set_defaults(func=cmd_dtab_put, log_level="WARNING")

    delete = dsub.add_parser(
        "delete", help="delete a namespace from namerd", description="Delete a namespace."
    )
    delete.add_argument("name", metavar="NAMESPACE", nargs="?", help="the namespace (default)")
    common(delete, namespace=True)
    delete.set_defaults(func=cmd_dtab_delete, log_level="WARNING")


def _namerd_client(args: argparse.Namespace) -> Any:
    from .namerd.client import NamerdClient

    return NamerdClient(args.namerd, timeout=args.timeout)


def _namespace_arg(args: argparse.Namespace, positional: str | None) -> str:
    from .namerd.store import check_namespace

    if positional is not None and args.namespace is not None and positional != args.namespace:
        raise TurnoutError(
            f"two namespaces given: {positional!r} and --namespace {args.namespace!r}"
        )
    ns = positional or args.namespace or "default"
    try:
        return check_namespace(ns)
    except TurnoutError as e:
        raise TurnoutError(f"invalid namespace: {e}") from None


def dtab_lines(dtab: Dtab) -> list[str]:
    """A dtab one dentry per line (``/svc => /#/io.l5d.fs;``), how get and put show it."""
    return [f"{d.prefix.show} => {d.dst.show};" for d in dtab]


def cmd_dtab_list(args: argparse.Namespace) -> int:
    names = _namerd_client(args).list()
    print(json.dumps(names) if args.json else "\n".join(names))
    return EXIT_OK


def cmd_dtab_get(args: argparse.Namespace) -> int:
    ns = _namespace_arg(args, args.name)
    found = _namerd_client(args).get(ns)
    if args.json:
        out = {"namespace": ns, "dtab": found.dtab.show, "version": found.version}
        print(json.dumps(out, indent=2))
    else:
        print("\n".join(dtab_lines(found.dtab)))
    return EXIT_OK


def cmd_dtab_put(args: argparse.Namespace) -> int:
    import difflib

    from .namerd.client import NamespaceMissing, dtab_problem

    if len(args.args) > 2:
        raise TurnoutError("dtab put takes [NAMESPACE] FILE")
    positional, source = (None, args.args[0]) if len(args.args) == 1 else args.args
    ns = _namespace_arg(args, positional)
    if source == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        try:
            with open(source, encoding="utf-8") as f:
                text, name = f.read(), source
        except OSError as e:
            raise TurnoutError(f"cannot read {source}: {e.strerror or e}") from None
    problem = dtab_problem(text)
    if problem is not None:  # (before contacting namerd)
        raise TurnoutError(f"{name}: not a valid dtab: {problem}; nothing was written")
    new = Dtab.read(text)
    client = _namerd_client(args)
    try:
        current = client.get(ns)
    except NamespaceMissing:
        if not args.create:
            raise TurnoutError(
                f"namespace {ns!r} does not exist in namerd; add --create to create it"
            ) from None
        old_lines: list[str] = []
        version = None
    else:
        if args.create:
            raise TurnoutError(f"namespace {ns!r} already exists; update it without --create")
        old_lines, version = dtab_lines(current.dtab), current.version
    new_lines = dtab_lines(new)
    diff = list(
        difflib.unified_diff(
            old_lines,
            new_lines,
            f"namerd:{ns}" + (f" (version {version})" if version else " (new)"),
            name,
            lineterm="",
        )
    )
    if not diff:
        print(f"namespace {ns!r}: no change (version {version}); nothing written")
        return EXIT_OK
    print("\n".join(diff))
    if args.dry_run:
        print("(dry run: nothing written)")
        return EXIT_OK
    if version is None:
        client.create(ns, new)
        print(f"namespace {ns!r} created")
    else:
        client.put(ns, new, version)
        print(f"namespace {ns!r} updated")
    return EXIT_OK


def cmd_dtab_delete(args: argparse.Namespace) -> int:
    ns = _namespace_arg(args, args.name)
    _namerd_client(args).delete(ns)
    print(f"namespace {ns!r} deleted")
    return EXIT_OK


# -- namerd ------------------------------------------------------------------------------------
def cmd_namerd(args: argparse.Namespace) -> int:
    from .namerd.config import load_namerd_file
    from .namerd.runtime import Namerd

    plugins = load_plugins()
    loaded = load_namerd_file(args.config, registry=plugins.registry)
    for w in loaded.warnings:
        logging.getLogger("turnout.namerd").warning("%s", w)
    namerd = Namerd.build_namerd(loaded, plugins)

    def announce(linker: Any) -> None:
        for iface, config in zip(namerd.interfaces, namerd.namerd_config.interfaces, strict=False):
            ip, port = iface.address()
            logging.getLogger("turnout.namerd").info(
                "interface %s listening on %s:%s", config.kind, ip, port
            )
        if namerd.admin is not None:
            logging.getLogger("turnout.namerd").info(
                "admin server on http://%s:%s/", namerd.config.admin.ip, namerd.admin.port
            )

    return run_loop(namerd.serve(on_ready=announce))


def _leaves(group: BaseException | None) -> list[BaseException]:
    if group is None:
        return []
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in _leaves(e)]
    return [group]


def cmd_check_namerd(args: argparse.Namespace) -> int:
    from .namerd.config import load_namerd_file

    plugins = load_plugins()
    loaded = load_namerd_file(args.config, registry=plugins.registry)
    cfg = loaded.config
    if args.json:
        print(json.dumps({"valid": True, "warnings": [w.as_dict() for w in loaded.warnings]}))
    else:
        for w in loaded.warnings:
            print(f"warning: {w}", file=sys.stderr)
        ifaces = ", ".join(str(i.kind) for i in cfg.interfaces)
        print(
            f"{loaded.source.name}: OK (namerd: storage {cfg.storage.kind}, "
            f"{len(cfg.interfaces)} interface(s): {ifaces})"
        )
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
