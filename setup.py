# The C engine is a cffi extension (out-of-line API mode) and the XDP program
# is compiled here with clang; everything else about the package is declared
# in pyproject.toml.
import os
import shutil
import subprocess

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.errors import ExecError

# The server's program, and the load generator's (both parse frames with
# bpf/xdp_frame.h).
BPF_OBJECTS = {
    os.path.join("xdpdns", "xdpdns.bpf.o"): os.path.join("bpf", "xdpdns.bpf.c"),
    os.path.join("xdpdns", "xdpgen.bpf.o"): os.path.join("bpf", "xdpgen.bpf.c"),
}


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
    """Compiles the XDP programs into the package (xdpdns/*.bpf.o): into
    the build tree for a wheel, next to xdpdns/__init__.py for an editable
    install."""

    description = "compile the XDP programs with clang -target bpf"
    user_options: list = []

    def initialize_options(self):
        self.build_lib = None
        self.editable_mode = False  # set by setuptools' editable_wheel

    def finalize_options(self):
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def _target(self, obj: str) -> str:
        if self.editable_mode:
            return obj
        return os.path.join(self.build_lib, obj)

    def run(self):
        clang = shutil.which("clang")
        if clang is None:
            raise ExecError(
                "clang not found: the XDP programs (bpf/*.bpf.c) are compiled with "
                "clang -target bpf (Debian: apt-get install clang llvm)"
            )
        for obj, source in BPF_OBJECTS.items():
            target = self._target(obj)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            command = [
                clang,
                "-O2",
                "-g",
                "-Wall",
                "-target",
                "bpf",
                "-I",
                "bpf",
                *_multiarch_include(),
                "-c",
                source,
                "-o",
                target,
            ]
            self.announce(" ".join(command), level=2)
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise ExecError(
                    f"compiling the XDP program {source} ({target}) failed:\n{result.stderr}"
                )

    def get_outputs(self) -> list[str]:
        # An editable install finds the objects in the source tree, as it
        # finds the in-place cffi extension.
        return [] if self.editable_mode else [self._target(o) for o in BPF_OBJECTS]

    def get_output_mapping(self) -> dict[str, str]:
        return {}


class build_with_bpf(build):
    sub_commands = build.sub_commands + [("build_bpf", None)]


setup(
    cffi_modules=["native/build_engine.py:ffibuilder", "native/build_loadgen.py:ffibuilder"],
    cmdclass={"build": build_with_bpf, "build_bpf": build_bpf},
)
