#!/usr/bin/env python3
"""Time to sign a zone on load, and on a reload that changed some records:
the path `[[zone]] dnssec` takes (xdpdns.image.compile_sources), keeping
the served image's signatures over what did not change.

The zone is bench/startup.py's generated one (A, AAAA, MX, TXT, CNAME under
big.test), signed with a KSK and a ZSK (ECDSA P-256, dnssec-keygen) and
NSEC3 (RFC 9276) or NSEC.  Measured, each once per repeat, medians printed:

  load       the whole zone signed, nothing served before (a start)
  changed    --changes A records changed and the serial raised, signed with
             the loaded image as the one served (a reload)
  same       the same file again, nothing due (a reload that changed nothing)
  changed, everything signed   the changed file signed as a start would

Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import ORIGIN, write_zone  # noqa: E402 (bench/ is not a package)

from xdpdns.engine import Engine  # noqa: E402
from xdpdns.hookspecs import ZoneFile, ZoneSigning  # noqa: E402
from xdpdns.image import compile_sources  # noqa: E402


def keys(directory: Path) -> tuple[Path, ...]:
    out = []
    for flags in (["-f", "KSK"], []):
        done = subprocess.run(
            [
                "dnssec-keygen",
                "-q",
                "-K",
                str(directory),
                "-a",
                "ECDSAP256SHA256",
                *flags,
                ORIGIN.rstrip("."),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        out.append(directory / done.stdout.strip())
    return tuple(out)


def change(path: Path, changes: int) -> int:
    """Changes `changes` A records spread over the zone and raises the serial."""
    text = path.read_text().replace(" 2024010101 ", " 2024010102 ", 1)
    pattern = re.compile(r"host(\d{7}) 3600 IN A 198\.18\.(\d+)\.(\d+)")
    hosts = len(pattern.findall(text))
    step = max(1, hosts // max(changes, 1))
    done = 0

    def edit(match: re.Match) -> str:
        nonlocal done
        if int(match.group(1)) % step or done >= changes:
            return match.group(0)
        done += 1
        return f"host{match.group(1)} 3600 IN A 198.19.{match.group(2)}.{match.group(3)}"

    path.write_text(pattern.sub(edit, text))
    return done


def timed(source, previous=None):
    started = time.monotonic()
    result = compile_sources([source], previous=previous)
    elapsed = time.monotonic() - started
    if result.image is None:
        raise SystemExit("\n".join(str(p) for p in result.problems))
    report = result.signed[0].report
    return result.image, {"seconds": round(elapsed, 3), "made": report.made, "kept": report.kept}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=1_000)
    ap.add_argument("--nsec", action="store_true", help="NSEC instead of NSEC3")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results as JSON to this file")
    args = ap.parse_args()
    if shutil.which("dnssec-keygen") is None:
        raise SystemExit("dnssec-keygen not found (Debian: bind9-utils)")
    tmp = Path(tempfile.mkdtemp(prefix="xdpdns-resign-"))
    rows = []
    try:
        signing = ZoneSigning(keys(tmp), not args.nsec)
        origin = dns.name.from_text(ORIGIN)
        for rep in range(args.repeats):
            path = tmp / "big.test.zone"
            zone = write_zone(path, args.records)
            source = ZoneFile(origin, path, signing=signing)
            row = {"repeat": rep}
            with Engine() as engine:
                image, row["load"] = timed(source)
                engine.set_image(image)
                row["changed_records"] = change(path, args.changes)
                image, row["changed"] = timed(source, engine.published_image())
                engine.set_image(image)
                image, row["same"] = timed(source, engine.published_image())
                engine.set_image(image)
            image, row["changed_everything_signed"] = timed(source)
            image.close()
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\nzone {ORIGIN}: {zone['records']:,} records, "
        f"{'NSEC' if args.nsec else 'NSEC3'}, {rows[0]['changed_records']} A records changed"
    )
    for kind in ("load", "changed", "same", "changed_everything_signed"):
        seconds = statistics.median(r[kind]["seconds"] for r in rows)
        print(
            f"{kind:28} {seconds:8.2f} s  made {rows[0][kind]['made']:>9,}  "
            f"kept {rows[0][kind]['kept']:>9,}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "zone": zone, "runs": rows}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
