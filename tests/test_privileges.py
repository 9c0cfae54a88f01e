"""[server] user and group: xdpdns starts as root and runs as the user once
its sockets (and in XDP mode its program and AF_XDP sockets) are set up.
Checked in /proc: every thread's user, and the capabilities each keeps.
These start servers as root and become the system's "nobody"."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dns.message
import dns.query
import pytest

from conftest import run_xdpdns_cli
from xdpdns.config import ConfigError, load_config
from zoneimage import SERIAL_ZONE
from xdpdns.privileges import CAP_BPF, CAP_NET_ADMIN, PrivilegeError, run_as

NOBODY = "nobody"


def _skip_unless_root_and_nobody():
    if os.geteuid() != 0:
        pytest.skip("starting as root and switching users needs root; CI runs as root")
    try:
        pwd.getpwnam(NOBODY)
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    probe = subprocess.run(
        [
            "runuser",
            "-u",
            NOBODY,
            "--",
            sys.executable,
            "-c",
            "import xdpdns.server, dns.rdtypes.IN.A",
        ],
        capture_output=True,
        timeout=30,
        cwd="/",
    )
    if probe.returncode != 0:
        pytest.skip(
            "user nobody cannot read this installation (a home directory that only root may enter)"
        )


@pytest.fixture
def open_dir():
    """A directory that the user nobody may read: the zone and the config."""
    _skip_unless_root_and_nobody()
    path = Path(tempfile.mkdtemp(prefix="xdpdns-priv-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _write(path, text, mode=0o644):
    path.write_text(text)
    path.chmod(mode)
    return path


def _status(task_dir):
    fields = {}
    for line in (task_dir / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def _threads(pid):
    """Each thread's (uids, effective capabilities) of process pid."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = _status(task)
        out[int(task.name)] = ([int(u) for u in fields["Uid"]], int(fields["CapEff"][0], 16))
    return out


def _serve_conf(directory, listen, extra=""):
    zone = _write(directory / "example.test.zone", SERIAL_ZONE.format(serial=1))
    return _write(
        directory / "xdpdns.toml",
        f'[server]\nuser = "{NOBODY}"\n{listen}{extra}\n[[zone]]\nfile = "{zone}"\n',
    )


def _ask(address, tcp=False):
    query = dns.message.make_query("www.example.test.", "A")
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, address[0], port=address[1], timeout=3)


def test_socket_mode_runs_as_the_user_without_capabilities(open_dir, xdpdns_serve):
    """Every thread runs as nobody with no capability left; it answers over
    UDP and TCP, and a reload reads the changed zone as nobody."""
    nobody = pwd.getpwnam(NOBODY)
    conf = _serve_conf(
        open_dir, f'listen = ["127.0.0.1:0"]\ncontrol_socket = "{open_dir / "ctl.sock"}"\n'
    )
    server = xdpdns_serve("--config", conf)
    assert f"running as {NOBODY}:" in server.output()
    threads = _threads(server.proc.pid)
    assert len(threads) > 2  # the UDP workers too
    for uids, caps in threads.values():
        assert uids == [nobody.pw_uid] * 4 and caps == 0
    main = _status(Path(f"/proc/{server.proc.pid}"))
    assert int(main["CapBnd"][0], 16) == 0 and int(main["CapPrm"][0], 16) == 0
    address = server.addresses[0]
    for tcp in (False, True):
        assert _ask(address, tcp).answer[0][0].to_text() == "198.18.0.1"
    _write(open_dir / "example.test.zone", SERIAL_ZONE.format(serial=2))
    result = run_xdpdns_cli("reload", "--control-socket", open_dir / "ctl.sock")
    assert result.returncode == 0, result.stderr
    assert _ask(address).answer[0][0].to_text() == "198.18.0.2"


def test_zone_the_user_cannot_read_fails_at_start(open_dir, tmp_path):
    """A zone file only root may read is refused at start, naming the file:
    the server could not read it on reload either."""
    conf = _serve_conf(open_dir, 'listen = ["127.0.0.1:0"]\n')
    (open_dir / "example.test.zone").chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "xdpdns", "serve", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(open_dir / "example.test.zone") in result.stderr
    assert "Permission denied" in result.stderr


def test_user_settings_are_checked(tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text('[server]\nuser = "no-such-user-xdpdns"\n')
    with pytest.raises(
        ConfigError,
        match=r"user: expected a user that exists on this machine \(create it: useradd",
    ):
        load_config(None, conf)
    conf.write_text('[server]\nuser = ""\n')
    with pytest.raises(ConfigError, match="user: expected the name of a user"):
        load_config(None, conf)
    conf.write_text('[server]\nuser = "nobody"\ngroup = "no-such-group-xdpdns"\n')
    with pytest.raises(ConfigError, match="group: expected a group that exists"):
        load_config(None, conf)
    conf.write_text('[server]\nsyslog = "kern"\n')
    with pytest.raises(ConfigError, match="syslog: expected a syslog facility: daemon, user"):
        load_config(None, conf)
    with pytest.raises(PrivilegeError, match="is root"):
        run_as("root", None)
    with pytest.raises(PrivilegeError, match="needs \\[server\\] user"):
        run_as(None, "nogroup")


def test_user_without_starting_as_root_is_a_clear_error(tmp_path):
    """Started by another user, the server says it must start as root."""
    _skip_unless_root_and_nobody()
    directory = Path(tempfile.mkdtemp(prefix="xdpdns-priv-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        conf = _serve_conf(directory, 'listen = ["127.0.0.1:0"]\n')
        result = subprocess.run(
            [
                "runuser",
                "-u",
                NOBODY,
                "--",
                sys.executable,
                "-m",
                "xdpdns",
                "serve",
                "--config",
                str(conf),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            stdin=subprocess.DEVNULL,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "start the server as root" in result.stderr


@pytest.mark.xdp
def test_xdp_mode_keeps_only_the_map_capabilities(open_dir, xdp_topology, xdp_serve):
    """In XDP mode the main thread keeps CAP_BPF and CAP_NET_ADMIN, every
    other thread none; the table answers, and reloads that build new maps
    (a new answer table, rate limiting turned on) work as nobody."""
    topo = xdp_topology
    nobody = pwd.getpwnam(NOBODY)
    conf = _serve_conf(open_dir, "")
    server = xdp_serve("--config", conf, diff_zones=False)
    threads = _threads(server.proc.pid)
    keep = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN)
    assert threads.pop(server.proc.pid)[1] == keep
    for uids, caps in threads.values():
        assert uids == [nobody.pw_uid] * 4 and caps == 0
    main = _status(Path(f"/proc/{server.proc.pid}"))
    assert int(main["CapBnd"][0], 16) == keep
    assert "with CAP_BPF and CAP_NET_ADMIN" in server.output()

    def ask():
        with topo.client.entered():
            return _ask((topo.server_v4, 53)).answer[0][0].to_text()

    assert ask() == "198.18.0.1"
    _write(open_dir / "example.test.zone", SERIAL_ZONE.format(serial=2))
    _write(conf, conf.read_text() + "[plugins.rrl]\nenabled = true\nrate = 1000\n")
    result = run_xdpdns_cli("reload", "--control-socket", server.control_socket)
    assert result.returncode == 0, result.stderr
    assert ask() == "198.18.0.2"
    stats = server.stats()["xdp"]
    assert stats["answers"]["state"] == "on", stats["answers"]
    assert stats["program"]["answered_in_xdp"] == 2
