"""[xdp] attach = "dispatcher" (native/io/xdp_dispatch.c, the guard in
xdpdns/xdp.py): xdpdns as one program of libxdp's dispatcher, beside a
program that xdp-loader loads (tests/data/xdp_neighbour.bpf.c, compiled
here), in the namespaces of tests/netns.py.

libxdp pins the dispatcher in a bpffs: this session mounts one of its own
under /tmp and points LIBXDP_BPFFS at it (the servers and xdp-loader
inherit it), so nothing here touches /sys/fs/bpf, and it is unmounted at
the end.  `ip netns exec` gives each command a fresh /sys, which is another
reason not to use /sys/fs/bpf.

Root only.  The tests of a working dispatcher skip, with libxdp's reason,
on a kernel that refuses freplace programs; the error tests run either way.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import dnsdiff
from conftest import run_xdpdns_cli
from netns import run
import test_privileges
from test_privileges import NOBODY, _serve_conf
from xdpdns.bench.topology import attach_pass_program

pytestmark = [pytest.mark.xdp]

NEIGHBOUR_SOURCE = Path(__file__).resolve().parent / "data" / "xdp_neighbour.bpf.c"
DROPPED_PORT = 5399  # the neighbour program drops UDP to it
OPEN_PORT = 5400  # ... and passes this one
XDP_LOADER = shutil.which("xdp-loader", path=os.environ.get("PATH", "") + ":/usr/sbin")
LOADER_TIMEOUT = 30  # seconds for one xdp-loader command
TIMEOUT = 2.0  # seconds for one query or datagram
DISPATCHER_CONFIG = '[xdp]\nattach = "dispatcher"\n'


# ---- the session's bpffs, neighbour programs and what the kernel allows --------


# test_privileges' directory that the user nobody may read.
open_dir = test_privileges.open_dir


@pytest.fixture(scope="session")
def bpffs(xdp_topology):
    """A bpffs of this session's own, as LIBXDP_BPFFS for every process
    started meanwhile; unmounted (dropping any pins left) at the end."""
    path = Path(tempfile.mkdtemp(prefix="xdpdns-bpffs-", dir="/tmp"))
    run("mount", "-t", "bpf", "bpf", path)
    old = os.environ.get("LIBXDP_BPFFS")
    os.environ["LIBXDP_BPFFS"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            del os.environ["LIBXDP_BPFFS"]
        else:
            os.environ["LIBXDP_BPFFS"] = old
        run("umount", path, check=False)
        path.rmdir()


def _compile(tmp: Path, name: str, *defines: str) -> Path:
    # Debian keeps asm/types.h under the multiarch directory, which clang
    # -target bpf does not search (as setup.py says).
    triplet = run("gcc", "-dumpmachine").stdout.strip()
    out = tmp / name
    run(
        "clang",
        "-O2",
        "-g",
        "-Wall",
        "-target",
        "bpf",
        f"-I/usr/include/{triplet}",
        *defines,
        "-c",
        NEIGHBOUR_SOURCE,
        "-o",
        out,
    )
    return out


@pytest.fixture(scope="session")
def neighbours(tmp_path_factory):
    """(dropper, passer): the compiled neighbour programs."""
    if shutil.which("clang") is None or XDP_LOADER is None:
        pytest.skip("needs clang and xdp-loader (Debian: clang, xdp-tools)")
    tmp = tmp_path_factory.mktemp("neighbours")
    return (_compile(tmp, "drop.bpf.o", f"-DDROP_PORT={DROPPED_PORT}"), _compile(tmp, "pass.bpf.o"))


def xdp_loader(topo, *args, check=True):
    """xdp-loader ARGS in the server's namespace.  Stopped with SIGTERM if
    it hangs: it then removes its lock file (/run/xdp-loader.lck), which
    SIGKILL would leave behind for every later run on the machine."""
    proc = subprocess.Popen(
        topo.server.exec_argv([XDP_LOADER, *args]),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        out, _ = proc.communicate(timeout=LOADER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=LOADER_TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"xdp-loader {' '.join(map(str, args))} failed: {out}")
    return out


def dispatched(topo):
    """The names of the programs in the dispatcher on the server's end, in
    the order they run, from `xdp-loader status`; None when no dispatcher
    is attached."""
    out = xdp_loader(topo, "status", topo.server_if)
    if "xdp_dispatcher" not in out:
        return None
    names = []
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["=>"] and len(words) >= 3:
            names.append(words[2])
    return names


@pytest.fixture(scope="session")
def dispatcher_works(xdp_topology, bpffs, neighbours):
    """None when libxdp can put a program into a dispatcher on this kernel,
    else why not (xdp-loader's own words)."""
    topo = xdp_topology
    out = xdp_loader(topo, "load", "-v", "-m", "skb", topo.server_if, neighbours[1], check=False)
    try:
        if dispatched(topo) is not None:
            return None
        reasons = [
            line.strip()
            for line in out.splitlines()
            if "ompatibility" in line or "dispatcher" in line
        ]
        return "; ".join(reasons) or out.strip()[-300:]
    finally:
        xdp_loader(topo, "unload", "--all", topo.server_if, check=False)


@pytest.fixture
def dispatcher(xdp_topology, dispatcher_works):
    if dispatcher_works is not None:
        pytest.skip(f"libxdp's dispatcher cannot load on this kernel: {dispatcher_works}")
    yield xdp_topology
    # Whatever a test left: the next one starts from a bare interface.
    xdp_loader(xdp_topology, "unload", "--all", xdp_topology.server_if, check=False)


@pytest.fixture
def dispatcher_conf(tmp_path):
    path = tmp_path / "dispatcher.toml"
    path.write_text(DISPATCHER_CONFIG)
    return path


# ---- traffic -----------------------------------------------------------------


def _answered(topo, port=53):
    query = dnsdiff.make_query("www.example.com.", "A")
    with topo.client.entered():
        return dnsdiff.exchange((topo.server_v4, port), query.to_wire(), timeout=TIMEOUT)


def _xdp_answers(server):
    """Queries answered through XDP: the program's table and the workers."""
    xdp = server.stats()["xdp"]
    return xdp["program"]["answered_in_xdp"] + sum(q["answered"] for q in xdp["queues"])


def _udp_arrives(topo, port):
    """Whether a datagram from the client reaches a socket on the server's
    port (the neighbour drops DROPPED_PORT before the kernel sees it)."""
    with topo.server.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with topo.client.entered():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with listener, sender:
        listener.bind((topo.server_v4, port))
        listener.settimeout(TIMEOUT / 4)
        for _attempt in range(4):
            sender.sendto(b"ping", (topo.server_v4, port))
            try:
                return listener.recv(64) == b"ping"
            except TimeoutError:
                continue
    return False


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _guard_pid(server_pid):
    """The PID of the server's guard process (its child running
    `python -m xdpdns.xdp guard`)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server_pid and b"xdpdns.xdp" in cmdline and b"guard" in cmdline:
            return int(entry.name)
    return None


# ---- a working dispatcher ------------------------------------------------------


def test_answers_beside_a_program_loaded_before(dispatcher, neighbours, xdp_serve, dispatcher_conf):
    """xdp-loader loads the neighbour first; xdpdns joins the dispatcher,
    runs first, answers over XDP, and passes the rest on to the neighbour."""
    topo = dispatcher
    xdp_loader(topo, "load", "-m", "skb", topo.server_if, neighbours[0])
    server = xdp_serve("--config", dispatcher_conf)
    assert dispatched(topo) == ["xdpdns", "xdp_drop_port"], dispatched(topo)
    stats = server.stats()["xdp"]
    assert stats["attach"] == "dispatcher" and stats["prog_id"] > 0, stats
    before = _xdp_answers(server)
    assert _answered(topo) is not None
    assert _xdp_answers(server) > before
    # The neighbour still works: past xdpdns, which passed these on.
    assert not _udp_arrives(topo, DROPPED_PORT)
    assert _udp_arrives(topo, OPEN_PORT)
    table = run_xdpdns_cli("stats", "--control-socket", server.control_socket)
    assert f"in libxdp's dispatcher as program id {stats['prog_id']}" in table.stdout


def test_stop_leaves_a_program_loaded_after(dispatcher, neighbours, xdp_serve, dispatcher_conf):
    topo = dispatcher
    server = xdp_serve("--config", dispatcher_conf)
    xdp_loader(topo, "load", "-m", "skb", topo.server_if, neighbours[0])
    assert dispatched(topo) == ["xdpdns", "xdp_drop_port"], dispatched(topo)
    assert _answered(topo) is not None
    assert server.stop() == 0, server.output()
    assert "Traceback" not in server.output()
    assert dispatched(topo) == ["xdp_drop_port"]
    assert not _udp_arrives(topo, DROPPED_PORT)
    assert _udp_arrives(topo, OPEN_PORT)


def test_alone_in_the_dispatcher_leaves_nothing(dispatcher, xdp_serve, dispatcher_conf):
    """The last program out takes the dispatcher with it."""
    topo = dispatcher
    server = xdp_serve("--config", dispatcher_conf)
    assert dispatched(topo) == ["xdpdns"]
    assert server.stop() == 0, server.output()
    assert dispatched(topo) is None
    assert topo.xdp_attached() is None


def test_kill_9_guard_takes_the_program_out(dispatcher, neighbours, xdp_serve, dispatcher_conf):
    topo = dispatcher
    xdp_loader(topo, "load", "-m", "skb", topo.server_if, neighbours[0])
    server = xdp_serve("--config", dispatcher_conf)
    guard = _guard_pid(server.pid)
    assert guard is not None, "no guard process"
    server.stop(signal.SIGKILL)
    assert _wait_for(lambda: dispatched(topo) == ["xdp_drop_port"]), dispatched(topo)
    assert _wait_for(lambda: not Path(f"/proc/{guard}").exists())
    again = xdp_serve("--config", dispatcher_conf)
    assert dispatched(topo) == ["xdpdns", "xdp_drop_port"]
    before = _xdp_answers(again)
    assert _answered(topo) is not None
    assert _xdp_answers(again) > before


def test_restart_removes_what_a_dead_server_left(
    dispatcher, neighbours, xdp_serve, dispatcher_conf
):
    """Server and guard both killed (as a service manager's SIGKILL to the
    whole unit does): the pinned program stays; the next start takes it out
    and takes its place, without manual cleanup."""
    topo = dispatcher
    xdp_loader(topo, "load", "-m", "skb", topo.server_if, neighbours[0])
    server = xdp_serve("--config", dispatcher_conf)
    guard = _guard_pid(server.pid)
    assert guard is not None, "no guard process"
    os.kill(guard, signal.SIGKILL)  # our server's child, by its PID
    server.stop(signal.SIGKILL)
    assert dispatched(topo) == ["xdpdns", "xdp_drop_port"]  # stale, pinned
    again = xdp_serve("--config", dispatcher_conf)
    assert "took out of the dispatcher an xdpdns program" in again.output()
    assert dispatched(topo) == ["xdpdns", "xdp_drop_port"]
    assert again.stats()["xdp"]["prog_id"] != _logged_prog_id(server)
    assert _answered(topo) is not None
    assert not _udp_arrives(topo, DROPPED_PORT)


def _logged_prog_id(server):
    """The program id a server logged at start (its "xdp ... prog_id=N")."""
    for word in server.output().split():
        if word.startswith("prog_id="):
            return int(word.split("=", 1)[1])
    raise AssertionError("no prog_id= in the log:\n" + server.output())


def test_second_server_on_the_interface_is_refused(dispatcher, xdp_serve, dispatcher_conf):
    """A live xdpdns's program is never taken for a stale one."""
    topo = dispatcher
    xdp_serve("--config", dispatcher_conf)
    second = xdp_serve(
        "--config", dispatcher_conf, "--listen", f"{topo.server_v4}:5353", expect_ready=False
    )
    assert second.proc.wait(timeout=60) == 1
    assert "already serves" in second.output(), second.output()
    assert dispatched(topo) == ["xdpdns"]
    assert _answered(topo) is not None


def test_stop_as_the_dropped_user_leaves_the_dispatcher_clean(
    dispatcher, neighbours, open_dir, xdp_serve
):
    """The server runs as nobody with only CAP_BPF and CAP_NET_ADMIN (which
    cannot open the dispatcher by id nor write its pins); its guard takes
    the program out at stop."""
    topo = dispatcher
    xdp_loader(topo, "load", "-m", "skb", topo.server_if, neighbours[0])
    conf = _serve_conf(open_dir, "", "\n" + DISPATCHER_CONFIG)
    server = xdp_serve("--config", conf, diff_zones=False)
    assert f"running as {NOBODY}:" in server.output()
    assert dispatched(topo) == ["xdpdns", "xdp_drop_port"]
    with topo.client.entered():
        import dns.message
        import dns.query

        answer = dns.query.udp(
            dns.message.make_query("www.example.test.", "A"), topo.server_v4, timeout=3
        )
    assert answer.answer[0][0].to_text() == "198.18.0.1"
    assert server.stop() == 0, server.output()
    assert "dispatcher guard" not in server.output(), server.output()
    assert dispatched(topo) == ["xdp_drop_port"]
    assert not _udp_arrives(topo, DROPPED_PORT)


# ---- errors, on any kernel -----------------------------------------------------


def _failed_start(xdp_serve, *args):
    server = xdp_serve(*args, expect_ready=False)
    assert server.proc.wait(timeout=60) == 1, server.output()
    out = server.output()
    assert "Traceback" not in out
    return out


def test_no_bpffs_is_a_clear_error(xdp_topology, xdp_serve, dispatcher_conf, tmp_path, monkeypatch):
    plain = tmp_path / "not-bpffs"
    plain.mkdir()
    monkeypatch.setenv("LIBXDP_BPFFS", str(plain))
    out = _failed_start(xdp_serve, "--config", dispatcher_conf)
    assert (
        f'xdpdns: error: [xdp] attach = "dispatcher" on {xdp_topology.server_if}: '
        f"no bpffs at {plain}"
    ) in out, out
    assert 'set [xdp] attach = "link"' in out
    assert xdp_topology.xdp_attached() is None


def test_unsupported_kernel_is_a_clear_error(
    xdp_topology, bpffs, dispatcher_works, xdp_serve, dispatcher_conf
):
    """Where the kernel refuses freplace programs libxdp would attach the
    program alone instead: that is refused, and nothing stays attached."""
    if dispatcher_works is None:
        pytest.skip("this kernel runs libxdp's dispatcher")
    out = _failed_start(xdp_serve, "--config", dispatcher_conf)
    assert (
        f"xdpdns: error: the kernel refused libxdp's dispatcher on {xdp_topology.server_if}"
    ) in out, out
    assert 'set [xdp] attach = "link"' in out
    assert xdp_topology.xdp_attached() is None


def test_program_outside_a_dispatcher_is_left_alone(
    xdp_topology, bpffs, xdp_serve, dispatcher_conf
):
    """A program attached without libxdp cannot be shared: a clear error,
    and that program stays where it is."""
    topo = xdp_topology
    attach_pass_program(topo.server, topo.server_if)
    try:
        out = _failed_start(xdp_serve, "--config", dispatcher_conf)
        assert f"is attached to {topo.server_if} outside libxdp's dispatcher" in out, out
        assert topo.xdp_attached() is not None
    finally:
        topo.server.run("ip", "link", "set", "dev", topo.server_if, "xdp", "off", check=False)


def test_link_mode_still_refuses_a_dispatcher(dispatcher, neighbours, xdp_serve):
    """The default, attach = "link", shares the interface with nothing."""
    topo = dispatcher
    xdp_loader(topo, "load", "-m", "skb", topo.server_if, neighbours[1])
    out = _failed_start(xdp_serve)
    assert "already attached" in out, out
    assert dispatched(topo) == ["xdp_pass_all"]


def test_guard_usage_is_checked():
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "xdpdns.xdp", "guard", "eth0"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "usage: python -m xdpdns.xdp guard IFACE PROG_ID" in result.stderr
