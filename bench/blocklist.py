#!/usr/bin/env python3
"""A blocklist of a million names: how long it takes to load and to compile
into the image, how many bytes of image each name costs, and how long
loading a saved image takes (validation included).

The blocklist is generated in a temporary directory with a fixed seed, in
the shape of the public lists: two to four labels of random letters and
digits under a handful of TLDs, a tenth of them as subtrees (``*.NAME``),
about 20 bytes a line.  Loading goes through ImageBuilder.load_blocklist (the
native reader); the image also holds the example zone.  ``--write FILE``
only writes the list, for bench/override_lookup.c, which measures what the
lookup costs each query.  Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import string
import tempfile
import time
from pathlib import Path

import dns.name

from xdpdns.config import default_zone_path
from xdpdns.engine import Image, ImageBuilder

TLDS = ("com", "net", "org", "info", "io", "xyz", "de", "ru")
ALPHABET = string.ascii_lowercase + string.digits


def write_blocklist(path: Path, names: int, seed: int) -> None:
    """Writes `names` distinct names."""
    rng = random.Random(seed)
    seen: set[str] = set()
    with open(path, "w") as f:
        f.write("# generated blocklist\n")
        while len(seen) < names:
            labels = [
                "".join(rng.choices(ALPHABET, k=rng.randint(4, 10)))
                for _ in range(rng.randint(1, 3))
            ]
            name = ".".join(labels + [rng.choice(TLDS)])
            if name in seen:
                continue
            seen.add(name)
            f.write(f"*.{name}\n" if rng.random() < 0.1 else f"{name}\n")


def build(blocklist: Path | None) -> tuple[Image, dict]:
    times = {}
    with ImageBuilder() as b:
        zone = b.add_zone(dns.name.from_text("example.com."))
        b.load_zonefile(zone, default_zone_path())
        if blocklist is not None:
            start = time.perf_counter()
            assert b.load_blocklist(blocklist, b.add_override_rule("nxdomain"))
            times["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        image = b.finish()
        times["finish_s"] = time.perf_counter() - start
    data = image.to_bytes()
    start = time.perf_counter()
    Image.from_bytes(data)
    times["validate_s"] = time.perf_counter() - start
    return image, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=53)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--write", type=Path, help="only write the blocklist to this file")
    args = parser.parse_args()
    if args.write:
        write_blocklist(args.write, args.names, args.seed)
        return

    with tempfile.TemporaryDirectory(prefix="xdpdns-blocklist-") as tmp:
        path = Path(tmp) / "blocklist.txt"
        write_blocklist(path, args.names, args.seed)
        file_bytes = path.stat().st_size
        base, _ = build(None)
        runs = []
        for _ in range(args.repeats):
            image, times = build(path)
            runs.append(times)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    result = {
        "names": args.names,
        "file_bytes": file_bytes,
        "load_s": statistics.median(r["load_s"] for r in runs),
        "finish_s": statistics.median(r["finish_s"] for r in runs),
        "validate_s": statistics.median(r["validate_s"] for r in runs),
        "load_runs_s": [round(r["load_s"], 3) for r in runs],
        "image_bytes": image.info.bytes,
        "image_bytes_without": base.info.bytes,
        "bytes_per_name": (image.info.bytes - base.info.bytes) / args.names,
        "peak_rss_mib": round(rss_mib, 1),
    }
    for key, value in result.items():
        print(f"{key:26} {value:.3f}" if isinstance(value, float) else f"{key:26} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
