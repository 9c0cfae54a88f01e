"""xdpdns: an authoritative DNS server with a Python control plane and a C engine."""

__version__ = "0.1.0"
