"""The Prometheus endpoint ([metrics] listen): it parses with
prometheus_client's own text-format parser, and the counters move under
load, in socket and XDP mode."""

import re
import urllib.error
import urllib.request

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

import dnsdiff
from conftest import run_xdpdns_cli
from xdpdns.config import default_zone_path


def _metrics_url(server):
    found = re.search(r"metrics on (http://\S+/metrics)", server.output())
    assert found, server.output()
    return found.group(1)


def _scrape(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def _total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)


def test_metrics_parse_and_move_under_load(xdpdns_serve, tmp_path):
    conf = tmp_path / "x.toml"
    control = tmp_path / "ctl.sock"
    conf.write_text('[server]\nudp_workers = 2\n[metrics]\nlisten = "127.0.0.1:0"\n')
    server = xdpdns_serve(
        "--config",
        conf,
        "--listen",
        "127.0.0.1:0",
        "--zone",
        default_zone_path(),
        "--control-socket",
        control,
    )
    url = _metrics_url(server)
    host, port = server.addresses[0]
    before = _scrape(url)
    query = dns.message.make_query("www.example.com.", "A")
    for _ in range(20):
        dns.query.udp(query, host, port=port, timeout=3)
    for _ in range(3):
        dns.query.tcp(query, host, port=port, timeout=3)
    assert run_xdpdns_cli("reload", "--control-socket", control).returncode == 0
    after = _scrape(url)
    assert (
        _total(after, "xdpdns_udp_worker_received_total")
        >= _total(before, "xdpdns_udp_worker_received_total") + 20
    )
    assert _total(after, "xdpdns_udp_worker_answered_total") >= 20
    workers = {
        dict(labels)["worker"] for (n, labels) in after if n == "xdpdns_udp_worker_received_total"
    }
    assert workers == {"0", "1"}
    assert after[("xdpdns_tcp_answered_total", ())] >= 3
    assert after[("xdpdns_reloads_total", (("result", "ok"),))] == 1
    assert after[("xdpdns_reloads_total", (("result", "failed"),))] == 0
    serial = (
        dns.query.udp(dns.message.make_query("example.com.", "SOA"), host, port=port, timeout=3)
        .answer[0][0]
        .serial
    )
    assert after[("xdpdns_zone_serial", (("zone", "example.com."),))] == serial
    # No transfer list: no journal kept.
    assert after[("xdpdns_zone_journal_changes", (("zone", "example.com."),))] == 0
    by_rcode = {
        dict(labels)["rcode"]: 0
        for (n, labels) in after
        if n == "xdpdns_udp_worker_responses_by_rcode_total"
    }
    for (n, labels), v in after.items():
        if n == "xdpdns_udp_worker_responses_by_rcode_total":
            by_rcode[dict(labels)["rcode"]] += v
    assert by_rcode.get("NOERROR", 0) >= 20


def test_responses_by_rcode_and_qtype(xdpdns_serve, tmp_path):
    """Each UDP response is counted by its RCODE and its query's type, in
    `xdpdns stats` and in the metrics; types without a counter of their
    own are "other"."""
    import json

    conf = tmp_path / "x.toml"
    control = tmp_path / "ctl.sock"
    conf.write_text('[server]\nudp_workers = 1\n[metrics]\nlisten = "127.0.0.1:0"\n')
    server = xdpdns_serve(
        "--config",
        conf,
        "--listen",
        "127.0.0.1:0",
        "--zone",
        default_zone_path(),
        "--control-socket",
        control,
    )
    host, port = server.addresses[0]
    asked = (
        [("www.example.com.", "A")] * 3
        + [("www.example.com.", "AAAA")] * 2
        + [("nothere.example.com.", "A")]
        + [("www.example.com.", "NAPTR")]
    )
    for name, rdtype in asked:
        dns.query.udp(dns.message.make_query(name, rdtype), host, port=port, timeout=3)
    udp = json.loads(run_xdpdns_cli("stats", "--control-socket", control, "--json").stdout)["udp"]
    assert udp["qtypes"] == {"A": 4, "AAAA": 2, "other": 1}
    assert udp["rcodes"] == {"NOERROR": 6, "NXDOMAIN": 1}
    table = run_xdpdns_cli("stats", "--control-socket", control).stdout
    assert "UDP responses by RCODE: NOERROR 6, NXDOMAIN 1" in table
    samples = _scrape(_metrics_url(server))
    assert (
        samples[
            ("xdpdns_udp_worker_responses_by_qtype_total", (("qtype", "AAAA"), ("worker", "0")))
        ]
        == 2
    )


def test_metrics_answers_only_get_metrics(xdpdns_serve, tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text('[metrics]\nlisten = "127.0.0.1:0"\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    url = _metrics_url(server)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=5)
    assert e.value.code == 404


def test_metrics_listen_is_checked(tmp_path, xdpdns_cli):
    conf = tmp_path / "x.toml"
    conf.write_text('[metrics]\nlisten = "localhost:x"\n')
    result = xdpdns_cli("check", "--config", conf)
    assert result.returncode == 1
    assert "[metrics] listen" in result.stderr or "metrics.listen" in result.stderr


@pytest.mark.xdp
def test_xdp_program_counters_in_metrics(xdp_topology, xdp_serve, tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text('[metrics]\nlisten = "127.0.0.1:0"\n')
    server = xdp_serve("--config", conf)
    url = _metrics_url(server)
    query = dns.message.make_query("www.example.com.", "A").to_wire()
    with xdp_topology.client.entered():
        for _ in range(5):
            assert dnsdiff.exchange((xdp_topology.server_v4, 53), query, timeout=3)
    with xdp_topology.server.entered():
        samples = _scrape(url)
    assert _total(samples, "xdpdns_xdp_program_answered_in_xdp_total") == 5
    assert samples[("xdpdns_xdp_program_answers_by_rcode_total", (("rcode", "NOERROR"),))] == 5
    assert samples[("xdpdns_xdp_answer_table_state", (("state", "on"),))] == 1
    assert samples[("xdpdns_xdp_program_answers_by_qtype_total", (("qtype", "A"),))] == 5
    assert any(n == "xdpdns_xdp_queue_received_total" for n, _ in samples)


def test_secondary_zones_have_gauges():
    from xdpdns.metrics import _secondary
    from xdpdns.secondary.service import ZoneStatus

    zones = [
        ZoneStatus("a.test.", 7, False, 1000.0, 4600.0, 87400.0, None, None),
        ZoneStatus("b.test.", None, True, None, 2.0, None, None, "refused", "cat.test."),
    ]
    samples = {
        (s.name, s.labels["zone"]): s.value for family in _secondary(zones) for s in family.samples
    }
    assert samples[("xdpdns_secondary_zone_serial", "a.test.")] == 7
    assert ("xdpdns_secondary_zone_serial", "b.test.") not in samples
    assert samples[("xdpdns_secondary_zone_expired", "b.test.")] == 1
    assert samples[("xdpdns_secondary_zone_refresh_failing", "b.test.")] == 1
    assert samples[("xdpdns_secondary_zone_refresh_failing", "a.test.")] == 0
    assert samples[("xdpdns_secondary_zone_expiry_timestamp_seconds", "a.test.")] == 87400.0
    assert samples[("xdpdns_secondary_zone_last_refresh_timestamp_seconds", "a.test.")] == 1000.0
    catalogs = {
        s.labels["zone"]: s.labels["catalog"]
        for family in _secondary(zones)
        for s in family.samples
    }
    assert catalogs == {"a.test.": "", "b.test.": "cat.test."}
