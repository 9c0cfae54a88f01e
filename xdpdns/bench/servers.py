"""The servers a benchmark measures, and how each is configured: xdpdns
(XDP or socket mode) and its peers Knot DNS (XDP or UDP mode), NSD and BIND,
all given the same zone files and as many workers as the veth has queues.
process.py runs them.

Peer settings follow what an operator benchmarking them would set
(DESIGN.md, "Measuring"): NSD without response rate limiting and with
minimal responses; Knot with its XDP listener on the veth, no route check,
and its program detached after it exits (knotd leaves it); BIND with
minimal responses and no recursion.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from xdpdns.bench import procfs
from xdpdns.bench.process import Server, ServerError, find_program
from xdpdns.bench.topology import Netns, run as run_command
from xdpdns.bench.zones import ZoneFile

PEERS = ("knot", "nsd", "bind")
SERVERS = ("xdpdns",) + PEERS
MODES = ("xdp", "socket")
# Which modes each server has; the others are measured in socket mode.
SERVER_MODES = {"xdpdns": MODES, "knot": MODES, "nsd": ("socket",), "bind": ("socket",)}

PROGRAMS = {  # server -> (program, Debian package)
    "knot": ("knotd", "knot"),
    "nsd": ("nsd", "nsd"),
    "bind": ("named", "bind9"),
}

LOOPBACK = "127.0.0.1"  # where servers run without namespaces (bench/ scripts, --target)


def missing_program(server: str) -> str | None:
    """Why a peer cannot run here (the apt-get line), None when it can."""
    if server not in PROGRAMS:
        return None
    program, package = PROGRAMS[server]
    if find_program(program):
        return None
    return f"{server}: {program} not found (Debian: apt-get install {package})"


def xdpdns_command() -> list[str]:
    """The console script next to this interpreter, else python -m xdpdns:
    the same installation as the running code."""
    script = Path(sys.executable).parent / "xdpdns"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "xdpdns"]


# ---- how each server is configured ---------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a server runs: its namespace (None: the host), the addresses it
    listens on (the first is the one queried), the port, the interface XDP
    attaches to, its CPUs, the workers to start, and whence the readiness
    queries come."""

    listen: tuple[str, ...]
    port: int
    cpus: tuple[int, ...] = ()
    workers: int | None = 1  # None: the server's own default
    netns: Netns | None = None
    interface: str | None = None
    client_netns: Netns | None = None


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def xdpdns_server(
    workdir: Path,
    mode: str,
    zones: Sequence[ZoneFile],
    where: Placement,
    config: str | None = None,
    command: Sequence[str] | None = None,
    log_level: str = "info",
) -> Server:
    """xdpdns in XDP mode (one AF_XDP worker per queue of the interface; one
    socket-mode worker for TCP and what the program passes) or socket mode
    (``workers`` UDP workers)."""
    argv = list(command or xdpdns_command()) + ["serve", "--log-level", log_level]
    if config:
        argv += ["--config", str(Path(config).resolve())]
    for address in where.listen:
        argv += ["--listen", _hostport(address, where.port)]
    for zone in zones:
        argv += ["--zone", f"{zone.origin}={zone.path}"]
    control = workdir / "ctl.sock"
    argv += ["--control-socket", str(control)]
    if mode == "xdp":
        if not where.interface:
            raise ValueError("XDP mode needs an interface")
        argv += ["--xdp", where.interface, "--udp-workers", "1"]
    elif where.workers:
        argv += ["--udp-workers", str(where.workers)]
    return _server("xdpdns", mode, argv, workdir, where, control_socket=control)


def knot_server(workdir: Path, mode: str, zones: Sequence[ZoneFile], where: Placement) -> Server:
    """knotd with udp-workers = queues; in XDP mode it listens on the
    interface too (Knot 3.2: ``xdp: listen``, ``route-check: off`` on veth)
    and its program is detached after it exits, which knotd does not do."""
    knotd = _program("knot")
    user = "    user: root:root\n" if os.geteuid() == 0 else ""
    listen = "".join(f"    listen: {a}@{where.port}\n" for a in where.listen)
    xdp = ""
    if mode == "xdp":
        if not where.interface:
            raise ValueError("XDP mode needs an interface")
        xdp = f"xdp:\n    listen: {where.interface}@{where.port}\n    route-check: off\n"
    zone_lines = "".join(f'  - domain: "{z.origin}"\n    file: "{z.path}"\n' for z in zones)
    workers = ""
    if where.workers:
        workers = (
            f"    udp-workers: {where.workers}\n    tcp-workers: 1\n    background-workers: 1\n"
        )
    # zonefile-sync -1, journal-content none: Knot never writes the zones
    # back; semantic-checks off: only the mandatory checks, like NSD's.
    conf = workdir / "knot.conf"
    conf.write_text(
        "server:\n"
        f'    rundir: "{workdir}"\n'
        f"{user}{listen}{workers}"
        '    identity: ""\n'
        '    version: ""\n'
        '    nsid: ""\n'
        f"{xdp}"
        "log:\n"
        "  - target: stderr\n"
        "    any: notice\n"
        "database:\n"
        f'    storage: "{workdir}/db"\n'
        "template:\n"
        "  - id: default\n"
        f'    storage: "{workdir}"\n'
        "    zonefile-sync: -1\n"
        "    zonefile-load: whole\n"
        "    journal-content: none\n"
        "    semantic-checks: off\n"
        "zone:\n"
        f"{zone_lines}"
    )
    after_stop = None
    if mode == "xdp" and where.netns is not None:
        netns, interface = where.netns, where.interface

        def after_stop() -> None:
            run_command(
                netns.exec_argv(["ip", "link", "set", "dev", interface, "xdp", "off"]), check=False
            )

    return _server("knot", mode, [knotd, "-c", str(conf)], workdir, where, after_stop=after_stop)


def nsd_server(workdir: Path, mode: str, zones: Sequence[ZoneFile], where: Placement) -> Server:
    """NSD with server-count = queues.  Debian's NSD limits responses to
    200/s per client (RRL) and adds NS and glue to every answer unless
    minimal-responses: both off, as an operator benchmarking it would."""
    nsd = _program("nsd")
    conf = workdir / "nsd.conf"
    conf.write_text(
        nsd_config(
            workdir,
            where.listen,
            where.port,
            where.workers or 1,
            [(z.origin, z.path) for z in zones],
        )
    )
    return _server("nsd", mode, [nsd, "-d", "-c", str(conf)], workdir, where)


def nsd_config(
    workdir: Path, listen: Sequence[str], port: int, workers: int, zones: Sequence[tuple[str, Path]]
) -> str:
    """nsd.conf for NSD serving zones ((origin, file) pairs) on the listen
    addresses, everything of its own under workdir: minimal responses and
    no rate limiting (Debian's 200/s per client), as an operator measuring
    it would run it; the differential tests run it so too."""
    addresses = "".join(f"    ip-address: {a}@{port}\n" for a in listen)
    v6 = any(":" in a for a in listen)
    zone_lines = "".join(
        f'zone:\n    name: "{origin}"\n    zonefile: "{path}"\n' for origin, path in zones
    )
    return (
        "server:\n"
        f"{addresses}"
        f"    do-ip6: {'yes' if v6 else 'no'}\n"
        f"    server-count: {workers}\n"
        '    username: ""\n'  # stay the invoking user: no chown of the workdir
        '    chroot: ""\n'
        f'    zonesdir: "{workdir}"\n'
        '    database: ""\n'  # no nsd.db: the zone files are read at start
        f'    zonelistfile: "{workdir}/zone.list"\n'
        f'    xfrdfile: "{workdir}/xfrd.state"\n'
        f'    xfrdir: "{workdir}"\n'
        f'    pidfile: "{workdir}/nsd.pid"\n'
        f'    logfile: "{workdir}/nsd-internal.log"\n'
        "    verbosity: 1\n"
        "    hide-version: yes\n"
        "    minimal-responses: yes\n"
        # 100 by default: a TCP load of more clients would be refused.
        "    tcp-count: 1024\n"
        "    rrl-ratelimit: 0\n"
        "    rrl-whitelist-ratelimit: 0\n"
        "    zonefiles-write: 0\n"
        "remote-control:\n"
        "    control-enable: no\n"
        f"{zone_lines}"
    )


def bind_server(workdir: Path, mode: str, zones: Sequence[ZoneFile], where: Placement) -> Server:
    """named in the foreground with ``-n`` worker threads = queues, no
    recursion, minimal responses, no rndc control channel."""
    named = _program("bind")
    v4 = [a for a in where.listen if ":" not in a]
    v6 = [a for a in where.listen if ":" in a]

    def listen(addrs: list[str]) -> str:
        return "{ " + "".join(f"{a}; " for a in addrs) + "}" if addrs else "{ none; }"

    zone_lines = "".join(
        f'zone "{z.origin}" {{ type primary; file "{z.path}"; }};\n' for z in zones
    )
    conf = workdir / "named.conf"
    conf.write_text(
        "options {\n"
        f'    directory "{workdir}";\n'
        f'    pid-file "{workdir}/named.pid";\n'
        f'    session-keyfile "{workdir}/session.key";\n'
        f'    managed-keys-directory "{workdir}";\n'
        f"    listen-on port {where.port} {listen(v4)};\n"
        f"    listen-on-v6 port {where.port} {listen(v6)};\n"
        "    recursion no;\n"
        "    minimal-responses yes;\n"
        "    notify no;\n"
        "    allow-transfer { none; };\n"
        "    dnssec-validation no;\n"
        "    version none;\n"
        "    hostname none;\n"
        "    server-id none;\n"
        "};\n"
        "controls { };\n"
        f"{zone_lines}"
    )
    argv = [named, "-g", "-c", str(conf)]
    if where.workers:
        argv += ["-n", str(where.workers)]
    if not v6:
        argv.append("-4")
    return _server("bind", mode, argv, workdir, where)


BUILDERS = {"xdpdns": xdpdns_server, "knot": knot_server, "nsd": nsd_server, "bind": bind_server}


def make_server(
    name: str,
    mode: str,
    workdir: Path,
    zones: Sequence[ZoneFile],
    where: Placement,
    **xdpdns_options,
) -> Server:
    """A server ready to start(); raises ServerError when its program is
    missing.  xdpdns_options (config, command, log_level) go to xdpdns."""
    if name not in BUILDERS:
        raise ValueError(f"unknown server {name!r}; expected one of {', '.join(SERVERS)}")
    if mode not in SERVER_MODES[name]:
        raise ValueError(f"{name} has no {mode} mode")
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "xdpdns":
        return xdpdns_server(workdir, mode, zones, where, **xdpdns_options)
    return BUILDERS[name](workdir, mode, zones, where)


def version(server: str) -> str:
    """The server's version line, for the report."""
    if server == "xdpdns":
        from xdpdns import __version__

        return f"xdpdns {__version__}"
    program = find_program(PROGRAMS[server][0])
    if program is None:
        return "missing"
    return procfs.first_line([program, "-V" if server == "knot" else "-v"])


def free_port(host: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP on host (the servers bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
            return port
    raise ServerError(f"no port free for UDP and TCP on {host}")


def _program(server: str) -> str:
    reason = missing_program(server)
    if reason:
        raise ServerError(reason)
    return find_program(PROGRAMS[server][0])


def _server(
    name: str, mode: str, argv: list[str], workdir: Path, where: Placement, **extra
) -> Server:
    for address in where.listen:
        ipaddress.ip_address(address)  # a typo is an error here, not a timeout later
    return Server(
        name,
        mode,
        argv,
        workdir,
        where.listen[0],
        where.port,
        netns=where.netns,
        cpus=tuple(where.cpus),
        client_netns=where.client_netns,
        **extra,
    )
