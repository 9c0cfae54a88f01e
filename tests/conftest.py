"""Shared fixtures: free loopback ports, and DNS servers started as
subprocesses on loopback (Knot DNS as the reference, xdpdns under test).

Every server fixture stops the process it started, by its PID, even when the
test fails; nothing here sends traffic anywhere but 127.0.0.1.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import dnsdiff

TESTS_DIR = Path(__file__).resolve().parent
DIFF_ZONE_DIR = TESTS_DIR / "data" / "diff"


# ---- ports ------------------------------------------------------------------


def _free_port(host="127.0.0.1"):
    """A port that is free for both UDP and TCP on host (DNS uses both)."""
    from xdpdns.bench.servers import free_port

    return free_port(host)


@pytest.fixture
def free_port():
    """A loopback port free for UDP and TCP (the caller binds it soon)."""
    return _free_port()


# ---- zones shared by the reference server and xdpdns ------------------------


def diff_zones():
    """(origin, path) of every zone in tests/data/diff: the origin is the file
    name without .zone, the rule xdpdns applies too."""
    return [(p.name[: -len(".zone")] + ".", p) for p in sorted(DIFF_ZONE_DIR.glob("*.zone"))]


# ---- running a server process -----------------------------------------------


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Sends sig to a process we started (by its PID), then SIGKILL if it
    has not exited after timeout seconds; returns its exit status."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    return proc.returncode


@dataclass
class ServerProcess:
    """A DNS server we started: where it answers, and its process."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def address(self):
        return (self.host, self.port)

    def log_tail(self, limit=4000):
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM to our own PID, then SIGKILL if it does not exit."""
        stop_process(self.proc)


def _wait_until_answering(server, zones, timeout=15.0):
    """Polls until every zone's SOA is answered authoritatively over UDP and
    TCP (Knot loads zones after it starts listening)."""
    deadline = time.monotonic() + timeout
    pending = [origin for origin, _ in zones]
    while pending:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode} before answering:\n"
                + server.log_tail()
            )
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"{server.name} did not answer SOA for {pending} within {timeout} s:\n"
                + server.log_tail()
            )
        origin = pending[0]
        wire = dnsdiff.make_query(origin, "SOA", edns=None).to_wire()
        ok = True
        for tcp in (False, True):
            try:
                resp = dnsdiff.exchange(server.address, wire, tcp=tcp, timeout=0.3)
            except OSError:
                resp = None
            if resp is None or (resp[3] & 0x0F) != 0 or not (resp[2] & 0x04):
                ok = False
        if ok:
            pending.pop(0)
        else:
            time.sleep(0.05)


def _start(name, argv, log_path, port, zones, cwd=None):
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, stdin=subprocess.DEVNULL
        )
    finally:
        log.close()
    server = ServerProcess(name, "127.0.0.1", port, proc, log_path)
    try:
        _wait_until_answering(server, zones)
    except BaseException:
        server.stop()
        raise
    return server


# ---- Knot DNS: the reference authoritative server ---------------------------


def _knotd_path():
    return shutil.which("knotd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _knot_config(workdir, port, zones, transfers=False):
    acl = "    acl: xfr\n" if transfers else ""
    zone_lines = "".join(
        f'  - domain: "{origin}"\n    file: "{path}"\n{acl}' for origin, path in zones
    )
    user = "    user: root:root\n" if os.geteuid() == 0 else ""
    # The same identity as DIFF_IDENTITY gives xdpdns, so that CHAOS and
    # NSID answers compare byte for byte, and the same cookie secret
    # (mod-cookies makes RFC 9018 server cookies, as xdpdns does).
    # zonefile-sync -1 and journal-content none: Knot never writes the zone
    # files back.  semantic-checks off: the test zones hold deliberate oddities
    # (occluded names, CNAME loops); only Knot's mandatory checks apply.
    return (
        "server:\n"
        f'    rundir: "{workdir}"\n'
        f"{user}"
        f"    listen: 127.0.0.1@{port}\n"
        f'    identity: "{DIFF_HOSTNAME}"\n'
        f'    version: "{DIFF_VERSION}"\n'
        f'    nsid: "{DIFF_NSID}"\n'
        "log:\n"
        "  - target: stderr\n"
        "    any: info\n"
        "database:\n"
        f'    storage: "{workdir}/db"\n'
        + ("acl:\n  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n" if transfers else "")
        + "mod-cookies:\n"
        "  - id: diff\n"
        f"    secret: 0x{DIFF_COOKIE_SECRET}\n"
        "template:\n"
        "  - id: default\n"
        "    global-module: mod-cookies/diff\n"
        f'    storage: "{workdir}"\n'
        "    zonefile-sync: -1\n"
        "    zonefile-load: whole\n"
        "    journal-content: none\n"
        "    semantic-checks: off\n"
        "zone:\n"
        f"{zone_lines}"
    )


# What both servers of the differential tests say about themselves (Knot's
# `identity` answers hostname.bind and id.server alike).
DIFF_HOSTNAME = "ns1.diff.test"
DIFF_VERSION = "diff-version 1"
DIFF_NSID = "ns1-diff"
# The DNS cookie secret of both (RFC 9018's example secret).  Knot's
# mod-cookies answers a UDP query without a valid server cookie with
# BADCOOKIE, which xdpdns does with `require`.
DIFF_COOKIE_SECRET = "e5e973e5a6b2a43f48e7dc849e37bfcf"


def diff_server_config(workdir) -> Path:
    """An xdpdns configuration file with DIFF_* as its [plugins.identity]
    and [plugins.cookies]."""
    path = Path(workdir) / "diff.toml"
    path.write_text(
        "[plugins.identity]\n"
        f'hostname = "{DIFF_HOSTNAME}"\nid = "{DIFF_HOSTNAME}"\n'
        f'version = "{DIFF_VERSION}"\nnsid = "{DIFF_NSID}"\n'
        "[plugins.cookies]\n"
        f'secret = "{DIFF_COOKIE_SECRET}"\nrequire = true\n'
    )
    return path


def start_knot(workdir, zones, transfers=False):
    """Starts knotd in the foreground on a free loopback port serving zones
    (transfers: to 127.0.0.1, by an ACL);
    returns a ServerProcess once every zone answers."""
    knotd = _knotd_path()
    if knotd is None:
        pytest.skip("knotd not installed (Debian: apt-get install knot)")
    workdir = Path(workdir)
    port = _free_port()
    conf = workdir / "knot.conf"
    conf.write_text(_knot_config(workdir, port, zones, transfers))
    return _start("knotd", [knotd, "-c", str(conf)], workdir / "knotd.log", port, zones)


def start_nsd(workdir, zones):
    """Starts NSD in the foreground on a free loopback port serving zones
    (minimal responses, no rate limiting, as xdpdns bench runs it); returns
    a ServerProcess once every zone answers."""
    nsd = shutil.which("nsd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if nsd is None:
        pytest.fail("nsd not found: bootstrap installs it")
    from xdpdns.bench.servers import nsd_config

    workdir = Path(workdir)
    port = _free_port()
    conf = workdir / "nsd.conf"
    conf.write_text(nsd_config(workdir, ["127.0.0.1"], port, 1, zones))
    return _start("nsd", [nsd, "-d", "-c", str(conf)], workdir / "nsd.log", port, zones)


@pytest.fixture(scope="session")
def knot_server(tmp_path_factory):
    """Knot DNS serving tests/data/diff on 127.0.0.1, for the whole session."""
    server = start_knot(tmp_path_factory.mktemp("knot"), diff_zones())
    yield server
    server.stop()


# ---- xdpdns -----------------------------------------------------------------


def xdpdns_unavailable():
    """Why xdpdns cannot serve here (None when it can)."""
    try:
        import xdpdns._engine  # noqa: F401  (the cffi extension)
    except ImportError as e:
        return f"xdpdns engine not built ({e}); run pip install -e ."
    return None


def xdpdns_command():
    """The console script next to this interpreter, else python -m xdpdns."""
    script = Path(sys.executable).parent / "xdpdns"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "xdpdns"]


def start_xdpdns(workdir, zones, extra_args=(), zone_args=True):
    """Starts `xdpdns serve` in socket mode on a free loopback port serving
    zones; returns a ServerProcess once every zone answers.  With zone_args
    False the zones come from a --config in extra_args (its [[zone]]
    entries: --zone would replace them) and are only waited for."""
    reason = xdpdns_unavailable()
    if reason:
        # The engine builds with the package (pip install -e .): a missing
        # extension is a broken build, not a reason to skip.
        pytest.fail(reason)
    workdir = Path(workdir)
    port = _free_port()
    argv = xdpdns_command() + ["serve", "--listen", f"127.0.0.1:{port}"]
    for origin, path in zones if zone_args else ():
        argv += ["--zone", f"{origin}={path}"]
    argv += list(extra_args)
    return _start("xdpdns", argv, workdir / "xdpdns.log", port, zones, cwd=workdir)


@pytest.fixture(scope="session")
def xdpdns_server(tmp_path_factory):
    """xdpdns serving tests/data/diff on 127.0.0.1, for the whole session.

    XDPDNS_DIFF_SELFTEST=1 puts a second Knot in its place: a check of the
    differential harness itself: every comparison passes then, except the
    rows whose Rule names rcodes Knot does not give (NOTIFY, UPDATE)."""
    workdir = tmp_path_factory.mktemp("xdpdns")
    if os.environ.get("XDPDNS_DIFF_SELFTEST") == "1":
        server = start_knot(workdir, diff_zones())
    else:
        server = start_xdpdns(workdir, diff_zones(), ["--config", diff_server_config(workdir)])
    yield server
    server.stop()


# ---- the xdpdns command line (test_cli.py, test_plugins.py, test_config.py) --


XDPDNS_CLI_TIMEOUT = 60


def run_xdpdns_cli(*args, cwd=None, timeout=XDPDNS_CLI_TIMEOUT):
    """Runs `xdpdns ARGS...` to completion; returns the CompletedProcess
    (text stdout and stderr)."""
    return subprocess.run(
        xdpdns_command() + [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def xdpdns_cli():
    """Calls the xdpdns command line: xdpdns_cli("check", path) -> CompletedProcess."""
    return run_xdpdns_cli


@pytest.fixture
def xdpdns_write_zone(tmp_path):
    """Writes a zone file: xdpdns_write_zone("example.org.zone", text) -> Path
    (in the test's tmp_path, or under `directory` when given)."""

    def write(name, text, directory=None):
        path = Path(directory or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


@dataclass
class XdpdnsServe:
    """`xdpdns serve` started by xdpdns_serve: its process and ready line."""

    proc: subprocess.Popen
    ready_line: str
    output_path: Path

    @property
    def addresses(self):
        """The (host, port) pairs of the ready line's listen= field."""
        field = self.ready_line.split("listen=", 1)[1].split()[0]
        result = []
        for item in field.split(","):
            host, _, port = item.rpartition(":")
            result.append((host.strip("[]"), int(port)))
        return result

    def output(self):
        return self.output_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends sig to our own PID; returns the exit status (SIGKILL after timeout)."""
        return stop_process(self.proc, sig, timeout)


def wait_ready(server, what, timeout, expect_ready=True):
    """Waits for the server's "ready" log line (kept in server.ready_line).
    A server that exits first is returned as it is when expect_ready is
    false (a test of a start-up error), else that is an error; so is no
    ready line within timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for line in server.output().splitlines():
            if " ready listen=" in line:
                server.ready_line = line
                return server
        if server.proc.poll() is not None:
            if not expect_ready:
                return server
            raise RuntimeError(f"{what} exited with {server.proc.returncode}:\n" + server.output())
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready in time:\n" + server.output())
        time.sleep(0.05)


@pytest.fixture
def xdpdns_serve(tmp_path):
    """Starts `xdpdns serve ARGS...` and waits for its "ready" log line:
    xdpdns_serve("--listen", "127.0.0.1:0") -> XdpdnsServe.  Every server it
    started is stopped (by PID) when the test ends."""
    reason = xdpdns_unavailable()
    if reason:
        # The engine builds with the package (pip install -e .): a missing
        # extension is a broken build, not a reason to skip.
        pytest.fail(reason)
    started = []

    def serve(*args, cwd=None, timeout=30.0):
        output_path = tmp_path / f"xdpdns-serve-{len(started)}.log"
        with open(output_path, "wb") as out:
            proc = subprocess.Popen(
                xdpdns_command() + ["serve"] + [str(a) for a in args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
            )
        server = XdpdnsServe(proc, "", output_path)
        started.append(server)
        return wait_ready(server, "xdpdns serve", timeout)

    yield serve
    for server in started:
        server.stop()


# ---- XDP mode: network namespaces (test_xdp.py; root only) ------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "xdp: XDP-mode tests: root, network namespaces they create and delete"
    )


def xdp_unavailable():
    """Why the XDP tests cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "XDP tests need root (network namespaces, XDP, AF_XDP); in CI they run as root"
    for tool in ("ip", "ethtool"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"XDP tests need {tool} (Debian: iproute2, ethtool)"
    return None


@pytest.fixture(scope="session")
def xdp_topology():
    """Namespaces xdpns-s-SUFFIX (server) and xdpns-c-SUFFIX (client) joined
    by a two-queue veth pair (tests/netns.py), for the whole session; always
    deleted by name at the end, even when a test failed."""
    import netns

    reason = xdp_unavailable()
    if reason:
        pytest.skip(reason)
    topology = netns.create_topology(netns.session_suffix())
    try:
        yield topology
    finally:
        topology.delete()


XDP_SERVER_TIMEOUT = 30.0


@dataclass
class XdpServer:
    """`xdpdns serve --xdp` running in the server namespace."""

    proc: subprocess.Popen
    output_path: Path
    control_socket: Path
    ready_line: str = ""

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        try:
            return self.output_path.read_text(errors="replace")
        except OSError:
            return ""

    def stats(self, timeout=10):
        """The JSON of `xdpdns stats --json` from this server."""
        import json

        result = run_xdpdns_cli(
            "stats", "--control-socket", self.control_socket, "--json", timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"xdpdns stats failed ({result.returncode}): {result.stderr}")
        return json.loads(result.stdout)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig to our own PID; returns the exit status (SIGKILL after timeout)."""
        return stop_process(self.proc, sig, timeout)


def xdp_zone_args():
    """--zone arguments for the zones of tests/data/diff."""
    args = []
    for origin, path in diff_zones():
        args += ["--zone", f"{origin}={path}"]
    return args


@pytest.fixture
def xdp_serve(xdp_topology, tmp_path):
    """Starts `xdpdns serve --xdp IF ARGS...` in the server namespace and waits
    for its "ready" line: xdp_serve("--listen", ...) -> XdpServer.  Without
    --listen it listens on the server's IPv4 and IPv6 addresses, port 53;
    without --zone it serves tests/data/diff.  Every server it started is
    stopped by PID when the test ends.  With diff_zones=False, the zones
    are the --config file's [[zone]] tables (--zone would replace them)."""
    import tempfile

    reason = xdpdns_unavailable()
    if reason:
        pytest.fail(reason)
    # A unix socket path holds at most 107 bytes: tmp_path may be longer.
    ctl_dir = Path(tempfile.mkdtemp(prefix="xdpdns-ctl-", dir="/tmp"))
    started = []

    def serve(*args, expect_ready=True, timeout=XDP_SERVER_TIMEOUT, diff_zones=True):
        args = [str(a) for a in args]
        index = len(started)
        control = ctl_dir / f"s{index}.sock"
        argv = xdpdns_command() + [
            "serve",
            "--xdp",
            xdp_topology.server_if,
            "--control-socket",
            str(control),
        ]
        if "--listen" not in args:
            argv += [
                "--listen",
                f"{xdp_topology.server_v4}:53",
                "--listen",
                f"[{xdp_topology.server_v6}]:53",
            ]
        if "--zone" not in args and diff_zones:
            argv += xdp_zone_args()
        argv += args
        output_path = tmp_path / f"xdpdns-xdp-{index}.log"
        with open(output_path, "wb") as out:
            proc = subprocess.Popen(
                xdp_topology.server.exec_argv(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp_path,
            )
        server = XdpServer(proc, output_path, control)
        started.append(server)
        return wait_ready(server, "xdpdns serve --xdp", timeout, expect_ready)

    yield serve
    for server in started:
        server.stop()
    shutil.rmtree(ctl_dir, ignore_errors=True)


def _read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def _meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# nr_hugepages is one value for the whole machine: tests that change it or
# depend on it take this lock, so that parallel sessions take turns.
HUGEPAGES_LOCK = "/tmp/xdpdns-test-hugepages.lock"
HUGEPAGES_LOCK_TIMEOUT = 120.0


@contextmanager
def _hugepages_locked():
    import fcntl

    with open(HUGEPAGES_LOCK, "a") as f:
        deadline = time.monotonic() + HUGEPAGES_LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip("another test session holds the hugepages for too long")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture
def reserved_hugepages():
    """Reserves 2 MiB hugepages: reserved_hugepages(n) makes at least n free
    ones (through /proc/sys/vm/nr_hugepages) and returns how many are free;
    the old nr_hugepages is written back when the test ends."""
    path = "/proc/sys/vm/nr_hugepages"
    with _hugepages_locked():
        old = _read_int(path)

        def reserve(n):
            want = old + max(0, n - _meminfo("HugePages_Free"))
            with open(path, "w") as f:
                f.write(str(want))
            free = _meminfo("HugePages_Free")
            if free < n:
                pytest.skip(f"could reserve only {free} of {n} hugepages (memory fragmented)")
            return free

        try:
            yield reserve
        finally:
            with open(path, "w") as f:
                f.write(str(old))


@pytest.fixture
def no_hugepages():
    """For the test's duration no 2 MiB hugepage is reserved (skips when the
    machine has some reserved)."""
    with _hugepages_locked():
        if _meminfo("HugePages_Total") > 0:
            pytest.skip("hugepages are reserved on this machine; cannot test their absence")
        yield
