"""Where the compiled XDP programs are: ``xdpdns/xdpdns.bpf.o`` (the
server's, from bpf/xdpdns.bpf.c) and ``xdpdns/xdpgen.bpf.o`` (the load
generator's, from bpf/xdpgen.bpf.c), built by the package build (setup.py)
and never committed."""

from importlib import resources
from pathlib import Path

OBJECT_NAME = "xdpdns.bpf.o"
GENERATOR_OBJECT_NAME = "xdpgen.bpf.o"


class BpfObjectMissing(FileNotFoundError):
    """The package was installed without its XDP program."""


def bpf_object_path(name: str = OBJECT_NAME) -> Path:
    """The path of an installed XDP program object.

    :raises BpfObjectMissing: when the package holds no compiled program
        (built without clang, or a source tree that was never installed).
    """
    path = Path(str(resources.files("xdpdns") / name))
    if not path.is_file():
        raise BpfObjectMissing(
            f"the XDP program {path} is missing: it is compiled from "
            "bpf/xdpdns.bpf.c by the package build, which needs clang "
            "(reinstall: pip install -e . or ./bootstrap)"
        )
    return path
