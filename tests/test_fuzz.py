"""Random and mutated packets into the answering core, and damaged images
into the image loader: never a crash, never an out-of-bounds read, always
either no response or a well-formed one.

Marked `asan`: bootstrap runs these a second time against an engine built
with AddressSanitizer and UndefinedBehaviorSanitizer, where a stray read
aborts the run instead of passing silently.
"""

import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dnsdiff
from zoneimage import SOA, build, image, seal

pytestmark = pytest.mark.asan

ZONE = (
    SOA
    + """\
@ 3600 IN MX 10 mail
mail 3600 IN A 198.18.0.2
www 3600 IN A 198.18.0.3
alias 3600 IN CNAME www
*.wild 3600 IN A 198.18.0.9
sub 3600 IN NS ns.sub
ns.sub 3600 IN A 198.18.0.12
d 3600 IN DNAME example.net.
big 3600 IN TXT "%s"
"""
    % ("y" * 250)
)

QUERIES = [
    dns.message.make_query(name, qtype, use_edns=edns).to_wire()
    for name in (
        "www.example.com.",
        "alias.example.com.",
        "a.wild.example.com.",
        "x.sub.example.com.",
        "q.d.example.com.",
        "big.example.com.",
        "nx.example.com.",
        "example.org.",
    )
    for qtype in ("A", "MX", "TXT", "ANY")
    for edns in (None, 0)
]

FUZZ = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def img(tmp_path_factory):
    return image(tmp_path_factory.mktemp("fuzz"), {"example.com.": ZONE})


def check_response(query: bytes, response: bytes | None, tcp: bool) -> None:
    if response is None:
        return
    assert len(response) >= 12
    assert response[:2] == query[:2], "the ID is echoed"
    assert response[2] & 0x80, "QR is set"
    if not tcp:
        assert len(response) <= 1232
    if (response[2] >> 3) & 0xF == 5:
        # dnspython reads UPDATE's sections as zone/prerequisite/update and
        # wants an SOA zone; our NOTIMP echoes the question and OPT only.
        assert response[6:10] == b"\0" * 4 and response[10:12] in (b"\0\0", b"\0\1")
        return
    # Whatever we send must parse: a malformed response is worse than none.
    dnsdiff.parse(response)


@FUZZ
@given(data=st.binary(max_size=700), tcp=st.booleans())
def test_random_bytes(img, data, tcp):
    check_response(data, img.answer(data, tcp=tcp), tcp)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(QUERIES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos]
    return bytes(data)


@FUZZ
@given(data=mutated(), tcp=st.booleans())
def test_mutated_queries(img, data, tcp):
    check_response(data, img.answer(data, tcp=tcp), tcp)


def test_every_valid_query_gets_an_answer(img):
    for q in QUERIES:
        r = img.answer(q)
        check_response(q, r, False)
        assert dns.message.from_wire(r).rcode() in (
            dns.rcode.NOERROR,
            dns.rcode.NXDOMAIN,
            dns.rcode.REFUSED,
        )


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0), flips=st.sets(st.integers(min_value=0), max_size=4))
def test_damaged_images_are_refused(img, cut, flips):
    from xdpdns.engine import Image

    data = bytearray(img.to_bytes())
    if flips:
        for f in {f % len(data) for f in flips}:
            data[f] ^= 0x41
    else:
        del data[cut % len(data) :]
    with pytest.raises(OSError) as e:
        Image.from_bytes(bytes(data))
    assert "zone image" in str(e.value)


def test_image_round_trip(img):
    from xdpdns.engine import Image

    again = Image.from_bytes(img.to_bytes())
    for q in QUERIES:
        assert again.answer(q) == img.answer(q)


def _with_node_flags(image: bytes, relative_name: bytes, flags: int) -> bytes:
    """The image with the flags byte of the node named relative_name (wire
    labels before the origin) set to flags, and its checksum made good."""
    data = bytearray(image)
    # node: u32 link, u16 zone, u8 flags, u8 name_len, u16 nrrsets, name
    at = data.find(relative_name)
    while at >= 0 and data[at - 3] != len(relative_name):
        at = data.find(relative_name, at + 1)
    assert at >= 0, "node not found"
    data[at - 4] = flags
    return seal(data)


def test_image_with_a_cname_flag_and_no_cname_is_refused(tmp_path):
    """Regression: an image whose node had the CNAME flag but no CNAME RRset
    loaded, and the first query for that name crashed the server (the core
    took the missing RRset for one).  The loader checks every node's flags
    against its RRsets."""
    from xdpdns.engine import Image

    img, problems = build(tmp_path, {"example.com.": SOA + "www 300 IN A 198.18.0.1\n"})
    assert img is not None, problems
    data = img.to_bytes()
    Image.from_bytes(_with_node_flags(data, b"\x03www", 0))  # sealed again: still loads
    for flags, words in (
        (0x08, "CNAME flag without a CNAME RRset"),
        (0x04, "DNAME flag without a DNAME RRset"),
        (0x02, "zone cut flag without an NS RRset"),
    ):
        with pytest.raises(OSError, match=words):
            Image.from_bytes(_with_node_flags(data, b"\x03www", flags))
