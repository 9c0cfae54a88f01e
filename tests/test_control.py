"""xdpdns/control.py: the control socket of a running server and
`xdpdns stats` (socket mode here; XDP mode's counters in test_xdp.py)."""

import json
import os
import socket
import stat

import dns.message
import dns.query

from xdpdns.control import format_stats


def _ask(host, port, tcp=False):
    query = dns.message.make_query("www.example.com.", "A")
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, host, port=port, timeout=5)


def test_stats_of_a_socket_mode_server(xdpdns_serve, xdpdns_cli, tmp_path):
    path = tmp_path / "ctl.sock"
    server = xdpdns_serve("--listen", "127.0.0.1:0", "--control-socket", path)
    assert f"control_socket={path}" in server.ready_line
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    host, port = server.addresses[0]
    _ask(host, port)
    _ask(host, port, tcp=True)

    result = xdpdns_cli("stats", "--control-socket", path, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["udp"]["answered"] >= 1
    assert sum(w["answered"] for w in stats["udp_workers"]) == stats["udp"]["answered"]
    assert stats["tcp"]["answered"] >= 1
    assert stats["xdp"] is None

    table = xdpdns_cli("stats", "--control-socket", path)
    assert table.returncode == 0, table.stderr
    assert "UDP (socket mode)" in table.stdout and "XDP: off" in table.stdout

    assert server.stop() == 0
    assert not path.exists(), "the control socket outlived the server"


def test_stats_with_no_server(xdpdns_cli, tmp_path):
    result = xdpdns_cli("stats", "--control-socket", tmp_path / "none.sock")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no xdpdns server runs on the control socket" in result.stderr


def test_stats_reads_the_socket_from_the_config(xdpdns_serve, xdpdns_cli, tmp_path):
    path = tmp_path / "from-config.sock"
    config = tmp_path / "xdpdns.toml"
    config.write_text(f'[server]\nlisten = ["127.0.0.1:0"]\ncontrol_socket = "{path}"\n')
    xdpdns_serve("--config", config, "--zone", "example.com.zone", cwd=_zones_dir())
    result = xdpdns_cli("stats", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    assert "udp" in json.loads(result.stdout)


def test_stale_socket_is_replaced(xdpdns_serve, xdpdns_cli, tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound and closed: what a killed server leaves
    xdpdns_serve("--listen", "127.0.0.1:0", "--control-socket", path)
    assert xdpdns_cli("stats", "--control-socket", path).returncode == 0


def test_configured_socket_in_use_is_an_error(xdpdns_serve, xdpdns_cli, tmp_path):
    path = tmp_path / "busy.sock"
    xdpdns_serve("--listen", "127.0.0.1:0", "--control-socket", path)
    result = xdpdns_cli("serve", "--listen", "127.0.0.1:0", "--control-socket", path, timeout=30)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "another xdpdns server answers there" in result.stderr


def _zones_dir():
    from xdpdns.config import default_zone_path

    return default_zone_path().parent


def test_format_stats_tables():
    queue = dict(
        queue=0,
        received=10,
        answered=9,
        dropped=1,
        bad_checksum=0,
        malformed=1,
        truncated=0,
        tx_full=0,
        kicks=3,
        batches=4,
        frames_fill=2000,
        frames_rx=0,
        frames_tx=0,
        frames_free=2096,
        frames_total=4096,
        frames_accounted=4096,
        cpu=1,
    )
    cpu = dict(seen=12, redirected=10, passed=2, dropped=0, malformed=0)
    stats = {
        "udp": dict(received=1, answered=1, dropped=0, truncated=0, batches=1),
        "udp_workers": [dict(received=1, answered=1, dropped=0, truncated=0, batches=1)],
        "tcp": dict(connections=0, rejected=0, received=0, answered=0, idle_closed=0),
        "xdp": {
            "interface": "veth0",
            "mode": "native",
            "zerocopy": False,
            "busy_poll": True,
            "hugepages": True,
            "numa_node": -1,
            "umem_bytes": 8 << 20,
            "first_queue": 0,
            "warnings": ["w1"],
            "queues": [queue, dict(queue, queue=1, cpu=0)],
            "cpus": [dict(cpu, cpu=0), dict(cpu, cpu=1)],
            "program": dict(
                {k: 2 * v for k, v in cpu.items()},
                answered_in_xdp=7,
                answered_in_xdp_rcodes={"NOERROR": 6, "REFUSED": 1},
            ),
            "ports": {"53": ["redirect", "redirect"], "54": ["redirect", "4343432"]},
            "answers": dict(
                state="on",
                names=5,
                entries=9,
                skipped=1,
                pages=1,
                bytes=4096,
                compile_seconds=0.0015,
                install_seconds=0.002,
                message="",
            ),
        },
    }
    text = format_stats(stats)
    assert (
        "XDP on veth0: native mode, zerocopy off, busy polling on, hugepages yes, NUMA node -1"
        in text
    )
    assert "warning: w1" in text
    assert "AF_XDP queues" in text and "XDP program" in text
    assert "53: redirect (on all 2 possible CPUs)" in text
    assert "54: per CPU redirect 4343432  (INCONSISTENT" in text
    assert "answered_in_xdp" in text
    assert "answered in XDP by RCODE: NOERROR 6, REFUSED 1" in text
    assert (
        "answer table: on, 9 entries for 5 names (1 answers left to the workers), "
        "1 pages, 4096 bytes, compiled in 0.002 s, installed in 0.002 s"
    ) in text
    stats["xdp"]["answers"] = dict(
        stats["xdp"]["answers"], state="paused", message="rate limiting is on"
    )
    assert "answer table: paused: rate limiting is on" in format_stats(stats)


def test_control_socket_in_a_directory_others_can_write_is_refused(xdpdns_cli, tmp_path):
    """Regression: the socket was made in any directory, where another user
    could remove it and put their own in its place (and be asked `reload`
    by the operator's `xdpdns reload`)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit
    result = xdpdns_cli(
        "serve", "--listen", "127.0.0.1:0", "--control-socket", shared / "ctl.sock", timeout=30
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "writable by other users (mode 777)" in result.stderr


def test_control_socket_of_another_user_is_refused(xdpdns_cli, tmp_path):
    if os.geteuid() != 0:
        import pytest

        pytest.skip("making a socket owned by another user needs root")
    path = tmp_path / "theirs.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
    os.chown(path, 65534, 65534)
    result = xdpdns_cli("serve", "--listen", "127.0.0.1:0", "--control-socket", path, timeout=30)
    assert result.returncode == 1
    assert "belongs to uid 65534" in result.stderr


def test_control_requests_from_other_users_are_refused(xdpdns_serve, tmp_path):
    """Regression: the peer was not checked, so a socket made readable (a
    chmod, an ACL) let any local user reload the server.  SO_PEERCRED: only
    root and the server's own user are answered."""
    import subprocess
    import sys

    import pytest

    if os.geteuid() != 0:
        pytest.skip("asking as another user needs root (runuser)")
    import shutil
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="xdpdns-ctl-", dir="/tmp"))
    directory.chmod(0o755)
    path = directory / "ctl.sock"
    xdpdns_serve("--listen", "127.0.0.1:0", "--control-socket", path)
    os.chmod(path, 0o666)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(path)!r})\n"
        "s.sendall(b'reload\\n')\n"
        "print(s.makefile().readline())\n"
    )
    try:
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if result.returncode != 0 and "Permission denied" in result.stderr:
        pytest.skip("nobody cannot reach the temporary directory here")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply == {"error": "uid 65534 may not use this control socket: only root and uid 0 may"}
