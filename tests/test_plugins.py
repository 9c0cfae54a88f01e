"""xdpdns/plugins.py and the built-in zonefile plugin: plugins come from the
`xdpdns` entry-point group, the built-in ones too, and the server really
calls the lifecycle hooks."""

import dns.message
import dns.name
import dns.query
import dns.rdataset
import dns.rrset
import pytest

import xdpdns_plugins.zonefile
from xdpdns.config import ConfigError, load_config
from xdpdns.hookspecs import ZoneData, ZoneFile, hookimpl
from xdpdns.image import collect_sources
from xdpdns.plugins import PluginError, load_plugins, new_plugin_manager, plugin_infos
from xdpdns.server import Server

EXAMPLE_ORG = dns.name.from_text("example.org.")


def test_zonefile_plugin_comes_from_the_entry_point():
    pm = load_plugins()
    assert pm.get_plugin("zonefile") is xdpdns_plugins.zonefile
    dists = {dist.project_name for plugin, dist in pm.list_plugin_distinfo()
             if plugin is xdpdns_plugins.zonefile}
    assert dists == {"xdpdns"}


def test_no_plugins_are_loaded_at_import():
    assert new_plugin_manager().list_name_plugin() == []


def test_plugin_infos():
    (info,) = [i for i in plugin_infos(load_plugins()) if i.name == "zonefile"]
    assert info.origin.startswith("xdpdns ") and "xdpdns_plugins.zonefile" in info.origin
    assert info.hooks == ("config_sections", "zone_sources")


def test_plugins_command(xdpdns_cli):
    result = xdpdns_cli("plugins")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("zonefile: ")))
    assert lines[at].startswith("zonefile: xdpdns ")
    assert lines[at].endswith("(xdpdns_plugins.zonefile)")
    assert lines[at + 1].strip() == "hooks: config_sections, zone_sources"


def test_zonefile_plugin_provides_the_configured_zones(tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text('[[zone]]\nfile = "example.org.zone"\n'
                    '[[zone]]\nfile = "b.db"\norigin = "b.test"\n'
                    '[plugins.zonefile]\ndefault_ttl = 60\n')
    pm = load_plugins()
    sources = collect_sources(pm, load_config(pm, conf))
    assert sources == [
        ZoneFile(EXAMPLE_ORG, tmp_path / "example.org.zone", 60),
        ZoneFile(dns.name.from_text("b.test."), tmp_path / "b.db", 60),
    ]


@pytest.mark.parametrize("text, words", [
    ("default_ttl = -1", "plugins.zonefile.default_ttl: expected a TTL"),
    ("default_ttl = \"1h\"", "plugins.zonefile.default_ttl: expected an integer"),
    ("ttl = 5", "plugins.zonefile.ttl: expected one of the known keys: default_ttl"),
])
def test_zonefile_plugin_config_errors(tmp_path, text, words):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(f"[plugins.zonefile]\n{text}\n")
    with pytest.raises(ConfigError, match=words):
        load_config(load_plugins(), conf)


class RecordsPlugin:
    """A third-party zone plugin that hands over dnspython data."""

    def __init__(self):
        self.calls = []

    @hookimpl(tryfirst=True)
    def zone_sources(self, config):
        self.calls.append(config)
        rrs = [
            dns.rrset.from_text("@", 300, "IN", "SOA", "ns1 hostmaster 1 7200 3600 1209600 300"),
            dns.rrset.from_text("@", 300, "IN", "NS", "ns1"),
            dns.rrset.from_text("ns1", 300, "IN", "A", "198.18.9.1"),
            dns.rrset.from_text("www", 300, "IN", "A", "198.18.9.80"),
        ]
        records = [(rrset.name, dns.rdataset.from_rdata_list(rrset.ttl, list(rrset)))
                   for rrset in rrs]
        return [ZoneData(EXAMPLE_ORG, records, "records plugin")]


def test_plugin_order_is_declared_not_compiled_in(tmp_path):
    pm = load_plugins()
    pm.register(RecordsPlugin(), "records")
    sources = collect_sources(pm, load_config(pm))
    # tryfirst places the third-party plugin before the built-in zonefile one.
    assert [s.origin.to_text() for s in sources] == ["example.org.", "example.com."]


def test_bad_zone_source_is_reported():
    class Bad:
        @hookimpl
        def zone_sources(self):
            return ["example.net.zone"]

    pm = new_plugin_manager()
    pm.register(Bad())
    with pytest.raises(TypeError, match="ZoneFile or xdpdns.image.ZoneData"):
        collect_sources(pm, None)


def test_misspelt_hook_is_an_error(monkeypatch):
    class Typo:
        @hookimpl
        def zone_source(self):
            return []

    pm = new_plugin_manager()
    pm.register(Typo(), "typo")
    monkeypatch.setattr(pm, "load_setuptools_entrypoints", lambda group: 0)
    with pytest.raises(PluginError, match="zone_source"):
        load_plugins(pm)


class LifecyclePlugin:
    """Records the lifecycle hooks; asks the server to stop once it is up,
    after one query over UDP."""

    def __init__(self):
        self.events = []
        self.answer = None

    @hookimpl
    def startup(self, server):
        self.events.append("startup")
        host, port = server.addresses[0].host, server.addresses[0].port
        query = dns.message.make_query("www.example.org.", "A")
        self.answer = dns.query.udp(query, host, port=port, timeout=5)
        server.stop()

    @hookimpl
    def shutdown(self, server):
        self.events.append("shutdown")

    @hookimpl
    def stats(self, server, stats):
        self.events.append(("stats", stats.udp.received, stats.udp.answered))


def test_server_calls_the_lifecycle_hooks():
    pm = load_plugins()
    records, lifecycle = RecordsPlugin(), LifecyclePlugin()
    pm.register(records, "records")
    pm.register(lifecycle, "lifecycle")
    config = load_config(pm, listen=["127.0.0.1:0"], udp_workers="1")
    server = Server(config, pm)
    assert server.run() == 0
    assert lifecycle.events == ["startup", "shutdown", ("stats", 1, 1)]
    assert [str(a.host) for a in server.addresses] == ["127.0.0.1"]
    assert server.addresses[0].port != 0
    assert set(server.zones) == {EXAMPLE_ORG, dns.name.from_text("example.com.")}
    (rrset,) = lifecycle.answer.answer
    assert [r.to_text() for r in rrset] == ["198.18.9.80"]
    assert records.calls == [config]


def test_failing_startup_hook_stops_the_server():
    class Failing:
        def __init__(self):
            self.shutdown_called = False

        @hookimpl
        def startup(self):
            raise RuntimeError("no")

        @hookimpl
        def shutdown(self):
            self.shutdown_called = True

    pm = load_plugins()
    failing = Failing()
    pm.register(failing)
    with pytest.raises(RuntimeError, match="no"):
        Server(load_config(pm, listen=["127.0.0.1:0"], udp_workers="1"), pm).run()
    assert failing.shutdown_called
