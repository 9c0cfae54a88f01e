"""The command line: ``xdpdns serve``, ``xdpdns check``, ``xdpdns stats``,
``xdpdns plugins``, ``xdpdns bench``.

Every error a user can cause (a bad configuration, a broken zone, an address
in use, a missing permission) ends in one clear message on stderr and a
non-zero exit status, never in a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from xdpdns import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

log = logging.getLogger("xdpdns")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdpdns", description="An authoritative DNS server.")
    parser.add_argument("--version", action="version", version=f"xdpdns {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve zones over UDP and TCP",
        description="Serve zones over UDP and TCP. With no arguments, serves the "
        "example zone on 127.0.0.1:5353. Command-line lists replace the "
        "configuration file's.",
    )
    _add_config_options(serve)
    serve.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="address to serve on, HOST:PORT or [HOST6]:PORT (repeatable)",
    )
    serve.add_argument(
        "--zone",
        action="append",
        metavar="[ORIGIN=]FILE",
        help="zone file to serve; the origin defaults to the file name without .zone (repeatable)",
    )
    serve.add_argument(
        "--udp-workers", metavar="N", help="UDP worker threads (default: one per CPU)"
    )
    serve.add_argument(
        "--log-level", metavar="LEVEL", help="debug, info, warning or error (default: info)"
    )
    serve.add_argument(
        "--xdp",
        metavar="IFACE",
        help="XDP mode: answer UDP queries arriving on IFACE through "
        "AF_XDP (sets [xdp] interface; needs root)",
    )
    serve.add_argument(
        "--control-socket",
        metavar="PATH",
        help="where `xdpdns stats` asks (default: [server] control_socket, "
        "else /run/xdpdns/xdpdns.sock as root)",
    )

    check = sub.add_parser(
        "check",
        help="check zone files and configuration",
        description="Load zones as `serve` would and report every problem as "
        "FILE:LINE: error|warning: message. Exits 1 when there is an error.",
    )
    _add_config_options(check)
    check.add_argument("zones", nargs="*", metavar="[ORIGIN=]FILE", help="zone files")

    stats = sub.add_parser(
        "stats",
        help="show the counters of a running server",
        description="Ask a running `xdpdns serve` for its counters: UDP workers, TCP, "
        "and in XDP mode every AF_XDP queue (with where its frames are) and every "
        "CPU of the XDP program.",
    )
    _add_config_options(stats)
    stats.add_argument(
        "--control-socket",
        metavar="PATH",
        help="the server's control socket (default: the configuration's, "
        "else /run/xdpdns/xdpdns.sock as root)",
    )
    stats.add_argument("--json", action="store_true", help="print the raw JSON")

    reload = sub.add_parser(
        "reload",
        help="load the configuration and zones again in a running server",
        description="Ask a running `xdpdns serve` to read its configuration and zone "
        "files again and publish them without stopping (as SIGHUP does). Anything "
        "wrong changes nothing: the server keeps what it had, and this prints why and "
        "exits 1. [server], [xdp], [resolver], [metrics] and [dnstap] take effect at the "
        "next start only.",
    )
    _add_config_options(reload)
    reload.add_argument(
        "--control-socket",
        metavar="PATH",
        help="the server's control socket (default: the configuration's, "
        "else /run/xdpdns/xdpdns.sock as root)",
    )

    sub.add_parser(
        "plugins",
        help="list the loaded plugins and their hooks",
        description="List the loaded plugins, where each came from and its hooks.",
    )

    from xdpdns.bench.options import add_arguments as add_bench_arguments

    bench = sub.add_parser(
        "bench",
        help="measure xdpdns (and peers) under load",
        description="Build a server and a client network namespace joined by a veth pair "
        "(root), serve the zones with xdpdns in XDP and/or socket mode (and with the peers "
        "of --compare), load it from the client side for a bounded time, print a table of "
        "medians, and delete everything it made, also on Ctrl-C or a failure. With --target, "
        "load a server already running on loopback instead (no root needed).",
    )
    add_bench_arguments(bench)
    return parser


def _error(message: str) -> int:
    for line in str(message).splitlines() or [""]:
        print(f"xdpdns: error: {line}", file=sys.stderr)
    return EXIT_ERROR


def _setup_logging(level: str, syslog: str | None = None, syslog_socket: str = "/dev/log") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if syslog is None:
        return
    import os
    from logging.handlers import SysLogHandler

    try:
        handler = SysLogHandler(
            address=syslog_socket, facility=SysLogHandler.facility_names[syslog]
        )
    except OSError as exc:
        # stderr still has every line: a missing syslog is no reason to stop.
        log.warning("cannot log to syslog at %s: %s", syslog_socket, exc)
        return
    # syslog adds the time; the tag is what journalctl -t and grep find.
    handler.setFormatter(
        logging.Formatter(f"xdpdns[{os.getpid()}]: %(levelname)s %(name)s: %(message)s")
    )
    logging.getLogger().addHandler(handler)


def _serve(args: argparse.Namespace) -> int:
    from xdpdns.config import Config, load_config
    from xdpdns.plugins import load_plugins
    from xdpdns.server import Server

    pm = load_plugins()

    def read() -> Config:
        # At start and again for every reload, with the same file and options.
        return load_config(
            pm,
            args.config,
            listen=args.listen,
            zones=args.zone,
            udp_workers=args.udp_workers,
            log_level=args.log_level,
            xdp_interface=args.xdp,
            control_socket=args.control_socket,
        )

    config = read()
    _setup_logging(config.server.log_level, config.server.syslog, str(config.server.syslog_socket))
    return Server(config, pm, reread=read).run()


def _check(args: argparse.Namespace) -> int:
    from xdpdns.config import load_config
    from xdpdns.image import collect_overrides, collect_sources, compile_sources
    from xdpdns.plugins import load_plugins

    if not args.zones and not args.config:
        print("xdpdns check: give zone files or --config FILE", file=sys.stderr)
        return EXIT_USAGE
    pm = load_plugins()
    config = load_config(pm, args.config, zones=args.zones)
    result = compile_sources(
        collect_sources(pm, config), overrides=collect_overrides(pm, config), keys=config.keys
    )
    for problem in result.problems:
        print(problem)
    errors, warnings = len(result.errors), len(result.warnings)
    zones = len(result.zones)
    print(
        f"{zones} zone{'s' if zones != 1 else ''} checked: "
        f"{errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}"
    )
    if result.image is not None:
        result.image.close()
    return EXIT_ERROR if errors else EXIT_OK


def _control_socket(args: argparse.Namespace):
    """The control socket that `stats` and `reload` ask: --control-socket,
    else the configuration's, else the default."""
    from xdpdns.config import default_control_socket, load_config

    path = args.control_socket
    if path is None and args.config:
        from xdpdns.plugins import load_plugins

        path = load_config(load_plugins(), args.config).server.control_socket
    return path or default_control_socket()


def _stats(args: argparse.Namespace) -> int:
    import json

    from xdpdns.control import ControlError, format_stats, request

    try:
        stats = request(_control_socket(args))
    except ControlError as exc:
        return _error(str(exc))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return EXIT_OK


def _reload(args: argparse.Namespace) -> int:
    from xdpdns.control import RELOAD_TIMEOUT, ControlError, request

    try:
        result = request(_control_socket(args), "reload", timeout=RELOAD_TIMEOUT)
    except ControlError as exc:
        return _error(str(exc))
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if not result.get("ok"):
        return _error(result.get("message") or result.get("error") or "reload failed")
    print(result.get("message", "reloaded"))
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from xdpdns.bench.options import UsageError, resolve
    from xdpdns.bench.runner import BenchError, main

    try:
        opts = resolve(args)
    except UsageError as exc:
        print(f"xdpdns bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return main(opts)
    except BenchError as exc:
        return _error(str(exc))


def _plugins(args: argparse.Namespace) -> int:
    from xdpdns.plugins import (
        AFTER,
        BEFORE,
        hook_orders,
        load_plugins,
        order_problems,
        plugin_infos,
    )

    # The problems are part of the listing below; not also on stderr.
    logging.getLogger("xdpdns.plugins").addHandler(logging.NullHandler())
    pm = load_plugins()
    print("plugins, in plugin order:")
    for position, info in enumerate(plugin_infos(pm), 1):
        marks = dict(info.marks)
        hooks = [f"{hook} ({marks[hook]})" if hook in marks else hook for hook in info.hooks]
        print(f"{position}. {info.name}: {info.origin}")
        print(f"    hooks: {', '.join(hooks) or '(none)'}")
        for label, attribute, names in (
            ("before", BEFORE, info.before),
            ("after", AFTER, info.after),
        ):
            if names:
                shown = [f"{n} (not loaded)" if n in info.missing else n for n in names]
                print(f"    {label}: {', '.join(shown)}  ({attribute})")
    print("hooks, in call order:")
    for hook, names in hook_orders(pm).items():
        print(f"    {hook}: {', '.join(names) or '(hook wrappers only)'}")
    for problem in order_problems(pm):
        print(f"warning: {problem}")
    return EXIT_OK


COMMANDS = {
    "serve": _serve,
    "check": _check,
    "stats": _stats,
    "reload": _reload,
    "plugins": _plugins,
    "bench": _bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from xdpdns.config import ConfigError
        from xdpdns.image import ZoneLoadError
        from xdpdns.plugins import PluginError
    except ImportError as exc:  # the C extension is missing or broken
        return _error(
            f"the C engine cannot be loaded ({exc}); build it with "
            "`pip install -e .` or run ./bootstrap serve"
        )
    try:
        return COMMANDS[args.command](args)
    except ZoneLoadError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        errors = len([p for p in exc.problems if p.is_error])
        return _error(f"{errors} error{'s' if errors != 1 else ''} in the zone data; not serving")
    except (ConfigError, PluginError) as exc:
        return _error(str(exc))
    except OSError as exc:  # address in use, permission denied, unreadable file
        return _error(exc.strerror if exc.strerror else str(exc))
    except KeyboardInterrupt:
        return 130
