"""Where the compiled XDP program is: ``xdpdns/xdpdns.bpf.o``, built from
bpf/xdpdns.bpf.c by the package build (setup.py) and never committed."""

from importlib import resources
from pathlib import Path

OBJECT_NAME = "xdpdns.bpf.o"


class BpfObjectMissing(FileNotFoundError):
    """The package was installed without its XDP program."""


def bpf_object_path() -> Path:
    """The path of the installed XDP program object.

    :raises BpfObjectMissing: when the package holds no compiled program
        (built without clang, or a source tree that was never installed).
    """
    path = Path(str(resources.files("xdpdns") / OBJECT_NAME))
    if not path.is_file():
        raise BpfObjectMissing(
            f"the XDP program {path} is missing: it is compiled from "
            "bpf/xdpdns.bpf.c by the package build, which needs clang "
            "(reinstall: pip install -e . or ./bootstrap)"
        )
    return path
