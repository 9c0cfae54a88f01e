"""Reload: `xdpdns reload` and SIGHUP read the configuration and the zone
files again and publish them while the server answers; anything broken
changes nothing, and the reply and the log say why."""

import json
import signal
import socket
import time

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import pytest

ZONE = """$ORIGIN example.test.
$TTL 300
@ IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@ IN NS ns
ns IN A 198.18.0.53
www IN A 198.18.0.80
"""


def ask(server, qname, qtype="A", via=dns.query.udp, source=None):
    host, port = server.addresses[0]
    return via(dns.message.make_query(qname, qtype), host, port=port, timeout=5, source=source)


def answers(response):
    return [rd.to_text() for rrset in response.answer for rd in rrset]


def start(tmp_path, xdpdns_serve, extra="", zone_keys=""):
    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE)
    conf = tmp_path / "xdpdns.toml"
    control = tmp_path / "c.sock"
    conf.write_text(
        f'[[zone]]\nfile = "{zone}"\n{zone_keys}[server]\ncontrol_socket = "{control}"\n' + extra
    )
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    return server, zone, conf, control


def test_reload_publishes_new_zone_data(tmp_path, xdpdns_serve, xdpdns_cli):
    server, zone, _, control = start(tmp_path, xdpdns_serve)
    assert ask(server, "new.example.test.").rcode() == dns.rcode.NXDOMAIN
    zone.write_text(ZONE + "new IN A 198.18.0.99\n")
    result = xdpdns_cli("reload", "--control-socket", control)
    assert result.returncode == 0, result.stderr
    assert "reloaded zones=1" in result.stdout
    for via in (dns.query.udp, dns.query.tcp):
        assert answers(ask(server, "new.example.test.", via=via)) == ["198.18.0.99"]
    assert "reloaded zones=1" in server.output()


def test_broken_zone_keeps_what_was_served(tmp_path, xdpdns_serve, xdpdns_cli):
    server, zone, _, control = start(tmp_path, xdpdns_serve)
    zone.write_text(ZONE + "new IN A 198.18.0.99\nbad IN A 999.1.1.1\n")
    result = xdpdns_cli("reload", "--control-socket", control)
    assert result.returncode == 1
    # The file and line, and that nothing changed.
    assert f"{zone}:8: error: invalid IPv4 address" in result.stderr
    assert "still serving what was loaded before" in result.stderr
    assert answers(ask(server, "www.example.test.")) == ["198.18.0.80"]
    assert ask(server, "new.example.test.").rcode() == dns.rcode.NXDOMAIN
    assert "reload failed" in server.output()
    # Mended: the next reload takes it.
    zone.write_text(ZONE + "new IN A 198.18.0.99\n")
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    assert answers(ask(server, "new.example.test.")) == ["198.18.0.99"]


def test_sighup_reloads(tmp_path, xdpdns_serve):
    server, zone, _, _ = start(tmp_path, xdpdns_serve)
    zone.write_text(ZONE + "new IN A 198.18.0.99\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reloaded" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answers(ask(server, "new.example.test.")) == ["198.18.0.99"]
    assert server.proc.poll() is None  # still running


def test_reload_changes_policy_and_names_config_errors(tmp_path, xdpdns_serve, xdpdns_cli):
    server, _, conf, control = start(tmp_path, xdpdns_serve)
    base = conf.read_text()
    assert answers(ask(server, "www.example.test.")) == ["198.18.0.80"]
    # The source ACL, and an override, come with a reload.
    conf.write_text(base + '[plugins.acl]\ndeny = ["127.0.0.0/8"]\n')
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    assert ask(server, "www.example.test.").rcode() == dns.rcode.REFUSED
    conf.write_text(
        base + '[plugins.override]\nrules = [{name = "www.example.test.", action = "nxdomain"}]\n'
    )
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    assert ask(server, "www.example.test.").rcode() == dns.rcode.NXDOMAIN
    # A wrong key: named, and nothing changes.
    conf.write_text(base + '[plugins.acl]\ndenny = ["127.0.0.0/8"]\n')
    result = xdpdns_cli("reload", "--control-socket", control)
    assert result.returncode == 1
    assert "plugins.acl" in result.stderr and "denny" in result.stderr
    assert ask(server, "www.example.test.").rcode() == dns.rcode.NXDOMAIN
    # What needs a restart: a warning, the rest applied.
    conf.write_text(base.replace("[server]\n", "[server]\ntcp_idle_timeout = 3\n"))
    result = xdpdns_cli("reload", "--control-socket", control)
    assert result.returncode == 0, result.stderr
    assert "[server] changed: it takes effect when the server restarts" in result.stderr
    assert answers(ask(server, "www.example.test.")) == ["198.18.0.80"]
    stats = json.loads(xdpdns_cli("stats", "--control-socket", control, "--json").stdout)
    assert stats["udp"]["received"] == 5  # every query above: no restart


def test_reload_moves_a_claim_and_refuses_a_new_claimant(tmp_path, xdpdns_serve, xdpdns_cli):
    server, _, conf, control = start(
        tmp_path, xdpdns_serve, '[plugins.whoami]\nname = "me.example.test."\n'
    )
    base = conf.read_text()
    assert answers(ask(server, "me.example.test.")) == ["127.0.0.1"]
    conf.write_text(base.replace("me.example.test.", "who.example.test."))
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    for via in (dns.query.udp, dns.query.tcp):
        assert answers(ask(server, "who.example.test.", via=via)) == ["127.0.0.1"]
    assert ask(server, "me.example.test.").rcode() == dns.rcode.NXDOMAIN


def test_a_claim_needs_the_resolver_the_server_started_with(tmp_path, xdpdns_serve, xdpdns_cli):
    server, _, conf, control = start(tmp_path, xdpdns_serve)
    conf.write_text(conf.read_text() + '[plugins.whoami]\nname = "me.example.test."\n')
    result = xdpdns_cli("reload", "--control-socket", control)
    assert result.returncode == 1
    assert "plugin whoami claims names now but did not when the server started" in result.stderr
    assert answers(ask(server, "www.example.test.")) == ["198.18.0.80"]


@pytest.mark.xdp
def test_xdp_reload_publishes_zone_data_and_the_acl(xdp_topology, xdp_serve, tmp_path, xdpdns_cli):
    """In XDP mode too: the AF_XDP workers answer from the new image, and a
    source the new ACL denies is dropped by the XDP program."""
    topo = xdp_topology
    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE)
    conf = tmp_path / "xdp.toml"
    base = f'[[zone]]\nfile = "{zone}"\n'
    conf.write_text(base)
    server = xdp_serve("--config", conf, diff_zones=False)
    host = topo.server_v4

    def query(qname, timeout=2):
        return dns.query.udp(dns.message.make_query(qname, "A"), host, port=53, timeout=timeout)

    with topo.client.entered():
        assert query("new.example.test.").rcode() == dns.rcode.NXDOMAIN
    zone.write_text(ZONE + "new IN A 198.18.0.99\n")
    result = xdpdns_cli("reload", "--control-socket", server.control_socket)
    assert result.returncode == 0, result.stderr
    with topo.client.entered():
        assert answers(query("new.example.test.")) == ["198.18.0.99"]
    conf.write_text(base + f'[plugins.acl]\ndeny = ["{topo.client_v4}"]\n')
    assert xdpdns_cli("reload", "--control-socket", server.control_socket).returncode == 0
    with topo.client.entered():
        with pytest.raises(dns.exception.Timeout):
            query("new.example.test.", timeout=1)
    program = server.stats()["xdp"]["program"]
    assert program["denied"] >= 1


def test_notify_at_start_and_when_a_reload_changes_the_serial(tmp_path, xdpdns_serve, xdpdns_cli):
    """A secondary on loopback hears NOTIFY (RFC 1996) for the zone at start
    and after a reload that changed the serial, with the new SOA; a reload
    that did not change it sends nothing."""
    secondary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    secondary.bind(("127.0.0.1", 0))

    def heard(timeout=5.0):
        secondary.settimeout(timeout)
        data, sender = secondary.recvfrom(4096)
        message = dns.message.from_wire(data)
        secondary.sendto(dns.message.make_response(message).to_wire(), sender)
        return message

    try:
        target = f"127.0.0.1:{secondary.getsockname()[1]}"
        server, zone, _, control = start(
            tmp_path, xdpdns_serve, zone_keys=f'notify = ["{target}"]\n'
        )
        first = heard()
        assert first.opcode() == dns.opcode.NOTIFY and first.flags & dns.flags.AA
        assert first.question[0].name.to_text() == "example.test."
        assert first.answer[0][0].serial == 1
        zone.write_text(ZONE.replace(" 1 3600 600", " 2 3600 600"))
        assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
        assert heard().answer[0][0].serial == 2
        assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
        with pytest.raises(TimeoutError):
            heard(timeout=1.0)  # the same serial: nothing to tell
        assert "notify example.test. serial 2 to 127.0.0.1" in server.output()
        # Our response was taken as the answer to it (xdpdns/ask.py).
        assert f"notify example.test. serial 2 to {target}: acknowledged" in server.output()
    finally:
        secondary.close()


@pytest.mark.parametrize(
    "value, words",
    [
        ('"198.18.0.2"', "a list of secondaries"),
        ('["example.net"]', "numeric IPv4 or IPv6 address"),
        ('["198.18.0.2:0"]', "port 1-65535"),
    ],
)
def test_notify_config_errors_name_the_zone_and_key(tmp_path, value, words):
    from xdpdns.config import ConfigError, load_config
    from xdpdns.plugins import load_plugins

    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE)
    conf = tmp_path / "bad.toml"
    conf.write_text(f'[[zone]]\nfile = "{zone}"\nnotify = {value}\n')
    with pytest.raises(ConfigError) as info:
        load_config(load_plugins(), conf)
    message = str(info.value)
    assert "zone[1].notify" in message and words in message and "example.test." in message


def test_notify_targets_parse():
    from xdpdns.config import Remote, load_config
    from xdpdns.plugins import load_plugins
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        zone = Path(tmp) / "example.test.zone"
        zone.write_text(ZONE)
        conf = Path(tmp) / "ok.toml"
        conf.write_text(
            f'[[zone]]\nfile = "{zone}"\n'
            'notify = ["198.18.0.2", "[2001:2::2]:5300", "198.18.0.2"]\n'
        )
        (z,) = load_config(load_plugins(), conf).zones
    assert z.notify == (Remote("198.18.0.2", 53), Remote("2001:2::2", 5300))


def test_notify_for_a_zone_that_only_some_may_query(tmp_path, xdpdns_serve):
    """The serial is read from the image, not asked like a client: a zone
    whose allow_query does not hold the server itself still notifies."""
    secondary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    secondary.bind(("127.0.0.1", 0))
    secondary.settimeout(5)
    try:
        target = f"127.0.0.1:{secondary.getsockname()[1]}"
        start(
            tmp_path,
            xdpdns_serve,
            zone_keys=f'notify = ["{target}"]\nallow_query = ["198.18.0.0/15"]\n',
        )
        message = dns.message.from_wire(secondary.recvfrom(4096)[0])
        assert message.opcode() == dns.opcode.NOTIFY
        assert message.question[0].name.to_text() == "example.test."
    finally:
        secondary.close()


# ---- publishing is all or nothing ----------------------------------------------------


class _RecordingEngine:
    """Records what publish sets; set_rrl fails when told to."""

    def __init__(self, fail_rrl=False):
        self.fail_rrl = fail_rrl
        self.calls = []

    def acl_set(self, pairs, default, socket_action):
        self.calls.append(("acl", default))

    def set_cookie_secrets(self, current, previous, require):
        self.calls.append(("cookies", current))

    def set_rrl(self, settings):
        if self.fail_rrl and settings is not None and settings.rate == 7:
            raise OSError(12, "RRL: out of memory")
        self.calls.append(("rrl", None if settings is None else settings.rate))

    def keep_journal(self, image, limits):
        return []

    def set_image(self, image):
        self.calls.append(("image", image))


def _policy(default, secret, rate, image):
    from xdpdns.acl import Acl
    from xdpdns.hookspecs import AddressPolicy, CookieSecrets, RrlSettings
    from xdpdns.image import CompileResult
    from xdpdns.publication import Publication

    compiled = CompileResult.__new__(CompileResult)
    object.__setattr__(compiled, "image", image)
    return Publication(
        compiled,
        Acl((), AddressPolicy(default=default)),
        CookieSecrets(secret),
        RrlSettings(rate=rate),
        [],
        [],
    )


def test_publish_that_fails_half_way_sets_back_what_it_changed():
    """Regression: a reload whose rate limiting the engine refused had
    already switched the ACL, the cookie secret and the image: the server
    ran on half of the new configuration while `reload` said it failed.
    Now the image goes last and the steps before it are set back."""
    from xdpdns.publication import publish

    old = _policy("allow", b"o" * 16, 5, "old image")
    new = _policy("deny", b"n" * 16, 7, "new image")
    engine = _RecordingEngine(fail_rrl=True)
    try:
        publish(engine, new, old)
    except OSError as exc:
        assert "out of memory" in str(exc)
    else:
        raise AssertionError("publish did not fail")
    assert engine.calls == [
        ("acl", "deny"),
        ("cookies", b"n" * 16),
        ("cookies", b"o" * 16),
        ("acl", "allow"),
    ]
    assert ("image", "new image") not in engine.calls
    engine = _RecordingEngine()
    publish(engine, new, old)
    assert engine.calls[-1] == ("image", "new image")
