"""cffi builder of the C engine: the extension module ``xdpdns._engine``.

Out-of-line API mode: cffi compiles a C wrapper around every native/**/*.c
but the load generator's (native/bench/, its own extension: build_loadgen.py),
so calls go straight to C (and release the GIL) without a libffi trampoline.

engine.h is the only header cffi reads; its preprocessor lines are dropped
here and the rest is handed to ``cdef`` unchanged (engine.h is written to be
cdef-friendly: plain declarations, no macros with arguments).

XDPDNS_SANITIZE=address builds the engine with AddressSanitizer and
UndefinedBehaviorSanitizer for the fuzz tests (run them with libasan
preloaded into the Python interpreter, see bootstrap).
"""

import os
import re
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
ROOT = NATIVE.parent


def _relative(path: Path) -> str:
    # setuptools prefers source paths relative to the project root, which is
    # the working directory of every pip build; fall back to absolute ones.
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _cdef_text(header: Path = NATIVE / "engine.h") -> str:
    lines = header.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def engine_sources() -> list[Path]:
    """Every C source of the server's engine: the tree but native/bench/."""
    return [p for p in sorted(NATIVE.rglob("*.c")) if "bench" not in p.relative_to(NATIVE).parts]


# The enums of bpf/xdpdns_maps.h that the engine's API takes: port actions
# (XD_ACTION_PASS, ...), source ACL actions (XD_ACL_ALLOW, XD_ACL_DENY) and
# what an answer table entry says (XD_ANSWER_SEND, XD_ANSWER_TO_WORKER).
_MAPS_ENUMS = ("xd_action", "xd_acl_action", "xd_answer_action")


def _action_enum() -> str:
    """The `enum NAME {...};` blocks of bpf/xdpdns_maps.h named in
    _MAPS_ENUMS, so that their codes reach Python from the one header that
    the XDP program and the engine share."""
    text = (ROOT / "bpf" / "xdpdns_maps.h").read_text()
    blocks = []
    for name in _MAPS_ENUMS:
        match = re.search(rf"^enum {name} \{{.*?^\}};", text, re.M | re.S)
        if match is None:
            raise SystemExit(f"bpf/xdpdns_maps.h: no `enum {name} {{ ... }};` block")
        blocks.append(re.sub(r"/\*.*?\*/", "", match.group(0), flags=re.S))
    return "\n".join(blocks)


LIBRARIES = ["zscanner", "xdp", "bpf", "numa", "crypto", "pthread"]


def compile_args() -> tuple[list[str], list[str]]:
    compile_args = ["-O2", "-g", "-Wall", "-Wextra", "-std=gnu11", "-fvisibility=hidden"]
    link_args: list[str] = []
    sanitize = os.environ.get("XDPDNS_SANITIZE", "")
    if sanitize == "address":
        sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        compile_args += sanitizers + ["-O1"]
        link_args += sanitizers
    elif sanitize:
        raise SystemExit(f"XDPDNS_SANITIZE={sanitize!r}: expected 'address' or nothing")
    return compile_args, link_args


def set_source(builder: FFI, module: str, preamble: str, sources: list[Path]) -> None:
    """The extension `module` of builder: sources compiled with the
    engine's flags, headers and libraries."""
    compile_flags, link_flags = compile_args()
    builder.set_source(
        module,
        preamble,
        sources=[_relative(p) for p in sources],
        include_dirs=[_relative(NATIVE), _relative(ROOT / "bpf")],
        libraries=LIBRARIES,
        extra_compile_args=compile_flags,
        extra_link_args=link_flags,
    )


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text() + "\n" + _action_enum())
set_source(
    ffibuilder,
    "xdpdns._engine",
    '#include "engine.h"\n#include "xdpdns_maps.h"\n',
    engine_sources(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
