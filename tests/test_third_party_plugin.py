"""A third-party plugin, installed the way a user installs one: the package in
tests/plugin_pkg/ is installed with pip (offline, into a directory of its own,
never into the environment running the tests) and found through its own
`xdpdns` entry point.  It loads, owns [plugins.example], reports its
configuration errors with its name, serves its zone, shows in `xdpdns
plugins`, and goes before the built-in zonefile plugin because it says so."""

import shutil
import subprocess
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from test_plugins import parse_plugins_listing
from xdpdns.config import ConfigError, default_zone_path, load_config
from xdpdns.hookspecs import ZoneData, ZoneFile
from xdpdns.image import collect_sources
from xdpdns.plugins import hook_order, load_plugins, plugin_infos, plugin_order

PACKAGE = Path(__file__).resolve().parent / "plugin_pkg"
DIST, VERSION, MODULE = "xdpdns-example-plugin", "0.3.1", "xdpdns_example_plugin"
EXAMPLE_TEST = dns.name.from_text("example.test.")
EXAMPLE_COM = dns.name.from_text("example.com.")


@pytest.fixture(scope="session")
def example_site(tmp_path_factory):
    """The directory pip installed the example plugin package into."""
    work = tmp_path_factory.mktemp("plugin-pkg")
    source = work / "src"  # pip builds in the tree: a copy keeps tests/ clean
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__"))
    site = work / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        pytest.fail(f"pip could not install {PACKAGE}:\n{result.stdout}{result.stderr}")
    return site


@pytest.fixture
def example_plugin(example_site, monkeypatch):
    """The example plugin on sys.path (for load_plugins here) and PYTHONPATH
    (for the xdpdns commands the test runs), for this test only."""
    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.setenv("PYTHONPATH", str(example_site))
    yield example_site
    sys.modules.pop(MODULE, None)


def test_it_loads_through_its_own_entry_point(example_plugin):
    pm = load_plugins()
    plugin = pm.get_plugin("example")
    assert plugin.__name__ == MODULE
    assert Path(plugin.__file__).parent == example_plugin
    (dist,) = [d for p, d in pm.list_plugin_distinfo() if p is plugin]
    assert (dist.project_name, dist.version) == (DIST, VERSION)
    (info,) = [i for i in plugin_infos(pm) if i.name == "example"]
    assert info.origin == f"{DIST} {VERSION} ({MODULE})"
    assert info.hooks == ("config_sections", "zone_sources")
    assert (info.before, info.after, info.marks) == (("zonefile",), (), ())


def test_it_is_not_installed_where_the_tests_run(example_site, xdpdns_cli, tmp_path):
    # Without its directory on the path, nothing knows it: its section is
    # then unknown, as for a user who forgot to install it.
    assert "example" not in plugin_order(load_plugins())
    conf = tmp_path / "xdpdns.toml"
    conf.write_text('[plugins.example]\norigin = "corp.test."\n')
    result = xdpdns_cli("check", "--config", conf)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"xdpdns: error: {conf}: plugins.example: unknown section: "
        "no loaded plugin owns it (known sections: "
    )


def test_it_gets_its_own_config_section(example_plugin, tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text('[plugins.example]\norigin = "corp.test."\naddress = "198.18.7.9"\n')
    pm = load_plugins()
    config = load_config(pm, conf)
    parsed = config.plugins["example"]
    assert type(parsed).__module__ == MODULE
    assert (parsed.origin, parsed.address, parsed.ttl) == ("corp.test.", "198.18.7.9", 300)
    # Absent, the section is parsed all the same, into the defaults.
    default = load_config(pm).plugins["example"]
    assert (default.origin, default.address, default.ttl) == ("example.test.", "198.18.7.7", 300)


CONFIG_ERRORS = [
    ('address = "nope"', "plugins.example.address: expected an IPv4 address, got 'nope'"),
    ("address = 7", "plugins.example.address: expected a string, got 7"),
    ('ttl = "1h"', "plugins.example.ttl: expected an integer, got '1h'"),
    ("ttl = -1", "plugins.example.ttl: expected a TTL from 0 to 2147483647, got -1"),
    (
        'origin = "a..b"',
        "plugins.example.origin: expected a domain name like example.test., got 'a..b'",
    ),
    (
        'adress = "198.18.7.9"',
        "plugins.example.adress: expected one of the known keys: "
        "address, origin, ttl (unknown key)",
    ),
]


@pytest.mark.parametrize(
    "text, words",
    CONFIG_ERRORS,
    ids=[w.split(":")[0].split(".")[-1] + "-" + t.split()[0] for t, w in CONFIG_ERRORS],
)
def test_its_config_errors_name_the_plugin_and_the_key(example_plugin, tmp_path, text, words):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(f"[plugins.example]\n{text}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(load_plugins(), conf)
    assert str(exc.value) == f"{conf}: {words}"


def test_config_errors_on_the_command_line(example_plugin, xdpdns_cli, tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text('[plugins.example]\naddress = "nope"\n')
    for command in (
        ["check", "--config", conf],
        ["serve", "--config", conf, "--listen", "127.0.0.1:0"],
    ):
        result = xdpdns_cli(*command)
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines() == [
            f"xdpdns: error: {conf}: plugins.example.address: expected an IPv4 address, got 'nope'"
        ]


def test_a_misspelt_section_lists_the_plugins_sections(example_plugin, tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text("[plugins.exmaple]\nttl = 60\n")
    with pytest.raises(ConfigError) as exc:
        load_config(load_plugins(), conf)
    message = str(exc.value)
    assert message.startswith(
        f"{conf}: plugins.exmaple: unknown section: no loaded plugin owns it (known sections: "
    )
    known = message.split("(known sections: ", 1)[1].rstrip(")").split(", ")
    assert {"plugins.example", "plugins.zonefile"} <= set(known)


def test_it_goes_before_zonefile_because_it_declares_so(example_plugin, monkeypatch):
    pm = load_plugins()
    config = load_config(pm)  # the default zone, example.com, from zonefile
    sources = collect_sources(pm, config)
    assert [(type(s), s.origin) for s in sources] == [
        (ZoneData, EXAMPLE_TEST),
        (ZoneFile, EXAMPLE_COM),
    ]
    assert hook_order(pm, "zone_sources") == ["example", "zonefile"]
    order = plugin_order(pm)
    assert order.index("example") < order.index("zonefile")

    # The same plugin declaring the opposite goes after it: the declaration
    # decides, not a list in xdpdns (nor its name, which sorts first).
    module = pm.get_plugin("example")
    monkeypatch.setattr(module, "XDPDNS_BEFORE", ())
    monkeypatch.setattr(module, "XDPDNS_AFTER", ("zonefile",), raising=False)
    pm = load_plugins()
    sources = collect_sources(pm, load_config(pm))
    assert [s.origin for s in sources] == [EXAMPLE_COM, EXAMPLE_TEST]
    assert hook_order(pm, "zone_sources") == ["zonefile", "example"]


def test_xdpdns_plugins_shows_it(example_plugin, xdpdns_cli):
    result = xdpdns_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    listing = parse_plugins_listing(result.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["example"]["origin"] == f"{DIST} {VERSION} ({MODULE})"
    assert plugins["example"]["hooks"] == "config_sections, zone_sources"
    assert plugins["example"]["before"] == "zonefile  (XDPDNS_BEFORE)"
    assert plugins["example"]["position"] < plugins["zonefile"]["position"]
    assert listing["hooks"]["zone_sources"] == ["example", "zonefile"]
    assert listing["warnings"] == []


def _ask(host, port, name, rdtype, tcp=False):
    query = dns.message.make_query(name, rdtype)
    ask = dns.query.tcp if tcp else dns.query.udp
    return ask(query, host, port=port, timeout=5)


def test_xdpdns_serve_answers_for_it(example_plugin, xdpdns_serve, tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\nudp_workers = 1\n'
        f'[[zone]]\nfile = "{default_zone_path()}"\norigin = "example.com."\n'
        '[plugins.example]\norigin = "corp.test."\naddress = "198.18.7.9"\n'
        "ttl = 120\n"
    )
    server = xdpdns_serve("--config", conf, "--control-socket", tmp_path / "ctl.sock")
    assert " zones=2 " in server.ready_line
    ((host, port),) = server.addresses
    for tcp in (False, True):
        answer = _ask(host, port, "www.corp.test.", "A", tcp)
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.flags & dns.flags.AA
        (rrset,) = answer.answer
        assert (rrset.name, rrset.ttl, [r.to_text() for r in rrset]) == (
            dns.name.from_text("www.corp.test."),
            120,
            ["198.18.7.9"],
        )
    nxdomain = _ask(host, port, "nope.corp.test.", "A")
    assert nxdomain.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in nxdomain.authority] == [dns.rdatatype.SOA]
    # The built-in zonefile plugin's zone is served beside it.
    assert _ask(host, port, "example.com.", "SOA").rcode() == dns.rcode.NOERROR
