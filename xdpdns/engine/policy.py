"""What the engine applies to clients (engine.h's ACL, cookie and RRL
sections, native/engine_policy.c): ACL rules, cookie states, rate
limiting settings and events."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Sequence

from xdpdns.engine._c import ffi, lib


# The source ACL's actions (enum xd_acl_action of bpf/xdpdns_maps.h) and
# what socket mode does with a denied source.
ACL_ACTIONS = {"allow": lib.XD_ACL_ALLOW, "deny": lib.XD_ACL_DENY}


ACL_SOCKET_ACTIONS = {"refuse": lib.XD_VERDICT_REFUSE, "drop": lib.XD_VERDICT_DROP}


_VERDICTS = {
    lib.XD_VERDICT_ANSWER: "answer",
    lib.XD_VERDICT_REFUSE: "refuse",
    lib.XD_VERDICT_DROP: "drop",
}


# What a query's COOKIE option showed (XD_COOKIE_* of native/engine.h).
COOKIE_STATES = {
    lib.XD_COOKIE_NONE: "none",  # no COOKIE option, or cookies off
    lib.XD_COOKIE_CLIENT_ONLY: "client-only",
    lib.XD_COOKIE_INVALID: "invalid",  # a server cookie not ours for this client now
    lib.XD_COOKIE_VALID: "valid",
    lib.XD_COOKIE_MALFORMED: "malformed",  # answered FORMERR
}


def _acl_rules(rules: Sequence[tuple]):
    """A struct xd_acl_rule array of (prefix, "allow" | "deny") pairs."""
    c_rules = ffi.new("struct xd_acl_rule[]", max(1, len(rules)))
    for slot, (prefix, action) in zip(c_rules, rules):
        prefix = ipaddress.ip_network(prefix)
        if action not in ACL_ACTIONS:
            raise ValueError(
                f"ACL rule {prefix}: action {action!r}: expected one of " + ", ".join(ACL_ACTIONS)
            )
        slot.family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        packed = prefix.network_address.packed
        ffi.memmove(slot.addr, packed, len(packed))
        slot.prefix_len = prefix.prefixlen
        slot.action = ACL_ACTIONS[action]
    return c_rules


# The kinds of response counted apart (XD_RRL_* of native/engine.h).
RRL_KINDS = {
    lib.XD_RRL_ANSWER: "answer",
    lib.XD_RRL_NODATA: "nodata",
    lib.XD_RRL_NXDOMAIN: "nxdomain",
    lib.XD_RRL_REFERRAL: "referral",
    lib.XD_RRL_ERROR: "error",
}


@dataclass(frozen=True)
class RrlEvent:
    """A bucket that started to be limited: the client prefix, the kind of
    response (a value of :data:`RRL_KINDS`) and when (UNIX seconds)."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    kind: str
    time: int


def _rrl_config(settings):
    """A struct xd_rrl_config for settings, and the exempt rules it points
    to (keep them alive while the config is used)."""
    cfg = ffi.new("struct xd_rrl_config *")
    cfg.rate = settings.rate
    cfg.nxdomain_rate = settings.nxdomain_rate
    cfg.errors_rate = settings.errors_rate
    cfg.nodata_rate = settings.nodata_rate
    cfg.referrals_rate = settings.referrals_rate
    cfg.window = settings.window
    cfg.slip = settings.slip
    cfg.ipv4_prefix = settings.ipv4_prefix
    cfg.ipv6_prefix = settings.ipv6_prefix
    cfg.table_size = settings.table_size
    exempt = [ipaddress.ip_network(p) for p in settings.exempt]
    rules = ffi.new("struct xd_acl_rule[]", max(1, len(exempt)))
    for slot, prefix in zip(rules, exempt):
        slot.family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        packed = prefix.network_address.packed
        ffi.memmove(slot.addr, packed, len(packed))
        slot.prefix_len = prefix.prefixlen
    cfg.exempt = rules
    cfg.nexempt = len(exempt)
    return cfg, rules


def _rrl_event(ev) -> RrlEvent:
    size = 4 if ev.family == socket.AF_INET else 16
    address = ipaddress.ip_address(bytes(ffi.buffer(ev.addr, size)))
    return RrlEvent(
        ipaddress.ip_network(f"{address}/{ev.prefix_len}"),
        RRL_KINDS.get(ev.kind, str(ev.kind)),
        ev.time,
    )
