"""DNSSEC signing keys and what signing reports (engine.h's DNSSEC
section)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from xdpdns.engine._c import ffi, lib, _raise_for, _CObject


@dataclass(frozen=True)
class SigningKeyInfo:
    algorithm: int
    flags: int  # 257: a KSK, 256: a ZSK
    tag: int
    dnskey: bytes  # the DNSKEY RDATA


@dataclass(frozen=True)
class SigningReport:
    """What signing a zone did (ImageBuilder.sign_zone)."""

    made: int  # RRSIGs made
    kept: int  # RRSIGs of the previous image kept
    earliest_expiration: int  # UNIX time: sign again before it
    serial: int = 0  # the SOA serial signed
    zone_serial: int = 0  # the one the zone came with


class SigningKey(_CObject):
    """A DNSSEC signing key read from BIND's key files (BASE.key and
    BASE.private, as dnssec-keygen and keymgr write them), algorithms 13
    and 15."""

    _closed = "signing key closed"

    def __init__(self, base: str | os.PathLike) -> None:
        out = ffi.new("struct xd_sign_key **")
        err = ffi.new("struct xd_error *")
        _raise_for(
            lib.xd_sign_key_load(os.fsencode(base), out, err), err, f"reading the key {base}"
        )
        self._own(out[0], lib.xd_sign_key_free)

    @property
    def info(self) -> SigningKeyInfo:
        out = ffi.new("struct xd_sign_key_info *")
        lib.xd_sign_key_info(self._ptr(), out)
        return SigningKeyInfo(
            out.algorithm, out.flags, out.tag, bytes(ffi.buffer(out.dnskey, out.dnskey_len))
        )

    def sign(
        self,
        owner: bytes,
        signer: bytes,
        rdtype: int,
        ttl: int,
        rdatas: Sequence[bytes],
        inception: int,
        expiration: int,
    ) -> bytes:
        """The RRSIG RDATA of the RRset (owner and signer in wire form,
        its records' RDATA as they go on the wire) valid from inception to
        expiration (UNIX times)."""
        keep = [ffi.new("uint8_t[]", r) for r in rdatas]
        s = ffi.new("struct xd_sign_rrset *")
        owner_c, signer_c = ffi.new("uint8_t[]", owner), ffi.new("uint8_t[]", signer)
        ptrs = ffi.new("const uint8_t *[]", keep)
        lens = ffi.new("uint16_t[]", [len(r) for r in rdatas])
        s.owner, s.owner_len, s.signer, s.signer_len = owner_c, len(owner), signer_c, len(signer)
        s.type, s.ttl, s.inception, s.expiration = rdtype, ttl, inception, expiration
        s.rdatas, s.rdlens, s.count = ptrs, lens, len(rdatas)
        out = ffi.new("uint8_t[]", 512)
        err = ffi.new("struct xd_error *")
        n = _raise_for(lib.xd_sign_rrset(self._ptr(), s, out, 512, err), err, "signing")
        return bytes(ffi.buffer(out, n))


def nsec3_label(name: bytes, algorithm: int, salt: bytes, iterations: int) -> str:
    """The NSEC3 hash of a wire-form name (RFC 5155 5) as the engine
    computes it for proofs of non-existence: base32hex, lower case."""
    out = ffi.new("uint8_t[]", lib.XD_NSEC3_LABEL_LEN)
    _raise_for(
        lib.xd_nsec3_label(name, len(name), algorithm, salt, len(salt), iterations, out),
        what="NSEC3 hash",
    )
    return bytes(out)[1:].decode()
