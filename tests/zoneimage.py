"""Building zone images from zone text in tests, and asking them questions.

Images are built the way the server builds them: zone text is written to a
file and read by the native zone-file reader, so these tests exercise the
same path as `xdpdns serve`.
"""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype

from xdpdns.engine import Image, ImageBuilder

# The layout version native/image/image.h writes (XD_IMAGE_VERSION).
IMAGE_VERSION = 7

SOA = "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\nns1 3600 IN A 198.18.0.1\n"


def build(tmp_path: Path, zones: dict[str, str]) -> tuple[Image | None, list]:
    """Builds an image from {origin: zone text}; returns (image or None, problems)."""
    with ImageBuilder() as builder:
        for origin, text in zones.items():
            path = tmp_path / f"{origin}zone"
            path.write_text(textwrap.dedent(text))
            zone = builder.add_zone(dns.name.from_text(origin))
            builder.load_zonefile(zone, path)
        builder.check()
        problems = builder.problems()
        if any(p.is_error for p in problems):
            return None, problems
        return builder.finish(), problems


def image(tmp_path: Path, zones: dict[str, str]) -> Image:
    img, problems = build(tmp_path, zones)
    assert img is not None, "\n".join(map(str, problems))
    return img


def ask(img: Image, qname: str, qtype: str = "A", tcp: bool = False, **kw) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, **kw)
    wire = img.answer(query.to_wire(), tcp=tcp)
    assert wire is not None, f"no response to {qname} {qtype}"
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    return response


def rrsets(section) -> set[str]:
    """A section as a set of one-line RRs, for comparing with zone text."""
    return {line for rrset in section for line in rrset.to_text().splitlines()}


MASK = (1 << 64) - 1


def _mix64(h):
    for mul in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h ^= h >> 33
        h = (h * mul) & MASK
    return h ^ (h >> 33)


def xd_hash(data: bytes, seed: int) -> int:
    """native/wire/wire.c's xd_hash, to re-seal images a test damages."""
    k = 0x9E3779B97F4A7C15
    h = (seed ^ (len(data) * k)) & MASK
    for i in range(0, len(data), 8):
        word = int.from_bytes(data[i : i + 8], "little")
        h = ((h ^ word) * k) & MASK
        h ^= h >> 29
    return _mix64(h)


def seal(data: bytearray) -> bytes:
    """Re-writes an image's checksum, so that the loader's own checks are
    what a damaged image meets."""
    data[24:32] = struct.pack("=Q", xd_hash(bytes(data[32:]), 0))
    return bytes(data)


# A zone whose serial (and www's address) a test changes between reloads.
SERIAL_ZONE = """$ORIGIN example.test.
$TTL 300
@ IN SOA ns.example.test. admin.example.test. {serial} 3600 600 86400 300
@ IN NS ns
ns IN A 198.18.0.53
www IN A 198.18.0.{serial}
"""
