"""libFuzzer over the query parser and answering core, the zone-file
reader and the image loader (tests/fuzz/), built with clang's
-fsanitize=fuzzer,address,undefined and run for a bounded time each from a
seed corpus.  A crash fails the test with the input that caused it; that
input then becomes a regression test of its own."""

import os
import shutil
import subprocess
from pathlib import Path

import dns.message
import dns.name
import pytest

from xdpdns.engine import ImageBuilder

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tests" / "fuzz"
ZONE = ROOT / "tests" / "data" / "diff" / "example.com.zone"
SECONDS = int(os.environ.get("XDPDNS_FUZZ_SECONDS", "20"))
SANITIZE = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
]
LIBS = ["-lzscanner", "-lxdp", "-lbpf", "-lnuma", "-lcrypto", "-lpthread"]


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory):
    """The engine's sources compiled once for fuzzing, in a directory of
    objects that each target links with."""
    clang = shutil.which("clang")
    if clang is None:
        pytest.fail("clang missing: ./bootstrap installs it")
    build = tmp_path_factory.mktemp("fuzz")
    probe = build / "probe.c"
    probe.write_text(
        "#include <stdint.h>\n#include <stddef.h>\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
        "{(void)d;(void)n;return 0;}\n"
    )
    result = subprocess.run(
        [clang, "-fsanitize=fuzzer", str(probe), "-o", str(build / "p")],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(
            "clang cannot link libFuzzer (Debian: libclang-rt-14-dev, which "
            f"./bootstrap installs):\n{result.stderr[-1000:]}"
        )
    objects = []
    sources = sorted((ROOT / "native").rglob("*.c"))
    procs = []
    for source in sources:
        obj = build / (source.stem + ".o")
        objects.append(obj)
        procs.append(
            subprocess.Popen(
                [
                    clang,
                    "-c",
                    "-g",
                    "-O1",
                    "-std=gnu11",
                    "-fsanitize=fuzzer-no-link",
                    *SANITIZE,
                    f"-I{ROOT / 'native'}",
                    f"-I{ROOT / 'bpf'}",
                    str(source),
                    "-o",
                    str(obj),
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if len(procs) >= (os.cpu_count() or 1):
            _wait(procs)
    _wait(procs)
    return clang, build, objects


def _wait(procs):
    while procs:
        proc = procs.pop()
        _, err = proc.communicate()
        assert proc.returncode == 0, err


def _target(fuzz_build, name):
    clang, build, objects = fuzz_build
    binary = build / name
    result = subprocess.run(
        [
            clang,
            "-g",
            "-O1",
            "-fsanitize=fuzzer",
            *SANITIZE,
            f"-I{ROOT / 'native'}",
            str(FUZZ / f"{name}.c"),
            *map(str, objects),
            *LIBS,
            "-o",
            str(binary),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return binary


def _run(binary, corpus, tmp_path, zone=ZONE, origin="example.com."):
    artifacts = tmp_path / "crashes"
    artifacts.mkdir()
    env = dict(
        os.environ,
        XDPDNS_FUZZ_ZONE=str(zone),
        XDPDNS_FUZZ_ORIGIN=origin,
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
        UBSAN_OPTIONS="print_stacktrace=1",
    )
    env.pop("LD_PRELOAD", None)  # the ASan step of bootstrap preloads gcc's
    result = subprocess.run(
        [
            str(binary),
            f"-max_total_time={SECONDS}",
            "-rss_limit_mb=2048",
            "-timeout=10",
            f"-artifact_prefix={artifacts}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=SECONDS + 120,
    )
    crashes = sorted(artifacts.iterdir())
    assert result.returncode == 0 and not crashes, (
        f"{binary.name} found a crash; reproduce with {binary} {crashes[:1]}\n"
        + result.stderr[-4000:]
    )
    assert "Done" in result.stderr or "done" in result.stderr, result.stderr[-2000:]


def test_fuzz_queries_against_the_answering_core(fuzz_build, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus" / "answer", corpus)
    _run(_target(fuzz_build, "fuzz_answer"), corpus, tmp_path)


def test_fuzz_queries_against_a_signed_zone(fuzz_build, tmp_path):
    """The same over a zone signed with NSEC3 opt-out (the proofs walk the
    denial block and hash names), seeded with DO=1 queries of every kind
    the DNSSEC tests ask."""
    from test_dnssec import NSEC3_PROOFS, NSEC_PROOFS, POSITIVE, sign_zone

    zone = sign_zone(tmp_path / "signed", ["-3", "-", "-H", "0", "-A"])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    questions = [(q, t) for q, t, *_ in POSITIVE + NSEC_PROOFS + NSEC3_PROOFS]
    for i, (qname, qtype) in enumerate(questions):
        query = dns.message.make_query(qname, qtype, want_dnssec=True, payload=1232)
        (corpus / f"q{i}").write_bytes(query.to_wire())
    _run(_target(fuzz_build, "fuzz_answer"), corpus, tmp_path, zone, "signed.test.")


def test_fuzz_zone_files(fuzz_build, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in (
        list((ROOT / "tests" / "data" / "diff").glob("*.zone"))
        + list((ROOT / "tests" / "data" / "zonefile").glob("*"))
        + [ROOT / "zones" / "example.com.zone"]
    ):
        if path.is_file():
            shutil.copy(path, corpus / (path.parent.name + "-" + path.name))
    _run(_target(fuzz_build, "fuzz_zonefile"), corpus, tmp_path)


def test_fuzz_zone_images(fuzz_build, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(dns.name.from_text("example.com.")), ZONE)
        (corpus / "diff-example.com").write_bytes(builder.finish().to_bytes())
    with ImageBuilder() as builder:
        builder.load_zonefile(
            builder.add_zone(dns.name.from_text("example.com.")),
            ROOT / "zones" / "example.com.zone",
        )
        (corpus / "example.com").write_bytes(builder.finish().to_bytes())
    # Signed, NSEC and NSEC3: signature slices and denial blocks to damage.
    from test_dnssec import FORMS, sign_zone

    for form in ("nsec", "nsec3-optout"):
        with ImageBuilder() as builder:
            builder.load_zonefile(
                builder.add_zone(dns.name.from_text("signed.test.")),
                sign_zone(tmp_path / form, FORMS[form]),
            )
            (corpus / f"signed-{form}").write_bytes(builder.finish().to_bytes())
    _run(_target(fuzz_build, "fuzz_image"), corpus, tmp_path)
