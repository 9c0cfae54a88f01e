"""xdpdns/config.py: the TOML file and command-line values, parsed into
frozen dataclasses; every error names the file, the key and what was expected."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import dns.name
import pytest

from xdpdns.config import (
    ConfigError,
    ListenAddress,
    Where,
    default_zone_path,
    load_config,
    parse_listen,
    parse_table,
)
from xdpdns.hookspecs import ConfigSection, hookimpl
from xdpdns.plugins import new_plugin_manager

EXAMPLE = dns.name.from_text("example.com.")


class _ZonefileLike:
    """A plugin owning [plugins.demo], like the built-in zonefile plugin."""

    @dataclass(frozen=True)
    class Demo:
        ttl: int = 300
        names: tuple[str, ...] = ()
        enabled: bool = True
        data: Path | None = None

    @hookimpl
    def config_sections(self):
        return [ConfigSection("demo", lambda table, where: parse_table(self.Demo, table, where))]


@pytest.fixture
def pm():
    pm = new_plugin_manager()
    pm.register(_ZonefileLike(), "demo")
    return pm


@pytest.fixture
def write_config(tmp_path):
    def write(text, name="xdpdns.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_full_config(pm, write_config, tmp_path):
    path = write_config(
        """
        [server]
        listen = ["127.0.0.1:5310", "[::1]:5310"]
        udp_workers = 3
        tcp_idle_timeout = 2.5
        tcp_max_connections = 10
        stats_interval = 0
        log_level = "DEBUG"

        [[zone]]
        file = "zones/example.com.zone"

        [[zone]]
        file = "other.db"
        origin = "example.net"

        [plugins.demo]
        ttl = 60
        names = ["a", "b"]
        data = "lists/names.txt"
        """
    )
    config = load_config(pm, path)
    assert config.source == path
    assert config.server.listen == (ListenAddress("127.0.0.1", 5310), ListenAddress("::1", 5310))
    assert [str(a) for a in config.server.listen] == ["127.0.0.1:5310", "[::1]:5310"]
    assert config.server.udp_workers == 3
    assert config.server.tcp_idle_timeout == 2.5
    assert config.server.tcp_max_connections == 10
    assert config.server.stats_interval == 0
    assert config.server.log_level == "debug"
    # Relative zone paths are relative to the config file's directory.
    assert [(z.file, z.origin) for z in config.zones] == [
        (tmp_path / "zones/example.com.zone", EXAMPLE),
        (tmp_path / "other.db", dns.name.from_text("example.net.")),
    ]
    assert config.plugins["demo"] == _ZonefileLike.Demo(
        ttl=60, names=("a", "b"), data=tmp_path / "lists/names.txt"
    )


def test_config_is_frozen(pm, write_config):
    config = load_config(pm, write_config("[server]\nudp_workers = 1\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.udp_workers = 2
    with pytest.raises(TypeError):
        config.plugins["demo"] = None


def test_defaults_serve_the_example_zone(pm):
    config = load_config(pm)
    assert config.source is None
    assert config.server.listen == (ListenAddress("127.0.0.1", 5353),)
    assert config.server.udp_workers >= 1
    assert [(z.file, z.origin) for z in config.zones] == [(default_zone_path(), EXAMPLE)]
    assert default_zone_path().is_file()
    # A plugin's section is parsed even when absent, so it always has its config.
    assert config.plugins["demo"] == _ZonefileLike.Demo()


def test_config_file_without_zones_serves_none(pm, write_config):
    assert load_config(pm, write_config("[server]\n")).zones == ()


def test_command_line_overrides_the_file(pm, write_config, tmp_path):
    path = write_config(
        """
        [server]
        listen = ["127.0.0.1:5310"]
        udp_workers = 3
        [[zone]]
        file = "a.zone"
        """
    )
    config = load_config(
        pm,
        path,
        listen=["127.0.0.2:53", "[::1]"],
        zones=["b.org=x/y.db"],
        udp_workers="2",
        log_level="warning",
    )
    assert config.server.listen == (ListenAddress("127.0.0.2", 53), ListenAddress("::1", 53))
    assert config.server.udp_workers == 2
    assert config.server.log_level == "warning"
    # --zone paths are relative to the working directory, not the file.
    assert [(z.file, z.origin) for z in config.zones] == [
        (Path("x/y.db"), dns.name.from_text("b.org."))
    ]


@pytest.mark.parametrize(
    "option, origin",
    [
        ("example.com.zone", "example.com."),
        ("dir/example.org.zone", "example.org."),
        ("db.example", "db.example."),
        ("example.net=db.example", "example.net."),
        ("example.net.=dir/x.zone", "example.net."),
    ],
)
def test_zone_origin_from_option(pm, option, origin):
    (zone,) = load_config(pm, zones=[option]).zones
    assert zone.origin == dns.name.from_text(origin)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:2::1]:0", ("2001:2::1", 0)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text, Where("f"), "listen") == ListenAddress(*expected)


# (file text, the key the message must name, words the message must hold)
BAD_CONFIGS = [
    ('[server]\nlisten = "127.0.0.1:53"\n', "server.listen", "list"),
    ("[server]\nlisten = []\n", "server.listen", "non-empty"),
    ('[server]\nlisten = ["localhost:53"]\n', "server.listen", "numeric"),
    ('[server]\nlisten = ["127.0.0.1:70000"]\n', "server.listen", "port"),
    ('[server]\nlisten = ["[::1:53"]\n', "server.listen", "[::1]:5353"),
    ('[server]\nlisten = ["127.0.0.1:53", "127.0.0.1:53"]\n', "server.listen", "once"),
    ("[server]\nudp_workers = 0\n", "server.udp_workers", "integer"),
    ('[server]\nudp_workers = "2"\n', "server.udp_workers", "integer"),
    ("[server]\nudp_workers = true\n", "server.udp_workers", "integer"),
    ("[server]\ntcp_idle_timeout = 0\n", "server.tcp_idle_timeout", "seconds"),
    ('[server]\ntcp_idle_timeout = "10s"\n', "server.tcp_idle_timeout", "seconds"),
    ("[server]\ntcp_max_connections = -1\n", "server.tcp_max_connections", "integer"),
    ("[server]\nstats_interval = -5\n", "server.stats_interval", "seconds"),
    ('[server]\nlog_level = "loud"\n', "server.log_level", "debug, info, warning, error"),
    ('[server]\nlisten_on = ["127.0.0.1:53"]\n', "server.listen_on", "unknown key"),
    ("server = 1\n", "server", "table"),
    ('[xpd]\ninterface = "eth0"\n', "xpd", "unknown section"),
    ("[server]\ncontrol_socket = 5\n", "server.control_socket", "unix socket"),
    (
        '[server]\ncontrol_socket = "/' + "x" * 120 + '"\n',
        "server.control_socket",
        "at most 107 bytes",
    ),
    (
        '[xdp]\ninterface = "an-interface-name-too-long"\n',
        "xdp.interface",
        "network interface name",
    ),
    ("[xdp]\ninterface = 5\n", "xdp.interface", "network interface name"),
    ("[xdp]\nqueues = 0\n", "xdp.queues", '"all" or a number'),
    ('[xdp]\nqueues = "some"\n', "xdp.queues", '"all" or a number'),
    ("[xdp]\nfirst_queue = -1\n", "xdp.first_queue", "integer"),
    ("[xdp]\nframes_per_queue = 10\n", "xdp.frames_per_queue", "integer"),
    ("[xdp]\nframe_size = 3000\n", "xdp.frame_size", "2048, 4096"),
    ("[xdp]\nring_size = 1000\n", "xdp.ring_size", "power of two"),
    (
        "[xdp]\nframes_per_queue = 1024\nring_size = 2048\n",
        "xdp.frames_per_queue",
        "at least ring_size",
    ),
    ('[xdp]\nhugepages = "yes"\n', "xdp.hugepages", "'auto', 'required', 'off'"),
    ('[xdp]\nhugepage_size = "4M"\n', "xdp.hugepage_size", "'2M', '1G'"),
    ("[xdp]\nzerocopy = true\n", "xdp.zerocopy", "'auto', 'on', 'off'"),
    ('[xdp]\nmode = "skb"\n', "xdp.mode", "'native', 'generic'"),
    ("[xdp]\nverify_checksums = 1\n", "xdp.verify_checksums", "true or false"),
    ('[xdp]\nbusy_poll = "yes"\n', "xdp.busy_poll", "true or false"),
    ('[xdp]\nanswers = "some"\n', "xdp.answers", "'all', 'off'"),
    ("[xdp]\nanswers = true\n", "xdp.answers", "'all', 'off'"),
    ('[xdp]\nattach = "multi"\n', "xdp.attach", "'link', 'dispatcher'"),
    ("[xdp]\nattach = true\n", "xdp.attach", "'link', 'dispatcher'"),
    ("[xdp]\nbusy_poll_wait_us = -1\n", "xdp.busy_poll_wait_us", "integer"),
    ("[xdp]\nbusy_poll_wait_us = 1000001\n", "xdp.busy_poll_wait_us", "1000000"),
    ("[xdp]\nbusy_poll_wait_us = true\n", "xdp.busy_poll_wait_us", "integer"),
    ("[xdp]\nprogram = 3\n", "xdp.program", "compiled XDP object"),
    ("[xdp]\nports = []\n", "xdp.ports", "non-empty list of UDP ports"),
    ("[xdp]\nports = [70000]\n", "xdp.ports", "UDP ports"),
    ('[xdp]\naddresses = ["localhost"]\n', "xdp.addresses", "numeric"),
    ('[xdp]\nspeed = "fast"\n', "xdp.speed", "unknown key"),
    ('[[zone]]\norigin = "example.com."\n', "zone[1].file", "required"),
    # Secondary zones (primaries): what they must and must not have.
    ('[[zone]]\nprimaries = ["198.18.0.1"]\n', "zone[1].origin", "required"),
    ('[[zone]]\norigin = "s.test."\nprimaries = []\n', "zone[1].primaries", "non-empty"),
    ('[[zone]]\norigin = "s.test."\nprimaries = "198.18.0.1"\n', "zone[1].primaries", "list"),
    ('[[zone]]\norigin = "s.test."\nprimaries = ["198.18.0.1:0"]\n', "zone[1].primaries", "port"),
    ('[[zone]]\norigin = "s.test."\nprimaries = ["0.0.0.0"]\n', "zone[1].primaries", "wildcard"),
    ('[[zone]]\norigin = "s.test."\nprimaries = ["ns1"]\n', "zone[1].primaries", "address"),
    (
        '[[zone]]\norigin = "s.test."\nprimaries = ["198.18.0.1"]\nfile = "s.zone"\n',
        "zone[1].file",
        "no file in a zone with primaries",
    ),
    (
        '[[zone]]\norigin = "s.test."\nprimaries = ["198.18.0.1"]\ndnssec = { keys = ["K"] }\n',
        "zone[1].dnssec",
        "no dnssec in a zone with primaries",
    ),
    (
        '[[zone]]\norigin = "s.test."\nprimaries = ["198.18.0.1"]\nallow_notify = ["10.0.0.1/8"]\n',
        "zone[1].allow_notify",
        "host bits",
    ),
    (
        '[[zone]]\nfile = "a.zone"\nallow_notify = ["10.0.0.0/8"]\n',
        "zone[1].allow_notify",
        "only a zone with primaries",
    ),
    ("[server]\nstorage = 5\n", "server.storage", "directory"),
    ("[[zone]]\nfile = 5\n", "zone[1].file", "path"),
    (
        '[[zone]]\nfile = "a.zone"\n[[zone]]\nfile = "b.zone"\nttl = 5\n',
        "zone[2].ttl",
        "unknown key",
    ),
    ('[[zone]]\nfile = "a.zone"\norigin = "bad..name"\n', "zone[1].origin", "domain name"),
    (
        '[[zone]]\nfile = "x/example.com.zone"\n[[zone]]\nfile = "example.com.zone"\n',
        "zone",
        "each zone once",
    ),
    ('[zone]\nfile = "a.zone"\n', "zone", "[[zone]]"),
    ("[plugins.nosuch]\nx = 1\n", "plugins.nosuch", "no loaded plugin owns it"),
    ('[plugins.demo]\nttl = "long"\n', "plugins.demo.ttl", "integer"),
    ("[plugins.demo]\nnames = [1]\n", "plugins.demo.names", "list of strings"),
    ("[plugins.demo]\nenabled = 1\n", "plugins.demo.enabled", "true or false"),
    ('[plugins.demo]\ncolour = "red"\n', "plugins.demo.colour", "unknown key"),
    ("[plugins]\ndemo = 1\n", "plugins", "[plugins.NAME]"),
    ("[dnstap]\nsample = 2\n", "dnstap.socket", "(required)"),
    ('[dnstap]\nsocket = "t.sock"\nsample = 0\n', "dnstap.sample", "from 1 to"),
    ('[dnstap]\nsocket = "t.sock"\nsample = true\n', "dnstap.sample", "integer"),
    ("[dnstap]\nsocket = 5\n", "dnstap.socket", "unix socket"),
    (
        '[dnstap]\nsocket = "t.sock"\nlog_queries = false\nlog_responses = false\n',
        "dnstap.log_responses",
        "nothing would be logged",
    ),
    (
        '[dnstap]\nsocket = "t.sock"\nidentity = "' + "x" * 256 + '"\n',
        "dnstap.identity",
        "at most 255 bytes",
    ),
    ('[dnstap]\nsocket = "t.sock"\nsink = "t"\n', "dnstap.sink", "unknown key"),
    ("dnstap = 1\n", "dnstap", "a table [dnstap]"),
]


@pytest.mark.parametrize("text, key, words", BAD_CONFIGS)
def test_bad_config_names_file_and_key(pm, write_config, text, key, words):
    path = write_config(text)
    with pytest.raises(ConfigError) as exc:
        load_config(pm, path)
    message = str(exc.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"listen": ["nowhere"]}, "--listen"),
        ({"udp_workers": "many"}, "--udp-workers"),
        ({"udp_workers": "0"}, "--udp-workers"),
        ({"log_level": "verbose"}, "--log-level"),
        ({"zones": ["=a.zone"]}, "--zone"),
        ({"zones": ["example.com="]}, "--zone"),
        ({"zones": ["a.zone", "b/a.zone"]}, "--zone"),
    ],
)
def test_bad_command_line_names_the_option(pm, kwargs, key):
    with pytest.raises(ConfigError) as exc:
        load_config(pm, **kwargs)
    assert str(exc.value).startswith(f"command line: {key}: expected "), str(exc.value)


def test_unreadable_and_invalid_toml(pm, write_config, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(pm, tmp_path / "missing.toml")
    path = write_config("[server\n")
    with pytest.raises(ConfigError, match=f"^{path}: not valid TOML"):
        load_config(pm, path)


def test_section_claimed_twice(pm, write_config):
    pm.register(_ZonefileLike(), "demo-again")
    with pytest.raises(
        ConfigError, match="plugins.demo: .*plugins 'demo' and 'demo-again' both claim it"
    ):
        load_config(pm, write_config(""))


def test_plugin_parser_failure_is_a_config_error(write_config):
    class Broken:
        @hookimpl
        def config_sections(self):
            def parse(table, where):
                raise ValueError("cannot make sense of it")

            return [ConfigSection("broken", parse)]

    pm = new_plugin_manager()
    pm.register(Broken(), "breaker")
    path = write_config("[plugins.broken]\n")
    with pytest.raises(
        ConfigError,
        match=f"^{path}: plugins.broken: the parser of plugin "
        "'breaker' failed: ValueError: cannot make sense",
    ):
        load_config(pm, path)


def test_no_plugin_manager_allows_no_plugin_sections(write_config):
    assert load_config(None, write_config("[server]\n")).plugins == {}
    with pytest.raises(ConfigError, match="plugins.zonefile: unknown section"):
        load_config(None, write_config("[plugins.zonefile]\n"))


# ---- [xdp] -------------------------------------------------------------------


def test_no_xdp_section_is_socket_mode(pm):
    config = load_config(pm)
    assert not config.xdp.enabled and config.xdp.interface is None


def test_xdp_section(pm, write_config):
    text = """
[server]
listen = ["198.18.0.1:53", "[2001:2::1]:53"]
control_socket = "run/ctl.sock"
[xdp]
interface = "veth0"
queues = 2
first_queue = 1
frames_per_queue = 8192
frame_size = 4096
ring_size = 4096
hugepages = "required"
hugepage_size = "1G"
zerocopy = "off"
mode = "generic"
verify_checksums = false
busy_poll = false
answers = "off"
attach = "dispatcher"
busy_poll_wait_us = 0
program = "custom.bpf.o"
ports = [53, 5353, 53]
addresses = ["198.18.0.1", "2001:2:0::1"]
"""
    path = write_config(text)
    config = load_config(pm, path)
    assert config.server.control_socket == path.parent / "run/ctl.sock"
    x = config.xdp
    assert x.enabled and x.interface == "veth0"
    assert (x.queues, x.first_queue, x.frames_per_queue, x.frame_size, x.ring_size) == (
        2,
        1,
        8192,
        4096,
        4096,
    )
    assert (x.hugepages, x.hugepage_mb, x.zerocopy, x.mode) == ("required", 1024, "off", "generic")
    assert x.verify_checksums is False and x.busy_poll is False and x.answers == "off"
    assert x.busy_poll_wait_us == 0 and x.attach == "dispatcher"
    assert x.program == path.parent / "custom.bpf.o"
    assert x.ports == (53, 5353)
    assert x.addresses == ("198.18.0.1", "2001:2::1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.queues = 3


def test_xdp_defaults_and_addresses_from_listen(pm):
    config = load_config(
        pm,
        listen=[
            "198.18.0.1:53",
            "[2001:2::1]:53",
            "127.0.0.1:53",
            "[::1]:53",
            "0.0.0.0:5353",
            "[::]:5353",
            "198.18.0.1:5300",
        ],
        xdp_interface="veth0",
    )
    x = config.xdp
    assert x.interface == "veth0" and x.queues == 0 and x.ports == (53,)
    assert (x.frames_per_queue, x.frame_size, x.ring_size) == (4096, 2048, 2048)
    assert (x.hugepages, x.hugepage_size, x.zerocopy, x.mode) == ("auto", "2M", "auto", "native")
    assert x.verify_checksums is True and x.answers == "all" and x.attach == "link"
    # Neither wildcards nor loopback; each address once.
    assert x.addresses == ("198.18.0.1", "2001:2::1")


def test_xdp_queues_all_and_explicit_empty_addresses(pm, write_config):
    path = write_config('[xdp]\nqueues = "all"\naddresses = []\n')
    config = load_config(pm, path, listen=["198.18.0.1:53"], xdp_interface="veth1")
    assert config.xdp.queues == 0
    assert config.xdp.addresses == ()  # given empty: every destination
    assert config.xdp.interface == "veth1"  # --xdp over the file


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"xdp_interface": "x" * 16}, "--xdp"),
        ({"control_socket": "/" + "y" * 200}, "--control-socket"),
    ],
)
def test_bad_xdp_command_line_values(pm, kwargs, key):
    with pytest.raises(ConfigError, match=f"^command line: {key}: expected"):
        load_config(pm, **kwargs)


def test_busy_poll_wait_limit_is_the_engines():
    """config.py checks busy_poll_wait_us against the same limit as the
    engine's xd_xdp_check_config (engine.h, XD_BUSY_POLL_WAIT_MAX_US)."""
    from xdpdns.config import BUSY_POLL_WAIT_MAX_US
    from xdpdns.engine._c import lib

    assert BUSY_POLL_WAIT_MAX_US == lib.XD_BUSY_POLL_WAIT_MAX_US
