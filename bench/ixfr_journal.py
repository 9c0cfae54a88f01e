#!/usr/bin/env python3
"""The IXFR journal's cost: a zone of R A records published, then U more
versions with C of them changed each, as bench/secondary_fleet.py makes
them (native/image/journal.c).  Measured
per version: how long keeping the journal takes (the new image compared
with the one served, before it is published) against compiling the image,
and for a secondary one version behind, the IXFR's bytes and the time the
engine takes to write it, against the AXFR's.

In one process, no network (the transfers are written by
xd_engine_axfr into memory, as a TCP worker would send them).  Not part of
the test run.

    bench/ixfr_journal.py --records 1000000 --changes 1000 --updates 5
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.name
import dns.rrset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_helpers import axfr  # noqa: E402
from secondary_fleet import zone_text  # noqa: E402  (the fleet's versions)
from xdpdns.engine import Engine, JournalLimits  # noqa: E402
from xdpdns.hookspecs import ZoneAcl, ZoneFile  # noqa: E402
from xdpdns.image import compile_sources  # noqa: E402

ORIGIN = dns.name.from_text("fleet.test.")
ACL = ZoneAcl(allow_transfer=(ipaddress.ip_network("127.0.0.1/32"),))


def transfer(engine: Engine, rdtype: str, serial: int | None) -> tuple[int, float]:
    query = dns.message.make_query(ORIGIN, rdtype)
    if serial is not None:
        query.authority.append(
            dns.rrset.from_text(ORIGIN, 0, "IN", "SOA", f"ns1.{ORIGIN} h.{ORIGIN} {serial} 1 1 1 1")
        )
    start = time.perf_counter()
    stream = axfr(engine, query.to_wire(), "127.0.0.1")
    return len(stream), time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100000)
    p.add_argument("--changes", type=int, default=1000)
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Engine() as engine:
        for version in range(1, args.updates + 2):
            path = Path(tmp) / f"v{version}.zone"
            path.write_text(zone_text(args.records, args.changes, version))
            start = time.perf_counter()
            image = compile_sources([ZoneFile(ORIGIN, path, acl=ACL)]).image
            compiled = time.perf_counter() - start
            start = time.perf_counter()
            events = engine.keep_journal(image, JournalLimits())
            kept = time.perf_counter() - start
            engine.set_image(image)
            if version == 1:
                continue
            ixfr_bytes, ixfr_s = transfer(engine, "IXFR", version - 1)
            axfr_bytes, axfr_s = transfer(engine, "AXFR", None)
            (event,) = events
            row = {
                "version": version,
                "compile_s": compiled,
                "journal_s": kept,
                "removed": event.removed,
                "added": event.added,
                "ixfr_bytes": ixfr_bytes,
                "ixfr_s": ixfr_s,
                "axfr_bytes": axfr_bytes,
                "axfr_s": axfr_s,
            }
            rows.append(row)
            print(
                f"v{version}: compile {compiled:.3f}s, journal {kept * 1000:.1f} ms "
                f"({event.removed} removed, {event.added} added); IXFR {ixfr_bytes} bytes "
                f"in {ixfr_s * 1000:.2f} ms, AXFR {axfr_bytes} bytes in {axfr_s * 1000:.1f} ms",
                flush=True,
            )
    summary = {
        key: statistics.median(r[key] for r in rows)
        for key in ("compile_s", "journal_s", "ixfr_bytes", "ixfr_s", "axfr_bytes", "axfr_s")
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"command": sys.argv, "rows": rows, "summary": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
