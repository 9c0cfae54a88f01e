"""`xdpdns bench` (xdpdns/bench/): the output parsers, the query generator
(checked against the answering core: every query answers as the kind it
was made as), the options, the report; then, as root, whole benchmarks of a
few seconds in each mode with each generator, with the peers, a server that
refuses to start and a SIGTERM in the middle, each followed by a check that
nothing it made is left: no namespace, no XDP program, no process.

Every namespace is created by the benchmark under a name carrying its PID
and deleted by it; the tests only look.  Every load is bounded in time.
"""

import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from conftest import xdpdns_command
from xdpdns.bench import generators, options, queries, report, soak, topology, xdpgen
from xdpdns.bench.procfs import CLK_TCK, busy_seconds, children, comm, start_time
from xdpdns.bench.zones import ZoneFile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ZoneFile("example.com.", ROOT / "zones" / "example.com.zone")
BENCH_TIMEOUT = 120  # seconds for one `xdpdns bench` in these tests


# ---- parsers of the generators' output ------------------------------------------------

DNSPERF_OUTPUT = """\
DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 198.18.0.1 -d /tmp/q -l 2 -c 4
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         191215
  Queries completed:    191200 (99.99%)
  Queries lost:         15 (0.01%)

  Response codes:       NOERROR 143411 (75.00%), NXDOMAIN 47789 (25.00%)
  Average packet size:  request 32, response 84
  Run time (s):         2.000401
  Queries per second:   95580.834539

  Average Latency (s):  0.000514 (min 0.000037, max 0.004921)
  Latency StdDev (s):   0.000337
"""

KXDPGUN_OUTPUT = """\
using interface xdbc0032w1, XDP threads 1, UDP, native mode
thread#00: sent 200010, received 199887
total queries:     200010 (100005 pps)
total replies:     199887 (99943 pps) (99%)
average DNS reply size: 84 B
average Ethernet reply rate: 101342812 bps (101.34 Mbps)
responded NOERROR:   149915
responded NXDOMAIN:  49972
duration: 2 s
"""


def test_parse_dnsperf():
    r = generators.parse_dnsperf(DNSPERF_OUTPUT)
    assert (r.sent, r.answered, r.lost) == (191215, 191200, 15)
    assert r.rcodes == {"NOERROR": 143411, "NXDOMAIN": 47789}
    assert r.duration == pytest.approx(2.000401)
    assert r.qps == pytest.approx(191200 / 2.000401)
    assert r.latency_ms == pytest.approx(
        {"avg": 0.514, "min": 0.037, "max": 4.921, "stddev": 0.337}
    )
    assert r.counters == {"lost": 15, "request_bytes": 32, "response_bytes": 84}


def test_parse_dnsperf_without_statistics_names_what_is_missing():
    with pytest.raises(generators.GeneratorError, match="Queries sent"):
        generators.parse_dnsperf("Error: socket: permission denied\n")


def test_parse_kxdpgun():
    r = generators.parse_kxdpgun(KXDPGUN_OUTPUT, 2.0)
    assert (r.sent, r.answered, r.lost) == (200010, 199887, 123)
    assert r.rcodes == {"NOERROR": 149915, "NXDOMAIN": 49972}
    assert r.queues == [{"queue": 0, "sent": 200010, "answered": 199887}]
    assert r.duration == 2.0 and r.latency_ms == {}


def test_parse_kxdpgun_failure():
    with pytest.raises(generators.GeneratorError, match="no totals"):
        generators.parse_kxdpgun("failed to initialize XDP socket\n", 2.0)


def test_parse_xdpgen_takes_the_last_json_line_and_reports_errors():
    good = {
        "sent": 10,
        "answered": 9,
        "duration": 1.0,
        "rate": 0,
        "rcodes": {"NOERROR": 9},
        "latency_ms": {"p50": 0.1},
        "queues": [],
        "counters": {},
    }
    r = generators.parse_xdpgen("a warning on stderr\n" + json.dumps(good) + "\n")
    assert (r.sent, r.answered, r.lost, r.qps) == (10, 9, 1, 9.0)
    with pytest.raises(generators.GeneratorError, match="no such interface"):
        generators.parse_xdpgen(json.dumps({"error": "no such interface"}))
    with pytest.raises(generators.GeneratorError, match="printed no result"):
        generators.parse_xdpgen("Traceback (most recent call last):\n")


def test_kxdpgun_affinity_is_a_progression():
    load = generators.Load("198.18.0.1", 53, Path("q"), 1.0, cpus=(4, 6, 8), interface="x")
    argv = generators.kxdpgun_argv(load)
    assert argv[argv.index("-F") + 1] == "4s2"
    # kxdpgun has no "unlimited": rate 0 becomes a rate beyond one thread.
    assert argv[argv.index("-Q") + 1] == str(generators.KXDPGUN_UNLIMITED)


def test_dnssec_sets_do_for_every_generator(tmp_path):
    """--dnssec: dnsperf -D, kxdpgun's per-line D flag (kxdpgun(8)), and
    EDNS with DO in the xdpdns generator's messages."""
    query_file = tmp_path / "q"
    query_file.write_text("www.example.com A\nexample.com MX\n")
    load = generators.Load("198.18.0.1", 53, query_file, 1.0, interface="x", dnssec=True)
    assert "-D" in generators.dnsperf_argv(load)
    assert "-D" not in generators.dnsperf_argv(generators.Load("198.18.0.1", 53, query_file, 1.0))
    flagged = generators.kxdpgun_query_file(load)
    assert flagged.read_text() == "www.example.com A D\nexample.com MX D\n"
    argv = generators.kxdpgun_argv(load, flagged)
    assert argv[argv.index("-i") + 1] == str(flagged)
    load = generators.Load(
        "198.18.0.1",
        53,
        query_file,
        1.0,
        interface="x",
        src_address="a",
        src_mac=b"\1" * 6,
        dst_mac=b"\2" * 6,
        dnssec=True,
    )
    assert "--dnssec" in generators.xdpgen_argv(load)
    for wire in queries.to_wire(queries.read(query_file), dnssec=True):
        msg = dns.message.from_wire(wire)
        assert msg.edns == 0 and msg.ednsflags & dns.flags.DO


def test_dnssec_answers_under_load_on_loopback(xdpdns_serve, tmp_path):
    """A signed zone loaded with DO=1 through dnsperf: every query is
    answered, and the report says the load was DNSSEC's."""
    from test_dnssec import sign_zone

    _dnsperf_or_skip()
    zone = sign_zone(tmp_path / "signed", [])
    server = xdpdns_serve(
        "--listen",
        "127.0.0.1:0",
        "--udp-workers",
        "1",
        "--zone",
        f"signed.test.={zone}",
        "--control-socket",
        tmp_path / "ctl",
    )
    host, port = server.addresses[0]
    queries = tmp_path / "q"
    queries.write_text("www.signed.test A\nnothing.signed.test A\nsigned.test MX\n")
    out = tmp_path / "dnssec.json"
    result = _bench(
        "--target",
        f"{host}:{port}",
        "--duration",
        1,
        "--repeat",
        1,
        "--warmup",
        0,
        "--queries",
        queries,
        "--dnssec",
        "--json",
        out,
    )
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["dnssec"] is True and run["answered"] > 0 and run["errors"] == []


# ---- xdpdns's generator: the report from its counters, with a fake -------------------------


@dataclass(frozen=True)
class FakeQueueStats:
    """Stands for xdpdns.bench.loadgen.GeneratorQueueStats (same fields)."""

    queue: int
    sent: int
    answered: int
    rcodes: tuple
    truncated: int = 0
    unexpected: int = 0
    malformed: int = 0
    tx_full: int = 0
    bad_checksum: int = 0
    latency: tuple = (0,) * 24
    latency_sum_ns: int = 0
    kernel_rx_dropped: int = 0
    kernel_rx_ring_full: int = 0
    cpu: int = 0


def _buckets(**counts):
    out = [0] * 24
    for key, n in counts.items():
        out[int(key[1:])] = n
    return tuple(out)


def test_percentile_interpolates_inside_the_log2_bucket():
    # 100 answers in [4, 8) us: the median is half-way, 6 us.
    assert xdpgen.percentile(_buckets(b2=100), 0.5) == pytest.approx(6.0)
    # 90 in [1, 2) and 10 in [64, 128): p90 ends the first, p99 is 9/10 of the second.
    assert xdpgen.percentile(_buckets(b0=0, b1=90, b6=10), 0.9) == pytest.approx(4.0)
    assert xdpgen.percentile(_buckets(b1=90, b6=10), 0.99) == pytest.approx(64 + 64 * 0.9)
    assert xdpgen.percentile((0,) * 24, 0.5) is None


def test_summarize_adds_up_the_queues():
    rcodes0 = (90,) + (0,) * 2 + (10,) + (0,) * 12
    rcodes1 = (50,) + (0,) * 15
    stats = [
        FakeQueueStats(
            0, 110, 100, rcodes0, latency=_buckets(b3=100), latency_sum_ns=100 * 10_000, cpu=2
        ),
        FakeQueueStats(
            1,
            50,
            50,
            rcodes1,
            latency=_buckets(b3=50),
            latency_sum_ns=50 * 10_000,
            cpu=3,
            malformed=1,
            bad_checksum=2,
        ),
    ]
    report_ = xdpgen.summarize(stats, 2.0, 1000)
    assert (report_["sent"], report_["answered"], report_["lost"]) == (160, 150, 10)
    assert report_["qps"] == 75.0
    assert report_["rcodes"] == {"NOERROR": 140, "NXDOMAIN": 10}
    assert report_["latency_ms"]["avg"] == pytest.approx(0.01)
    assert report_["latency_ms"]["p50"] == pytest.approx(0.012)  # 8 + 8 * 0.5 us
    assert [q["answered"] for q in report_["queues"]] == [100, 50]
    assert [q["cpu"] for q in report_["queues"]] == [2, 3]
    assert report_["counters"]["malformed"] == 1
    assert report_["counters"]["bad_checksum"] == 2


class FakeGenerator:
    """Stands for xdpdns.bench.loadgen.LoadGenerator: wait() blocks until the
    duration passes or stop() is called."""

    made: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.stopped = threading.Event()
        FakeGenerator.made.append(self)

    def wait(self):
        self.stopped.wait(self.kwargs["duration"])

    def stop(self):
        self.stopped.set()

    def queue_stats(self):
        n = len(self.kwargs["queries"])
        return [
            FakeQueueStats(
                0,
                n,
                n,
                (n,) + (0,) * 15,
                latency=_buckets(b4=n),
                latency_sum_ns=n * 20_000,
                cpu=self.kwargs["cpus"][0],
            )
        ]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _xdpgen_args(tmp_path, *extra):
    qfile = tmp_path / "q.txt"
    qfile.write_text("www.example.com A\nexample.com MX\n")
    return [
        "--interface",
        "xdbc0",
        "--queries",
        str(qfile),
        "--src-mac",
        "02:00:00:00:00:02",
        "--dst-mac",
        "02:00:00:00:00:01",
        "--src",
        "198.18.0.2",
        "--dst",
        "198.18.0.1",
        "--cpus",
        "1",
        *extra,
    ]


def test_xdpgen_main_prints_one_json_object(tmp_path, capsys):
    FakeGenerator.made.clear()
    assert (
        xdpgen.main(
            _xdpgen_args(tmp_path, "--duration", "0.1", "--rate", "500"), factory=FakeGenerator
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    gen = FakeGenerator.made[0].kwargs
    assert gen["rate"] == 500 and gen["cpus"] == [1] and gen["src_mac"] == b"\x02\0\0\0\0\x02"
    # The queries go over as wire messages, as dnsperf would send them.
    first = dns.message.from_wire(gen["queries"][0])
    assert str(first.question[0].name) == "www.example.com." and first.edns < 0
    assert (out["sent"], out["answered"], out["duration"]) == (2, 2, 0.1)
    assert out["latency_ms"]["p50"] == pytest.approx(0.024)


def test_xdpgen_sigterm_ends_the_sending_early(tmp_path, capsys):
    FakeGenerator.made.clear()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    t0 = time.monotonic()
    try:
        assert xdpgen.main(_xdpgen_args(tmp_path, "--duration", "30"), factory=FakeGenerator) == 0
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 10
    out = json.loads(capsys.readouterr().out)
    assert FakeGenerator.made[0].stopped.is_set()
    assert out["duration"] < 5  # answers per second of the sending that happened


def test_xdpgen_reports_a_failure_as_json(tmp_path, capsys):
    def broken(**kwargs):
        raise OSError(19, "no such network interface: xdbc0")

    assert xdpgen.main(_xdpgen_args(tmp_path), factory=broken) == 1
    assert json.loads(capsys.readouterr().out) == {"error": "no such network interface: xdbc0"}


# ---- query files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_image():
    from xdpdns.engine import ImageBuilder

    with ImageBuilder() as builder:
        zone = builder.add_zone(dns.name.from_text(EXAMPLE.origin))
        assert builder.load_zonefile(zone, EXAMPLE.path)
        image = builder.finish()
    yield image
    image.close()


def _outcome(msg: dns.message.Message) -> str:
    """Which kind of answer a response is (RFC 1034 4.3.2)."""
    rcode = msg.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return "nxdomain"
    assert rcode == dns.rcode.NOERROR, dns.rcode.to_text(rcode)
    if not msg.flags & dns.flags.AA:
        assert any(r.rdtype == dns.rdatatype.NS for r in msg.authority)
        return "referral"
    if not msg.answer:
        assert any(r.rdtype == dns.rdatatype.SOA for r in msg.authority)
        return "nodata"
    # The example zone's one wildcard is *.apps; status.apps exists.
    apps = dns.name.from_text("apps.example.com.")
    if any(r.name.parent() == apps and r.name.labels[0] != b"status" for r in msg.answer):
        return "wildcard"
    return "hit"


def test_generated_queries_answer_as_the_kind_they_were_made_as(example_image):
    made, shares, dropped = queries.generate([EXAMPLE], 500, queries.DEFAULT_MIX, seed=7)
    assert dropped == {} and shares == queries.DEFAULT_MIX
    seen = {}
    for query, wire in zip(made, queries.to_wire(made)):
        answer = dns.message.from_wire(example_image.answer(wire))
        assert _outcome(answer) == query.kind, query
        seen[query.kind] = seen.get(query.kind, 0) + 1
    assert set(seen) == set(queries.KINDS)
    assert 250 < seen["hit"] < 350  # 60 % of 500, give or take the draw


def test_generated_queries_depend_on_the_seed_only():
    a, _, _ = queries.generate([EXAMPLE], 50, queries.DEFAULT_MIX, seed=1)
    b, _, _ = queries.generate([EXAMPLE], 50, queries.DEFAULT_MIX, seed=1)
    c, _, _ = queries.generate([EXAMPLE], 50, queries.DEFAULT_MIX, seed=2)
    assert a == b and a != c


def test_a_kind_the_zone_cannot_give_is_left_out(tmp_path):
    zone = tmp_path / "plain.test.zone"
    zone.write_text(
        "$ORIGIN plain.test.\n$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\n"
        "ns1 A 198.18.0.1\nwww A 198.18.0.2\n"
    )
    made, shares, dropped = queries.generate(
        [ZoneFile("plain.test.", zone)], 100, queries.DEFAULT_MIX, seed=1
    )
    assert set(dropped) == {"wildcard", "referral"}
    assert sum(shares.values()) == pytest.approx(100)
    assert {q.kind for q in made} <= {"hit", "nxdomain", "nodata"}


def test_parse_mix():
    assert queries.parse_mix("hit=3, nxdomain=1") == {"hit": 3.0, "nxdomain": 1.0}
    for bad, message in [
        ("hits=1", "KIND=SHARE"),
        ("hit=x", "not a number"),
        ("hit=-1", "negative"),
        ("hit=0", "positive"),
    ]:
        with pytest.raises(queries.QueryFileError, match=message):
            queries.parse_mix(bad)


def test_user_query_file(tmp_path):
    good = tmp_path / "q.txt"
    good.write_text("; a comment\nwww.example.com A\n\n# another\nexample.com. mx\n")
    assert queries.read(good) == [
        queries.Query("www.example.com.", "A"),
        queries.Query("example.com.", "MX"),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("www.example.com A\nwww.example.com NOTATYPE\n")
    with pytest.raises(queries.QueryFileError, match=r"bad.txt:2:"):
        queries.read(bad)
    flags = tmp_path / "flags.txt"
    flags.write_text("www.example.com A E\n")
    with pytest.raises(queries.QueryFileError, match=r"flags.txt:1: expected NAME TYPE"):
        queries.read(flags)
    empty = tmp_path / "empty.txt"
    empty.write_text("; nothing\n")
    with pytest.raises(queries.QueryFileError, match="no queries"):
        queries.read(empty)


# ---- options ------------------------------------------------------------------------------


def _resolve(*argv):
    import argparse

    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    return options.resolve(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "198.18.0.1:53"], "not a loopback address"),
        (["--target", "127.0.0.1"], "expected HOST:PORT"),
        (["--target", "127.0.0.1:53", "--generator", "kxdpgun"], "only dnsperf"),
        (["--target", "127.0.0.1:53", "--compare", "nsd"], "--compare do not apply"),
        (["--compare", "unbound"], "unknown server 'unbound'"),
        (["--duration", "0"], "--duration"),
        (["--queues", "0"], "--queues: expected 1 to"),
        (["--server-cpus", "3-1"], "expected CPUs like"),
        (["--server-cpus", "4095"], "not usable here"),
        (["--soak", "--mode", "xdp"], "--soak runs at a fixed rate"),
        (["--soak", "--rate", "1000"], "give --mode xdp or --mode socket"),
    ],
)
def test_bad_options_name_the_option(argv, message):
    with pytest.raises(options.UsageError, match=message):
        _resolve(*argv)


def test_plan_alternates_modes_and_gives_peers_the_modes_they_have():
    opts = _resolve("--compare", "nsd,knot", "--server-cpus", "0", "--client-cpus", "0")
    assert opts.plan() == [
        ("xdpdns", "xdp"),
        ("xdpdns", "socket"),
        ("nsd", "socket"),
        ("knot", "xdp"),
        ("knot", "socket"),
    ]
    assert _resolve("--mode", "xdp", "--compare", "nsd").plan() == [
        ("xdpdns", "xdp"),
        ("nsd", "socket"),
    ]
    assert _resolve("--target", "[::1]:5353").plan() == [("target", "::1:5353")]


def test_not_root_without_target_is_one_clear_line(monkeypatch, capsys):
    from xdpdns import cli

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["bench", "--duration", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"xdpdns: error: {options.ROOT_MESSAGE}"]


def test_usage_error_exits_2(capsys):
    from xdpdns import cli

    assert cli.main(["bench", "--target", "192.0.2.1:53"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


# ---- the report -----------------------------------------------------------------------------


def _fake_run(server, mode, qps, **extra):
    run = {
        "server": server,
        "mode": mode,
        "qps": qps,
        "sent": qps,
        "lost": 0,
        "latency_ms": {"avg": 0.5},
        "errors": [],
        "server_cpu": 0.5,
        "server_cpus_us_per_answer": 1e6 / qps,
    }
    run.update(extra)
    return run


def test_summary_takes_medians_and_ratios_pair_same_modes():
    runs = [_fake_run("xdpdns", "xdp", q) for q in (300, 100, 200)]
    runs += [
        _fake_run("knot", "xdp", 100),
        _fake_run("nsd", "socket", 50),
        _fake_run("xdpdns", "socket", 100),
    ]
    rows = report.summarize(runs)
    assert [(r["server"], r["mode"], r["runs"], r["qps_median"]) for r in rows] == [
        ("xdpdns", "xdp", 3, 200),
        ("knot", "xdp", 1, 100),
        ("nsd", "socket", 1, 50),
        ("xdpdns", "socket", 1, 100),
    ]
    ratio = {(r["of"], r["to"]): r["qps"] for r in report.ratios(rows)}
    assert ratio == {
        ("xdpdns xdp", "knot xdp"): 2.0,
        ("xdpdns socket", "nsd socket"): 2.0,
        ("xdpdns xdp", "xdpdns socket"): 2.0,
    }
    text = report.table(rows, report.ratios(rows))
    assert "xdpdns xdp / knot xdp: answers/s 2.00" in text


def test_chart_is_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="apt-get install python3-matplotlib")
    runs = [
        _fake_run("xdpdns", "xdp", 200_000, latency_ms={"p50": 0.05, "p99": 2.0}),
        _fake_run("xdpdns", "socket", 90_000, latency_ms={"p50": 0.2, "p99": 900.0}),
    ]
    path = tmp_path / "chart.png"
    report.chart(path, report.summarize(runs), "a title")
    _assert_png(path)


def _assert_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600


class FakeServer:
    """Answers 1000 a second and grows by 60 KiB a minute."""

    def __init__(self):
        self.t0 = time.monotonic()

    def stats(self):
        return {"udp": {"answered": int((time.monotonic() - self.t0) * 1000)}, "tcp": {}}

    def rss_kib(self):
        return 1000 + int(time.monotonic() - self.t0)

    def pids(self):
        return []


def test_soak_samples_until_the_load_ends_and_measures_drift(monkeypatch):
    sampler = soak.Sampler(FakeServer(), interval=0.05, until=0.35)
    monkeypatch.setattr(soak, "SETTLE", 0.0)
    sampler.start()
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < 0.5:
        sampler(elapsed)
        time.sleep(0.01)
    assert 5 <= len(sampler.samples) <= 9
    assert all(s.t <= 0.35 for s in sampler.samples)
    summary = sampler.summary()
    assert summary["rate_median"] == pytest.approx(1000, rel=0.2)
    assert summary["rss_kib_per_minute"] == pytest.approx(60, abs=60)


# ---- against a server on loopback (no root) --------------------------------------------------


def _dnsperf_or_skip():
    if generators.missing_tool("dnsperf"):
        pytest.skip(generators.missing_tool("dnsperf"))


def _bench(*args, timeout=BENCH_TIMEOUT):
    return subprocess.run(
        xdpdns_command() + ["bench", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_target_loads_a_server_on_loopback(xdpdns_serve, tmp_path):
    _dnsperf_or_skip()
    server = xdpdns_serve(
        "--listen", "127.0.0.1:0", "--udp-workers", "1", "--control-socket", tmp_path / "ctl"
    )
    host, port = server.addresses[0]
    out = tmp_path / "target.json"
    result = _bench(
        "--target", f"{host}:{port}", "--duration", 1, "--repeat", 1, "--warmup", 0, "--json", out
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert run["target"] == f"{host}:{port}" and run["answered"] > 0 and run["errors"] == []
    assert doc["error"] is None and doc["machine"]["kernel"] == os.uname().release


# ---- as root: whole benchmarks in namespaces ----------------------------------------------------


def _root_or_skip():
    if os.geteuid() != 0:
        pytest.skip("xdpdns bench builds network namespaces: root only (CI runs it as root)")
    for tool in ("ip", "ethtool"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.skip(f"xdpdns bench needs {tool} (Debian: iproute2, ethtool)")


_NR_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_GET_FD_BY_ID = 13


def bpf_program_exists(prog_id: int) -> bool | None:
    """Whether the kernel still holds the BPF program with this ID (None:
    cannot tell on this architecture)."""
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 3)(prog_id, 0, 0)  # prog_id, next_id, open_flags
    fd = libc.syscall(nr, _BPF_PROG_GET_FD_BY_ID, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd >= 0:
        os.close(fd)
        return True
    return False


def _names_of_pid(pid: int) -> list[str]:
    """The namespaces a bench process with this PID would have made."""
    prefix = topology._base36(pid, 5)
    return (
        [
            n
            for n in os.listdir("/run/netns")
            if n.startswith(("xdb-s-" + prefix, "xdb-c-" + prefix))
        ]
        if os.path.isdir("/run/netns")
        else []
    )


def assert_nothing_left(doc: dict, bench_pid: int | None = None) -> None:
    """No namespace, no link, no XDP program and no process of the runs."""
    for run in doc["runs"]:
        topo = run.get("topology")
        if topo:
            for key in ("server_netns", "client_netns"):
                assert not os.path.exists(f"/run/netns/{topo[key]}"), topo[key]
            for key in ("server_interface", "client_interface"):
                assert not os.path.exists(f"/sys/class/net/{topo[key]}"), topo[key]
        for side, prog in run["xdp_programs"].items():
            assert bpf_program_exists(prog) in (False, None), f"{side} XDP program {prog}"
        for proc in run["processes"]:
            assert start_time(proc["pid"]) != proc["start_time"], f"left running: {proc}"
    if bench_pid is not None:
        assert _names_of_pid(bench_pid) == []


def _bench_json(tmp_path, *args, expect=0):
    out = tmp_path / "bench.json"
    proc = subprocess.Popen(
        xdpdns_command() + ["bench", "--json", str(out), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        stdout, stderr = proc.communicate(timeout=BENCH_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == expect, stderr
    doc = json.loads(out.read_text())
    assert_nothing_left(doc, proc.pid)
    return doc, stdout, stderr


def _assert_answered(doc):
    assert doc["error"] is None
    for run in doc["runs"]:
        assert run["errors"] == [], run["errors"]
        assert run["answered"] > 0 and run["sent"] > 0, run
        assert run["startup_s"] > 0


def test_topology_is_deleted_even_when_the_block_fails():
    _root_or_skip()
    with pytest.raises(RuntimeError, match="inside"):
        with topology.Topology(2, [0], [0]) as topo:
            assert len(topo.server.ifname) <= 10 and len(topo.server.mac) == 6
            assert topo.server.netns.exists() and topo.client.netns.exists()
            raise RuntimeError("inside")
    assert not topo.exists()


def test_both_modes_with_dnsperf_and_a_chart(tmp_path):
    _root_or_skip()
    _dnsperf_or_skip()
    pytest.importorskip("matplotlib", reason="apt-get install python3-matplotlib")
    chart = tmp_path / "bench.png"
    doc, stdout, _ = _bench_json(
        tmp_path, "--mode", "both", "--duration", 2, "--repeat", 1, "--warmup", 0, "--chart", chart
    )
    _assert_answered(doc)
    assert [(r["server"], r["mode"]) for r in doc["runs"]] == [
        ("xdpdns", "xdp"),
        ("xdpdns", "socket"),
    ]
    xdp, sock = doc["runs"]
    assert xdp["server_answered"] > 0 and xdp["server_queues_answered"][0] > 0
    assert "server" in xdp["xdp_programs"] and "server" not in sock["xdp_programs"]
    assert "xdpdns xdp / xdpdns socket" in stdout
    assert doc["machine"]["cpu_model"] and doc["tools"]["dnsperf"].startswith("dnsperf")
    _assert_png(chart)


def test_both_modes_with_kxdpgun_strict_steering(tmp_path):
    _root_or_skip()
    if generators.missing_tool("kxdpgun"):
        pytest.skip(generators.missing_tool("kxdpgun"))
    doc, _, _ = _bench_json(
        tmp_path,
        "--mode",
        "both",
        "--generator",
        "kxdpgun",
        "--rate",
        50_000,
        "--steer",
        "strict",
        "--duration",
        2,
        "--repeat",
        1,
        "--warmup",
        0,
    )
    _assert_answered(doc)
    for run in doc["runs"]:
        assert run["steering"] == "strict"
        # kxdpgun attaches XDP on the client, so both veths have NAPI threads.
        assert run["napi_threads"]["server"] >= 1 and run["napi_threads"]["client"] >= 1
        assert "client" in run["xdp_programs"]


def _load_generator_missing():
    try:
        from xdpdns.bench.loadgen import LoadGenerator  # noqa: F401
    except ImportError:
        return "this build of xdpdns has no xdpdns.bench.loadgen"
    from xdpdns.bpfobj import bpf_object_path

    try:
        bpf_object_path("xdpgen.bpf.o")
    except (FileNotFoundError, TypeError) as exc:
        return f"the generator's XDP program is not built ({exc})"
    return None


def test_xdpdns_generator_loads_both_queues(tmp_path):
    _root_or_skip()
    reason = _load_generator_missing()
    if reason:
        pytest.skip(reason)
    doc, _, _ = _bench_json(
        tmp_path,
        "--mode",
        "xdp",
        "--generator",
        "xdpdns",
        "--queues",
        2,
        "--rate",
        50_000,
        "--duration",
        2,
        "--repeat",
        1,
        "--warmup",
        0,
    )
    _assert_answered(doc)
    (run,) = doc["runs"]
    assert len(run["queues"]) == 2 and all(q["answered"] > 0 for q in run["queues"])
    # Both server queues answered, not only the first (DESIGN.md).
    assert len(run["server_queues_answered"]) == 2
    assert all(n > 0 for n in run["server_queues_answered"])
    # And what each did, for telling where an overload loses queries.
    assert [q["answered"] for q in run["server_queues"]] == run["server_queues_answered"]
    assert all(
        q["received"] >= q["answered"] and q["kernel_rx_ring_full"] >= 0
        for q in run["server_queues"]
    )
    assert run["latency_ms"]["p50"] > 0 and sum(run["latency_buckets_us"]) == run["answered"]


def test_split_steering_pins_the_server_napi_after_the_workers(tmp_path):
    """--steer split: threaded NAPI on both sides, the server's on the
    server CPUs after the workers' (modulo: this machine may have one
    server CPU), and the run answers as under strict."""
    _root_or_skip()
    reason = _load_generator_missing()
    if reason:
        pytest.skip(reason)
    doc, _, _ = _bench_json(
        tmp_path,
        "--mode",
        "xdp",
        "--generator",
        "xdpdns",
        "--steer",
        "split",
        "--rate",
        20_000,
        "--duration",
        1,
        "--repeat",
        1,
        "--warmup",
        0,
    )
    _assert_answered(doc)
    (run,) = doc["runs"]
    assert run["steering"] == "split"
    assert run["napi_threads"]["server"] >= 1 and run["napi_threads"]["client"] >= 1


def test_peers_in_the_same_topology(tmp_path):
    _root_or_skip()
    _dnsperf_or_skip()
    from xdpdns.bench.servers import PEERS, missing_program

    peers = [p for p in PEERS if missing_program(p) is None]
    if not peers:
        pytest.skip("no peer installed (Debian: apt-get install knot nsd bind9)")
    doc, stdout, _ = _bench_json(
        tmp_path,
        "--mode",
        "xdp",
        "--compare",
        ",".join(peers),
        "--duration",
        1,
        "--repeat",
        1,
        "--warmup",
        0,
    )
    _assert_answered(doc)
    ran = {(r["server"], r["mode"]) for r in doc["runs"]}
    assert ("xdpdns", "xdp") in ran
    for peer in peers:
        assert (peer, "xdp" if peer == "knot" else "socket") in ran
        assert peer in doc["tools"]
    assert len(doc["ratios"]) >= 1


def test_soak_samples_memory_and_answer_rate(tmp_path):
    _root_or_skip()
    _dnsperf_or_skip()
    pytest.importorskip("matplotlib", reason="apt-get install python3-matplotlib")
    chart = tmp_path / "soak.png"
    doc, stdout, _ = _bench_json(
        tmp_path,
        "--soak",
        "--mode",
        "socket",
        "--rate",
        5000,
        "--duration",
        3,
        "--sample-interval",
        1,
        "--warmup",
        0,
        "--chart",
        chart,
    )
    _assert_answered(doc)
    samples = doc["runs"][0]["soak"]["samples"]
    assert len(samples) >= 3 and all(s["rss_kib"] > 0 for s in samples)
    assert any(s["rate"] and s["rate"] > 1000 for s in samples)
    assert "memory (RSS)" in stdout
    _assert_png(chart)


def test_a_server_refusing_to_start_still_tears_down(tmp_path):
    _root_or_skip()
    _dnsperf_or_skip()
    zone = tmp_path / "broken.test.zone"
    zone.write_text(
        "$ORIGIN broken.test.\n$TTL 300\n@ SOA ns1 host 1 2 3 4 5\n@ NS ns1\n"
        "ns1 A 198.18.0.1\nwww CNAME ns1\nwww A 198.18.0.9\n"
    )
    qfile = tmp_path / "q.txt"
    qfile.write_text("www.broken.test A\n")
    doc, _, stderr = _bench_json(
        tmp_path,
        "--zone",
        zone,
        "--queries",
        qfile,
        "--mode",
        "xdp",
        "--duration",
        1,
        "--repeat",
        1,
        "--warmup",
        0,
        expect=1,
    )
    assert "CNAME beside other data" in stderr and "exited with 1 before answering" in stderr
    assert doc["error"] and len(doc["runs"]) == 1
    (run,) = doc["runs"]
    assert run["server_exit_status"] == 1 and run["topology"] and run["processes"]


def test_sigterm_in_the_middle_stops_and_deletes_everything(tmp_path):
    _root_or_skip()
    _dnsperf_or_skip()
    out = tmp_path / "bench.json"
    err = tmp_path / "stderr"
    with open(err, "w") as errfile:
        proc = subprocess.Popen(
            xdpdns_command()
            + [
                "bench",
                "--mode",
                "socket",
                "--duration",
                "30",
                "--repeat",
                "1",
                "--warmup",
                "0",
                "--json",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=errfile,
            stdin=subprocess.DEVNULL,
        )
    try:
        # Wait until the load runs: the bench has a dnsperf child.
        deadline = time.monotonic() + 30
        descendants = []
        while time.monotonic() < deadline and proc.poll() is None:
            descendants = [(pid, start_time(pid), comm(pid)) for pid in children(proc.pid)]
            if any(name == "dnsperf" for _, _, name in descendants):
                break
            time.sleep(0.1)
        assert any(name == "dnsperf" for _, _, name in descendants), err.read_text()
        assert len(_names_of_pid(proc.pid)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid, started, name in descendants:
        assert start_time(pid) != started, f"{name} ({pid}) left running"
    doc = json.loads(out.read_text())
    assert doc["error"] == "stopped by SIGTERM"
    assert_nothing_left(doc, proc.pid)


def test_busy_seconds_from_idle_time_not_tick_samples():
    """A CPU's busy time is the wall time less its idle time: the busy
    columns of /proc/stat are sampled at the tick and miss a server that
    runs for microseconds between sleeps (they said 0.24 s where it ran
    0.94 s), while NO_HZ keeps idle time exactly."""
    before = {0: [0] * 8, 1: [0] * 8}
    # 3 s: CPU 0 idle 0.7 s with its busy columns saying only 0.02 s;
    # CPU 1 idle 1 s plus 0.5 s of iowait.
    after = {
        0: [2, 0, 0, int(0.7 * CLK_TCK), 0, 0, 0, 0],
        1: [0, 0, 0, int(1.0 * CLK_TCK), int(0.5 * CLK_TCK), 0, 0, 0],
    }
    assert busy_seconds(before, after, {0}, 3.0) == pytest.approx(2.3)
    assert busy_seconds(before, after, {0, 1}, 3.0) == pytest.approx(3.8)
    assert busy_seconds(before, after, {2}, 3.0) == 0.0
