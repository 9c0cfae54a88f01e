"""Running under a supervisor: systemd's notify protocol (READY, RELOADING,
STOPPING, WATCHDOG) on a socket the test listens on, the unit in systemd/
checked by systemd-analyze, syslog, and the open-files limit."""

import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_xdpdns_cli, stop_process, wait_ready, xdpdns_command, XdpdnsServe
from xdpdns.config import default_zone_path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "xdpdns.service"


def _datagram_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(0.2)
    return s


def _collect(sock, until, timeout=15.0):
    """Messages received until one satisfies until(message); all of them."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(65536).decode())
        except TimeoutError:
            continue
        if until(got[-1]):
            return got
    raise AssertionError(f"not seen in {timeout} s; got {got}")


def _serve(tmp_path, args, env=None, preexec_fn=None):
    out = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*')))}.log"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            xdpdns_command() + ["serve"] + [str(a) for a in args],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=preexec_fn,
        )
    return XdpdnsServe(proc, "", out)


def test_systemd_notify_ready_reloading_watchdog_stopping(tmp_path):
    notify = tmp_path / "notify.sock"
    control = tmp_path / "ctl.sock"
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="200000")
    with _datagram_socket(notify) as sock:
        server = _serve(tmp_path, ["--listen", "127.0.0.1:0", "--control-socket", control], env=env)
        try:
            wait_ready(server, "xdpdns serve", 30)
            first = _collect(sock, lambda m: "READY=1" in m)
            ready = first[-1].splitlines()
            assert f"MAINPID={server.proc.pid}" in ready
            assert any(line.startswith("STATUS=serving 1 zone on 127.0.0.1:") for line in ready)
            # Twice in the 0.2 s interval: several within a second.
            start = time.monotonic()
            watchdogs = 0
            while time.monotonic() - start < 1.0:
                try:
                    watchdogs += sock.recv(65536).decode() == "WATCHDOG=1"
                except TimeoutError:
                    pass
            assert watchdogs >= 5, watchdogs
            result = run_xdpdns_cli("reload", "--control-socket", control)
            assert result.returncode == 0, result.stderr
            around = _collect(sock, lambda m: m.startswith("READY=1"))
            reloading = [m for m in around if m.startswith("RELOADING=1")]
            assert len(reloading) == 1 and "MONOTONIC_USEC=" in reloading[0]
            assert around.index(reloading[0]) < len(around) - 1
            server.proc.send_signal(signal.SIGTERM)
            _collect(sock, lambda m: m == "STOPPING=1")
            assert server.proc.wait(timeout=15) == 0
        finally:
            stop_process(server.proc)


def test_the_unit_passes_systemd_analyze(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze missing: ./bootstrap installs systemd")
    command = xdpdns_command()
    xdpdns = Path(command[0]).parent / "xdpdns"
    if not xdpdns.exists():
        xdpdns = Path(shutil.which("xdpdns") or command[0])
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "ExecReload=" in text
    unit = tmp_path / "xdpdns.service"
    unit.write_text(text.replace("/opt/xdpdns/.venv/bin/xdpdns", str(xdpdns)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_syslog_gets_the_log_lines(tmp_path):
    syslog = tmp_path / "log.sock"
    conf = tmp_path / "x.toml"
    conf.write_text(f'[server]\nsyslog = "local3"\nsyslog_socket = "{syslog}"\n')
    with _datagram_socket(syslog) as sock:
        server = _serve(
            tmp_path, ["--config", conf, "--listen", "127.0.0.1:0", "--zone", default_zone_path()]
        )
        try:
            wait_ready(server, "xdpdns serve", 30)
            lines = _collect(sock, lambda m: "ready listen=" in m)
        finally:
            stop_process(server.proc)
    # local3 (19) * 8 + info (6)
    assert lines[-1].startswith(f"<158>xdpdns[{server.proc.pid}]: INFO xdpdns.server: ready")
    assert "ready listen=" in server.output()  # stderr as well


def test_open_files_limit_too_low_is_a_clear_error(tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text("[server]\ntcp_max_connections = 5000\n")

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    result = subprocess.run(
        xdpdns_command() + ["serve", "--config", str(conf), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "tcp_max_connections = 5000 needs" in result.stderr
    assert "RLIMIT_NOFILE allows 1024 (hard limit 1024)" in result.stderr


def test_open_files_soft_limit_is_raised_to_what_is_needed(tmp_path, xdpdns_serve):
    """A soft limit below the need and a hard one above it: raised, served."""
    conf = tmp_path / "x.toml"
    conf.write_text("[server]\ntcp_max_connections = 2000\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard open-files limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert int(line.split()[3]) >= 2000
