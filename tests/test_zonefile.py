"""Zone files through libzscanner, $INCLUDE and $GENERATE, and the checks
real servers make, each reported with its file and line."""

from pathlib import Path

import dns.rcode
import pytest

from zoneimage import SOA, ask, build, image, rrsets
from xdpdns.engine import ImageBuilder

import dns.name

# Also run against the AddressSanitizer build (bootstrap).
pytestmark = pytest.mark.asan

DATA = Path(__file__).parent / "data" / "zonefile"


def load(path, origin="example.com."):
    with ImageBuilder() as b:
        zone = b.add_zone(dns.name.from_text(origin))
        b.load_zonefile(zone, path)
        b.check()
        problems = b.problems()
        img = None if any(p.is_error for p in problems) else b.finish()
        return img, problems


def test_generate_forms():
    img, problems = load(DATA / "generate.zone")
    assert problems == []
    for i in (1, 2, 3):
        assert rrsets(ask(img, f"host00{i}.example.com.", "A").answer) == {
            f"host00{i}.example.com. 300 IN A 10.0.0.{i}"
        }
    assert rrsets(ask(img, "host003.example.com.", "TXT").answer) == {
        'host003.example.com. 300 IN TXT "after host003"'
    }
    assert rrsets(ask(img, "h02.example.com.", "CNAME").answer) == {
        "h02.example.com. 60 IN CNAME target3.example.com."
    }
    assert ask(img, "A$x$y.example.com.", "AAAA").answer[0][0].to_text() == "2001:2::a"
    assert rrsets(ask(img, "377.example.com.", "PTR").answer) == {
        "377.example.com. 120 IN PTR nf.f.rev.example.com."
    }
    assert rrsets(ask(img, "a.1.0.nib.example.com.", "PTR").answer) == {
        "a.1.0.nib.example.com. 300 IN PTR w5.example.com."
    }
    assert rrsets(ask(img, "q1.example.com.", "TXT").answer) == {
        'q1.example.com. 300 IN TXT "value 1 ; kept"'
    }
    assert rrsets(ask(img, "mx2.example.com.", "MX").answer) == {
        "mx2.example.com. 300 IN MX 7 mail2.example.net."
    }
    assert rrsets(ask(img, "g1.sub.example.com.", "A").answer) == {
        "g1.sub.example.com. 300 IN A 198.18.2.1"
    }


def test_include_paths_origins_and_ttls():
    img, problems = load(DATA / "include.zone")
    assert problems == []
    assert rrsets(ask(img, "www.example.com.", "A").answer) == {
        "www.example.com. 300 IN A 198.18.100.1"
    }
    assert rrsets(ask(img, "mail.example.com.", "A").answer) == {
        "mail.example.com. 77 IN A 198.18.100.2"
    }
    assert rrsets(ask(img, "deep.example.com.", "TXT").answer) == {
        'deep.example.com. 77 IN TXT "two levels down"'
    }
    assert rrsets(ask(img, "www.other.example.com.", "A").answer) == {
        "www.other.example.com. 300 IN A 198.18.100.1"
    }
    # $TTL 77 set inside the include does not leak back.
    assert rrsets(ask(img, "after.example.com.", "A").answer) == {
        "after.example.com. 300 IN A 198.18.2.9"
    }


def test_every_error_is_reported_with_its_line():
    img, problems = load(DATA / "errors.zone")
    assert img is None
    errors = [p for p in problems if p.is_error]
    assert [p.line for p in errors] == [7, 10, 11, 12, 13, 14, 15, 17]
    assert all(p.file == str(DATA / "errors.zone") for p in errors[:5])
    assert "loop" in errors[6].message
    assert "missing.zone" in errors[5].message


def test_missing_file(tmp_path):
    img, problems = load(tmp_path / "nothere.zone")
    assert img is None
    assert any("No such file" in p.message for p in problems)


CHECKS = [
    # zone text, severity, line, words in the message
    (
        SOA + "www 3600 IN CNAME x\nwww 3600 IN A 198.18.0.5\n",
        "error",
        4,
        "CNAME beside other data",
    ),
    (SOA + "www 3600 IN CNAME x\nwww 3600 IN CNAME y\n", "error", 4, "more than one CNAME"),
    (SOA + "sub 3600 IN SOA ns1 h 1 2 3 4 5\n", "error", 4, "SOA record not at the zone apex"),
    (SOA + "www.example.org. 3600 IN A 198.18.0.5\n", "error", 4, "outside the zone"),
    ("@ 3600 IN NS ns1\nns1 3600 IN A 198.18.0.1\n", "error", 0, "no SOA"),
    ("@ 3600 IN SOA ns1 h 1 2 3 4 5\nns1 3600 IN A 198.18.0.1\n", "error", 0, "no NS"),
    (SOA + "sub 3600 IN NS ns.sub\n", "warning", 4, "missing glue"),
    (
        SOA + "d 3600 IN DNAME example.net.\nx.d 3600 IN A 198.18.0.5\n",
        "warning",
        5,
        "below a DNAME",
    ),
    (SOA + "m 3600 IN A 198.18.0.5\nm 60 IN A 198.18.0.6\n", "warning", 5, "RFC 2181"),
    (SOA + "www 3600 IN A 198.18.0.500\n", "error", 4, "invalid"),
]


@pytest.mark.parametrize("text,severity,line,words", CHECKS, ids=[c[3] for c in CHECKS])
def test_zone_checks(tmp_path, text, severity, line, words):
    img, problems = build(tmp_path, {"example.com.": text})
    found = [p for p in problems if words in p.message]
    assert found, problems
    assert found[0].severity == severity
    assert found[0].line == line
    if severity == "warning":
        assert img is not None, "warnings do not stop the zone"
    else:
        assert img is None


def test_negative_ttl_is_min_of_soa_ttl_and_minimum(tmp_path):
    img = image(
        tmp_path,
        {"example.com.": "@ 30 IN SOA ns1 h 1 2 3 4 600\n@ IN NS ns1\nns1 IN A 198.18.0.1\n"},
    )
    r = ask(img, "nx.example.com.", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.authority[0].ttl == 30


def test_include_outside_the_zone_files_directory_is_refused(tmp_path):
    """An $INCLUDE must lie in the zone file's directory or below: not a
    path up, not an absolute path elsewhere, not a symbolic link out."""
    zones = tmp_path / "zones"
    (zones / "sub").mkdir(parents=True)
    (tmp_path / "secret.inc").write_text("leak 300 IN A 198.18.0.66\n")
    (zones / "sub" / "ok.inc").write_text("inside 300 IN A 198.18.0.7\n")
    (zones / "link.inc").symlink_to(tmp_path / "secret.inc")
    zone = zones / "example.com.zone"
    zone.write_text(
        SOA + "$INCLUDE ../secret.inc\n$INCLUDE /etc/passwd\n"
        "$INCLUDE link.inc\n$INCLUDE sub/ok.inc\n"
    )
    img, problems = load(zone)
    errors = [p for p in problems if p.is_error]
    assert [p.line for p in errors] == [4, 5, 6]
    assert all("outside" in p.message and str(zones) in p.message for p in errors)
    assert img is None


def test_include_of_something_not_a_regular_file_is_refused(tmp_path):
    """A FIFO named by $INCLUDE is an error at its line, and never blocks
    the load waiting for a writer."""
    import os

    os.mkfifo(tmp_path / "pipe.inc")
    zone = tmp_path / "example.com.zone"
    zone.write_text(SOA + "$INCLUDE pipe.inc\n")
    img, problems = load(zone)
    errors = [p for p in problems if p.is_error]
    assert len(errors) == 1 and errors[0].line == 4
    assert "not a regular file" in errors[0].message


def test_zone_file_truncated_while_loading_is_not_sigbus(tmp_path):
    """Regression: zone files were mmapped, so a file truncated while the
    scanner read it (an editor or a deploy racing a reload) killed the
    whole server with SIGBUS.  Now it is read first: the load finishes."""
    import subprocess
    import sys

    zone = tmp_path / "big.zone"
    with open(zone, "w") as f:
        f.write(SOA)
        for i in range(300_000):
            f.write(f'h{i} 300 IN TXT "record number {i} with some text to scan"\n')
    script = f"""
import threading, time, os
import dns.name
from xdpdns.engine import ImageBuilder

def truncate():
    time.sleep(0.05)
    os.truncate({str(zone)!r}, 0)

with ImageBuilder() as b:
    zone = b.add_zone(dns.name.from_text("example.com."))
    threading.Thread(target=truncate).start()
    try:
        b.load_zonefile(zone, {str(zone)!r})
    except Exception as exc:
        print("load error:", exc)
print("survived")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert "survived" in result.stdout
