# The C engine is a cffi extension (out-of-line API mode) and the XDP program
# is compiled here with clang; everything else about the package is declared
# in pyproject.toml.
import os
import shutil
import subprocess

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.errors import ExecError

BPF_SOURCE = os.path.join("bpf", "xdpdns.bpf.c")
BPF_OBJECT = os.path.join("xdpdns", "xdpdns.bpf.o")


def _multiarch_include() -> list[str]:
    # Debian keeps asm/types.h (which linux/types.h needs) under the
    # multiarch directory, which clang -target bpf does not search.
    try:
        triplet = subprocess.run(
            ["gcc", "-dumpmachine"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return []
    return [f"-I/usr/include/{triplet}"]


class build_bpf(Command):
    """Compiles the XDP program into the package as xdpdns/xdpdns.bpf.o:
    into the build tree for a wheel, next to xdpdns/__init__.py for an
    editable install."""

    description = "compile the XDP program with clang -target bpf"
    user_options: list = []

    def initialize_options(self):
        self.build_lib = None
        self.editable_mode = False  # set by setuptools' editable_wheel

    def finalize_options(self):
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def _target(self) -> str:
        if self.editable_mode:
            return BPF_OBJECT
        return os.path.join(self.build_lib, BPF_OBJECT)

    def run(self):
        clang = shutil.which("clang")
        if clang is None:
            raise ExecError(
                f"clang not found: the XDP program {BPF_SOURCE} is compiled with "
                "clang -target bpf (Debian: apt-get install clang llvm)"
            )
        target = self._target()
        os.makedirs(os.path.dirname(target), exist_ok=True)
        command = [clang, "-O2", "-g", "-Wall", "-target", "bpf", "-I", "bpf",
                   *_multiarch_include(), "-c", BPF_SOURCE, "-o", target]
        self.announce(" ".join(command), level=2)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ExecError(
                f"compiling the XDP program {BPF_SOURCE} failed:\n{result.stderr}"
            )

    def get_outputs(self) -> list[str]:
        # An editable install finds the object in the source tree, as it
        # finds the in-place cffi extension.
        return [] if self.editable_mode else [self._target()]

    def get_output_mapping(self) -> dict[str, str]:
        return {}


class build_with_bpf(build):
    sub_commands = build.sub_commands + [("build_bpf", None)]


setup(
    cffi_modules=["native/build_engine.py:ffibuilder"],
    cmdclass={"build": build_with_bpf, "build_bpf": build_bpf},
)
