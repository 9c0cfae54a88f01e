"""xdpdns/plugins.py and the built-in zonefile plugin: plugins come from the
`xdpdns` entry-point group, the built-in ones too, and the server really
calls the lifecycle hooks."""

import os
import sys
import uuid

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
from xdpdns.plugins import (
    PluginError,
    hook_order,
    load_plugins,
    new_plugin_manager,
    order_problems,
    plugin_infos,
    plugin_order,
    sort_plugins,
)
from xdpdns.server import Server

EXAMPLE_ORG = dns.name.from_text("example.org.")


def test_zonefile_plugin_comes_from_the_entry_point():
    pm = load_plugins()
    assert pm.get_plugin("zonefile") is xdpdns_plugins.zonefile
    dists = {
        dist.project_name
        for plugin, dist in pm.list_plugin_distinfo()
        if plugin is xdpdns_plugins.zonefile
    }
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
    assert result.stderr == ""
    listing = parse_plugins_listing(result.stdout)
    names = [p["name"] for p in listing["plugins"]]
    assert names == plugin_order(load_plugins())
    (zonefile,) = [p for p in listing["plugins"] if p["name"] == "zonefile"]
    assert zonefile["origin"].startswith("xdpdns ")
    assert zonefile["origin"].endswith("(xdpdns_plugins.zonefile)")
    assert zonefile["hooks"] == "config_sections, zone_sources"
    assert listing["hooks"]["zone_sources"][-1] == "zonefile"
    assert listing["warnings"] == []


def parse_plugins_listing(text):
    """`xdpdns plugins` output as {"plugins": [{"position", "name", "origin",
    "hooks", "before", "after"}, ...], "hooks": {hook: [names]}, "warnings": [...]}."""
    lines = text.splitlines()
    assert lines[0] == "plugins, in plugin order:", text
    plugins, hooks, warnings = [], {}, []
    section = "plugins"
    for line in lines[1:]:
        if line == "hooks, in call order:":
            section = "hooks"
        elif line.startswith("warning: "):
            warnings.append(line.removeprefix("warning: "))
        elif section == "plugins" and not line.startswith(" "):
            position, _, rest = line.partition(". ")
            name, _, origin = rest.partition(": ")
            plugins.append({"position": int(position), "name": name, "origin": origin})
        elif section == "plugins":
            key, _, value = line.strip().partition(": ")
            plugins[-1][key] = value
        else:
            hook, _, names = line.strip().partition(": ")
            hooks[hook] = names.split(", ")
    assert [p["position"] for p in plugins] == list(range(1, len(plugins) + 1))
    return {"plugins": plugins, "hooks": hooks, "warnings": warnings}


def test_zonefile_plugin_provides_the_configured_zones(tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        '[[zone]]\nfile = "example.org.zone"\n'
        '[[zone]]\nfile = "b.db"\norigin = "b.test"\n'
        "[plugins.zonefile]\ndefault_ttl = 60\n"
    )
    pm = load_plugins()
    sources = collect_sources(pm, load_config(pm, conf))
    assert sources == [
        ZoneFile(EXAMPLE_ORG, tmp_path / "example.org.zone", 60),
        ZoneFile(dns.name.from_text("b.test."), tmp_path / "b.db", 60),
    ]


@pytest.mark.parametrize(
    "text, words",
    [
        ("default_ttl = -1", "plugins.zonefile.default_ttl: expected a TTL"),
        ('default_ttl = "1h"', "plugins.zonefile.default_ttl: expected an integer"),
        ("ttl = 5", "plugins.zonefile.ttl: expected one of the known keys: default_ttl"),
    ],
)
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
        records = [
            (rrset.name, dns.rdataset.from_rdata_list(rrset.ttl, list(rrset))) for rrset in rrs
        ]
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


def test_misspelt_hook_is_an_error():
    class Typo:
        @hookimpl
        def zone_source(self):
            return []

    pm = new_plugin_manager()
    pm.register(Typo(), "typo")
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


# ---- the plugin order: declared, not compiled in ------------------------------
#
# Plugins here are installed distributions as pip would leave them (a module
# and a NAME.dist-info with entry_points.txt), each in its own directory put on
# sys.path (and PYTHONPATH, for the command line), so that load_plugins finds
# them through the entry-point group like any other.


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """installed(name, source) -> module name: a distribution with one entry
    point NAME in the xdpdns group, the module holding source; each in a new
    directory in front of sys.path and PYTHONPATH (so the last installed is
    the first found).  The modules are forgotten when the test ends."""
    modules = []

    def install(name, source, version="1.0"):
        site = tmp_path / f"site-{len(modules)}"
        site.mkdir()
        module = f"xdpdns_test_{name}_{uuid.uuid4().hex[:8]}"
        (site / f"{module}.py").write_text(source)
        info = site / f"xdpdns_test_{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: xdpdns-test-{name}\nVersion: {version}\n"
        )
        (info / "entry_points.txt").write_text(f"[xdpdns]\n{name} = {module}\n")
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setenv(
            "PYTHONPATH",
            os.pathsep.join([str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        )
        modules.append(module)
        return module

    yield install
    for module in modules:
        sys.modules.pop(module, None)


def plugin_source(name, before=None, after=None, mark=""):
    """A plugin module whose zone_sources returns [name] (marked with mark,
    e.g. "tryfirst=True"), with the given declarations."""
    lines = ["from xdpdns.hookspecs import hookimpl"]
    if before is not None:
        lines.append(f"XDPDNS_BEFORE = {before!r}")
    if after is not None:
        lines.append(f"XDPDNS_AFTER = {after!r}")
    lines += [f"@hookimpl({mark})", "def zone_sources(config):", f"    return [{name!r}]"]
    return "\n".join(lines) + "\n"


def called(pm, names):
    """Who answers zone_sources, in the order pluggy really calls them: our
    plugins return their name, zonefile a ZoneFile (of one zone)."""
    config = load_config(pm, zones=["example.org.zone"])
    labels = []
    for result in pm.hook.zone_sources(config=config):
        for item in result:
            labels.append("zonefile" if isinstance(item, ZoneFile) else item)
    return [label for label in labels if label in names]


def only(order, names):
    return [name for name in order if name in names]


def test_pluggy_calls_in_the_order_the_rule_says():
    # xdpdns.plugins rests on this: tryfirst, then unmarked, each the last
    # registered first; then trylast, the first registered first.
    def plugin(name, **marks):
        class Plugin:
            @hookimpl(**marks)
            def zone_sources(self):
                return [name]

        return Plugin()

    pm = new_plugin_manager()
    for name, marks in [
        ("t1", {"trylast": True}),
        ("p1", {}),
        ("f1", {"tryfirst": True}),
        ("t2", {"trylast": True}),
        ("p2", {}),
        ("f2", {"tryfirst": True}),
    ]:
        pm.register(plugin(name, **marks), name)
    expected = ["f2", "f1", "p2", "p1", "t1", "t2"]
    assert [r[0] for r in pm.hook.zone_sources(config=None)] == expected
    assert hook_order(pm, "zone_sources") == expected
    assert plugin_order(pm) == ["f2", "p2", "t2", "f1", "p1", "t1"]  # reverse registration


def test_declarations_decide_the_order_not_names_or_install_order(installed):
    installed("alpha", plugin_source("alpha", after=("zonefile",)))
    installed("mid", plugin_source("mid"))
    installed("zzz", plugin_source("zzz", before=("zonefile", "alpha")))
    names = {"alpha", "mid", "zzz", "zonefile"}
    pm = load_plugins()
    # alpha sorts first by name but comes after zonefile, zzz sorts last but
    # comes before it; mid, free to go anywhere, goes by name.
    expected = ["mid", "zzz", "zonefile", "alpha"]
    assert only(plugin_order(pm), names) == expected
    assert only(hook_order(pm, "zone_sources"), names) == expected
    assert called(pm, names) == expected
    assert order_problems(pm) == []
    (info,) = [i for i in plugin_infos(pm) if i.name == "zzz"]
    assert (info.before, info.after, info.missing) == (("zonefile", "alpha"), (), ())
    assert info.origin == f"xdpdns-test-zzz 1.0 ({pm.get_plugin('zzz').__name__})"


def test_ties_are_broken_by_name_not_by_install_order(installed):
    # able is found first (installed last: first on sys.path), so pluggy
    # alone would register it first and call it last.
    installed("baker", plugin_source("baker"))
    installed("able", plugin_source("able"))
    pm = load_plugins()
    assert only(plugin_order(pm), {"able", "baker"}) == ["able", "baker"]
    assert called(pm, {"able", "baker"}) == ["able", "baker"]


def test_a_plugin_registered_before_loading_is_ordered_too():
    class Records(RecordsPlugin):
        XDPDNS_BEFORE = ("zonefile",)

        @hookimpl  # no tryfirst: the declaration alone places it
        def zone_sources(self, config):
            return RecordsPlugin.zone_sources(self, config)

    pm = new_plugin_manager()
    records = Records()
    pm.register(records, "zz-records")  # sorts after zonefile by name
    load_plugins(pm)
    assert pm.get_plugin("zz-records") is records
    sources = collect_sources(pm, load_config(pm))
    assert [s.origin.to_text() for s in sources] == ["example.org.", "example.com."]
    assert order_problems(pm) == []


def test_a_plugin_registered_after_loading_that_breaks_its_declaration_is_reported():
    class Late:
        XDPDNS_AFTER = ("zonefile",)

        @hookimpl
        def zone_sources(self):
            return []

    pm = load_plugins()
    pm.register(Late(), "late")
    assert hook_order(pm, "zone_sources")[0] == "late"
    assert order_problems(pm) == [
        "hook zone_sources: plugin 'late' is called before 'zonefile' although 'late' "
        "declares XDPDNS_AFTER 'zonefile' ('late' was registered out of the declared order)"
    ]


def test_tryfirst_and_trylast_win_over_declarations(installed, caplog):
    installed("early", plugin_source("early", after=("zonefile",), mark="tryfirst=True"))
    installed("x1", plugin_source("x1", before=("x2",), mark="trylast=True"))
    installed("x2", plugin_source("x2", mark="trylast=True"))
    pm = load_plugins()
    names = {"early", "zonefile", "x1", "x2"}
    assert only(plugin_order(pm), names) == ["x1", "x2", "zonefile", "early"]
    # tryfirst moves early's zone_sources to the front; trylast implementations
    # are called in registration order, the reverse of the plugin order.
    assert called(pm, names) == ["early", "zonefile", "x2", "x1"]
    problems = order_problems(pm)
    assert problems == [
        "hook zone_sources: plugin 'early' is called before 'zonefile' although 'early' "
        "declares XDPDNS_AFTER 'zonefile' (the implementation of 'early' is tryfirst)",
        "hook zone_sources: plugin 'x2' is called before 'x1' although 'x1' declares "
        "XDPDNS_BEFORE 'x2' (pluggy calls trylast implementations in registration order, "
        "the reverse of the plugin order)",
    ]
    # load_plugins said so too.
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name == "xdpdns.plugins" and r.levelname == "WARNING"
    ] == problems
    (info,) = [i for i in plugin_infos(pm) if i.name == "early"]
    assert info.marks == (("zone_sources", "tryfirst"),)


def test_plugin_not_loaded_is_a_warning(installed, caplog):
    installed("loner", plugin_source("loner", before=("zonefile",), after=("nosuch",)))
    pm = load_plugins()
    warning = (
        "plugin 'loner': XDPDNS_AFTER names 'nosuch', a plugin that is not loaded; "
        "the declaration has no effect"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "xdpdns.plugins"] == [warning]
    assert order_problems(pm) == [warning]
    assert only(hook_order(pm, "zone_sources"), {"loner", "zonefile"}) == ["loner", "zonefile"]
    (info,) = [i for i in plugin_infos(pm) if i.name == "loner"]
    assert (info.before, info.after, info.missing) == (("zonefile",), ("nosuch",), ("nosuch",))


def test_declared_cycle_is_an_error_naming_the_plugins(installed):
    installed("one", plugin_source("one", after=("zonefile",)))
    installed("two", plugin_source("two", after=("one",), before=("zonefile",)))
    with pytest.raises(PluginError) as exc:
        load_plugins()
    assert str(exc.value) == (
        "plugins 'one', 'two', 'zonefile': their declared order is a cycle: "
        "'one' before 'two' ('two' declares XDPDNS_AFTER 'one'); "
        "'two' before 'zonefile' ('two' declares XDPDNS_BEFORE 'zonefile'); "
        "'zonefile' before 'one' ('one' declares XDPDNS_AFTER 'zonefile')"
    )


@pytest.mark.parametrize("value", ['"zonefile"', "[1]", "('',)", "{'zonefile'}", "None"])
def test_malformed_declaration_is_an_error(installed, value):
    installed("odd", f"XDPDNS_BEFORE = {value}\n")
    with pytest.raises(
        PluginError,
        match=r"^plugin 'odd': XDPDNS_BEFORE must be a tuple "
        r"of plugin names, like \('zonefile',\); got ",
    ):
        load_plugins()


def test_plugin_that_cannot_be_imported_is_an_error(installed):
    module = installed("broken", "raise ImportError('no such dependency')\n")
    with pytest.raises(PluginError) as exc:
        load_plugins()
    assert str(exc.value) == (
        f"plugin 'broken' ({module} from xdpdns-test-broken 1.0) "
        "cannot be loaded: ImportError: no such dependency"
    )


@pytest.mark.parametrize(
    "declared, expected",
    [
        ({}, []),
        ({"b": ((), ()), "a": ((), ()), "c": ((), ())}, ["a", "b", "c"]),
        ({"a": ((), ("c",)), "b": ((), ()), "c": ((), ())}, ["b", "c", "a"]),
        ({"a": (("b",), ()), "b": ((), ("a",))}, ["a", "b"]),  # said twice, once counted
        # a diamond: d before b and c, both before a
        (
            {"a": ((), ("b", "c")), "b": ((), ()), "c": ((), ()), "d": (("c", "b"), ())},
            ["d", "b", "c", "a"],
        ),
        ({"a": (("gone",), ("gone",))}, ["a"]),  # not loaded: no effect here
    ],
)
def test_sort_plugins(declared, expected):
    assert sort_plugins(declared) == expected


def test_sort_plugins_self_cycle():
    with pytest.raises(
        PluginError,
        match=r"^plugins 'a': their declared order is a cycle: "
        r"'a' before 'a' \('a' declares XDPDNS_BEFORE 'a'\)$",
    ):
        sort_plugins({"a": (("a",), ()), "b": ((), ())})


def test_plugins_command_shows_order_marks_declarations_and_warnings(installed, xdpdns_cli):
    installed("early", plugin_source("early", after=("zonefile", "nosuch"), mark="tryfirst=True"))
    installed("zz", plugin_source("zz", before=("zonefile",)))
    result = xdpdns_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    listing = parse_plugins_listing(result.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    names = {"early", "zz", "zonefile"}
    assert only([p["name"] for p in listing["plugins"]], names) == ["zz", "zonefile", "early"]
    assert plugins["early"]["origin"].startswith("xdpdns-test-early 1.0 (xdpdns_test_early_")
    assert plugins["early"]["hooks"] == "zone_sources (tryfirst)"
    assert plugins["early"]["after"] == "zonefile, nosuch (not loaded)  (XDPDNS_AFTER)"
    assert "before" not in plugins["early"]
    assert plugins["zz"]["before"] == "zonefile  (XDPDNS_BEFORE)"
    assert only(listing["hooks"]["zone_sources"], names) == ["early", "zz", "zonefile"]
    assert listing["warnings"] == [
        "plugin 'early': XDPDNS_AFTER names 'nosuch', a plugin that is not loaded; "
        "the declaration has no effect",
        "hook zone_sources: plugin 'early' is called before 'zonefile' although 'early' "
        "declares XDPDNS_AFTER 'zonefile' (the implementation of 'early' is tryfirst)",
    ]


@pytest.mark.parametrize(
    "command",
    [["plugins"], ["serve", "--listen", "127.0.0.1:0"], ["check", "--config", "/dev/null"]],
)
def test_commands_refuse_a_cycle(installed, xdpdns_cli, command):
    installed("one", plugin_source("one", after=("zonefile",)))
    installed("two", plugin_source("two", before=("one",), after=("zonefile",)))
    installed("three", plugin_source("three", before=("zonefile",), after=("two",)))
    result = xdpdns_cli(*command)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "xdpdns: error: plugins 'three', 'zonefile', 'two': their declared order is a cycle: "
        "'three' before 'zonefile' ('three' declares XDPDNS_BEFORE 'zonefile'); "
        "'zonefile' before 'two' ('two' declares XDPDNS_AFTER 'zonefile'); "
        "'two' before 'three' ('three' declares XDPDNS_AFTER 'two')"
    ]
