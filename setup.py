# The C engine is a cffi extension (out-of-line API mode); everything else
# about the package is declared in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_engine.py:ffibuilder"])
