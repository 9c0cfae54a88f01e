"""xdpdns/cli.py and xdpdns/server.py seen from outside: exit codes and
messages of `xdpdns check` and `xdpdns serve`, and the server's life."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

GOOD_ZONE = """\
$TTL 300
@       SOA  ns1 hostmaster 1 7200 3600 1209600 300
        NS   ns1
ns1     A    198.18.0.2
www     A    198.18.0.80
"""

# Line numbers matter: the tests below expect problems on these lines.
BROKEN_ZONE = """\
$TTL 300
@       SOA  ns1 hostmaster 1 7200 3600 1209600 300
        NS   ns1
ns1     A    198.18.0.2
www     A    198.18.0.80
www     CNAME ns1
bad     A    198.18.0
elsewhere.example.net. A 198.18.0.3
"""
BROKEN_LINES = {6, 7, 8}

PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<severity>error|warning): .+$")


def _problems(text):
    """(file, line, severity) of every FILE:LINE: problem line in text."""
    found = []
    for line in text.splitlines():
        m = PROBLEM_LINE.match(line)
        if m:
            found.append((m["file"], int(m["line"]), m["severity"]))
    return found


def _no_traceback(result):
    assert "Traceback" not in result.stderr + result.stdout


def ask(host, port, name, rdtype="A", tcp=False):
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, host, port=port, timeout=5)


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---- check ---------------------------------------------------------------------


def test_check_good_zone(xdpdns_cli, xdpdns_write_zone):
    path = xdpdns_write_zone("example.org.zone", GOOD_ZONE)
    result = xdpdns_cli("check", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1 zone checked: 0 errors, 0 warnings"


def test_check_broken_zone_lists_every_problem_with_file_and_line(xdpdns_cli, xdpdns_write_zone):
    path = xdpdns_write_zone("example.org.zone", BROKEN_ZONE)
    result = xdpdns_cli("check", path)
    assert result.returncode == 1
    _no_traceback(result)
    errors = {
        line
        for file, line, severity in _problems(result.stdout)
        if file == str(path) and severity == "error"
    }
    assert errors == BROKEN_LINES, result.stdout
    assert result.stdout.strip().splitlines()[-1] == "1 zone checked: 3 errors, 0 warnings"


def test_check_several_files_and_origins(xdpdns_cli, xdpdns_write_zone):
    good = xdpdns_write_zone("example.org.zone", GOOD_ZONE)
    other = xdpdns_write_zone("db.other", GOOD_ZONE)
    result = xdpdns_cli("check", good, f"example.net={other}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 zones checked: 0 errors, 0 warnings" in result.stdout


def test_check_warning_only_exits_0(xdpdns_cli, xdpdns_write_zone):
    path = xdpdns_write_zone("example.org.zone", GOOD_ZONE.replace("ns1     A    198.18.0.2\n", ""))
    result = xdpdns_cli("check", path)
    assert result.returncode == 0, result.stdout
    assert (str(path), 3, "warning") in _problems(result.stdout)
    assert "0 errors, 1 warning" in result.stdout


def test_check_problem_in_included_file_names_that_file(xdpdns_cli, xdpdns_write_zone):
    xdpdns_write_zone("hosts.inc", "ok A 198.18.0.9\nbroken A not-an-address\n")
    path = xdpdns_write_zone("example.org.zone", GOOD_ZONE + "$INCLUDE hosts.inc\n")
    result = xdpdns_cli("check", path)
    assert result.returncode == 1
    assert [
        (f.rsplit("/", 1)[-1], line) for f, line, sev in _problems(result.stdout) if sev == "error"
    ] == [("hosts.inc", 2)], result.stdout


def test_check_missing_file(xdpdns_cli, tmp_path):
    result = xdpdns_cli("check", tmp_path / "nothere.zone")
    assert result.returncode == 1
    _no_traceback(result)
    assert f"{tmp_path / 'nothere.zone'}" in result.stdout


def test_check_with_config(xdpdns_cli, xdpdns_write_zone, tmp_path):
    xdpdns_write_zone("zones/example.org.zone", BROKEN_ZONE)
    conf = tmp_path / "xdpdns.toml"
    conf.write_text('[[zone]]\nfile = "zones/example.org.zone"\n')
    result = xdpdns_cli("check", "--config", conf, cwd="/")
    assert result.returncode == 1
    assert {
        line
        for f, line, sev in _problems(result.stdout)
        if f == str(tmp_path / "zones/example.org.zone")
    } == BROKEN_LINES


def test_check_needs_something_to_check(xdpdns_cli):
    result = xdpdns_cli("check")
    assert result.returncode == 2
    assert "give zone files or --config" in result.stderr


# ---- serve refusing to start ---------------------------------------------------


def test_serve_refuses_a_broken_zone_with_the_check_message(xdpdns_cli, xdpdns_write_zone):
    path = xdpdns_write_zone("example.org.zone", BROKEN_ZONE)
    served = xdpdns_cli("serve", "--listen", "127.0.0.1:0", "--zone", path)
    assert served.returncode == 1
    _no_traceback(served)
    checked = xdpdns_cli("check", path)
    # The same problem lines, in the same order, on stderr.
    problem_lines = [line for line in checked.stdout.splitlines() if PROBLEM_LINE.match(line)]
    assert [
        line for line in served.stderr.splitlines() if PROBLEM_LINE.match(line)
    ] == problem_lines
    assert served.stderr.splitlines()[-1] == "xdpdns: error: 3 errors in the zone data; not serving"
    assert " ready " not in served.stderr


@pytest.mark.parametrize(
    "toml, words",
    [
        ('[server]\nudp_workers = "two"\n', "server.udp_workers: expected an integer"),
        ('[server]\nlisten = ["127.0.0.1"]\nport = 53\n', "server.port: expected one of"),
        ("[plugins.nosuch]\n", "plugins.nosuch: unknown section"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_serve_bad_config(xdpdns_cli, tmp_path, toml, words):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(toml)
    result = xdpdns_cli("serve", "--config", conf)
    assert result.returncode == 1
    _no_traceback(result)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"xdpdns: error: {conf}: ")
    assert words in line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--listen", "localhost:53"], "command line: --listen: expected"),
        (["--udp-workers", "0"], "command line: --udp-workers: expected"),
        (["--log-level", "chatty"], "command line: --log-level: expected one of"),
    ],
)
def test_serve_bad_option(xdpdns_cli, args, words):
    result = xdpdns_cli("serve", *args)
    assert result.returncode == 1
    _no_traceback(result)
    assert result.stderr.startswith(f"xdpdns: error: {words}")


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_serve_address_in_use(xdpdns_cli, kind):
    with socket.socket(socket.AF_INET, kind) as busy:
        busy.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            busy.listen()
        port = busy.getsockname()[1]
        result = xdpdns_cli("serve", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    _no_traceback(result)
    assert "Address already in use" in result.stderr
    assert f"{port}" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_serve_address_not_ours(xdpdns_cli):
    # 198.18.0.1 is not configured here: binding fails before any packet is sent.
    result = xdpdns_cli("serve", "--listen", "198.18.0.1:5353")
    assert result.returncode == 1
    _no_traceback(result)
    assert "198.18.0.1:5353" in result.stderr


# ---- serving -------------------------------------------------------------------


def test_serve_example_zone_by_default_and_stop_on_sigterm(xdpdns_serve):
    server = xdpdns_serve("--listen", "127.0.0.1:0", "--udp-workers", "2")
    assert "zones=1" in server.ready_line and "udp_workers=2" in server.ready_line
    ((host, port),) = server.addresses
    for tcp in (False, True):
        response = ask(host, port, "www.example.com.", tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.answer and response.answer[0].name.to_text() == "www.example.com."
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in server.output()


def test_serve_stops_on_sigint(xdpdns_serve):
    server = xdpdns_serve("--listen", "127.0.0.1:0", "--udp-workers", "1")
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.output()


def test_serve_with_no_arguments_on_port_5353(xdpdns_serve):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", 5353))
            except OSError:
                pytest.skip("127.0.0.1:5353 is in use here")
    server = xdpdns_serve()
    assert server.addresses == [("127.0.0.1", 5353)]
    assert ask("127.0.0.1", 5353, "www.example.com.").rcode() == dns.rcode.NOERROR
    assert server.stop() == 0


def test_serve_exactly_the_given_zones(xdpdns_serve, xdpdns_write_zone):
    path = xdpdns_write_zone("example.org.zone", GOOD_ZONE)
    server = xdpdns_serve("--listen", "127.0.0.1:0", "--zone", path, "--udp-workers", "1")
    ((host, port),) = server.addresses
    assert ask(host, port, "www.example.org.").answer[0][0].to_text() == "198.18.0.80"
    assert ask(host, port, "www.example.com.").rcode() == dns.rcode.REFUSED


def test_serve_from_config(xdpdns_serve, xdpdns_write_zone, tmp_path):
    xdpdns_write_zone("zones/db.org", GOOD_ZONE)
    listen = ['"127.0.0.1:0"'] + (['"[::1]:0"'] if _ipv6_loopback() else [])
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        f'[server]\nlisten = [{", ".join(listen)}]\nudp_workers = 1\nlog_level = "debug"\n'
        '[[zone]]\nfile = "zones/db.org"\norigin = "example.org."\n'
    )
    server = xdpdns_serve("--config", conf, cwd="/")
    assert len(server.addresses) == len(listen)
    for host, port in server.addresses:
        for tcp in (False, True):
            response = ask(host, port, "www.example.org.", tcp=tcp)
            assert response.answer[0][0].to_text() == "198.18.0.80"
    assert server.stop() == 0


def test_serve_without_permission_for_the_port(tmp_path):
    """A privileged port as an unprivileged user: one message, exit 1."""
    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None:
        pytest.skip("needs root and runuser to become an unprivileged user")
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        start = 1024
    if start <= 53:
        pytest.skip("port 53 is not privileged here")
    as_nobody = [runuser, "-u", "nobody", "--", sys.executable]
    probe = subprocess.run(
        as_nobody + ["-c", "import xdpdns.cli"], capture_output=True, timeout=30, cwd="/"
    )
    if probe.returncode != 0:
        pytest.skip("user nobody cannot read this installation")
    result = subprocess.run(
        as_nobody + ["-m", "xdpdns", "serve", "--listen", "127.0.0.1:53"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == "xdpdns: error: cannot listen on 127.0.0.1:53 (tcp): Permission denied"
    )


def test_every_subpackage_is_installed():
    """The bug: xdpdns/secondary/ was not in pyproject's packages, so a
    non-editable install (the ASan venv, a user's `pip install .`) had no
    xdpdns.secondary and `xdpdns serve` failed to import."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(root).parts)
        for p in (root / "xdpdns").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found - listed == set()
