"""The source address ACL: the rules that plugins provide (the
``address_rules`` and ``address_policy`` hooks), merged into the one rule
set the engine enforces.

The engine does the per-packet work (native/wire/prefixes.c for socket mode and TCP,
the XDP program's LPM tries in XDP mode); this module only decides what goes
in: every plugin's rules in plugin order, a prefix named twice keeping its
first rule, and the first policy a plugin returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdpdns.hookspecs import AddressPolicy, AddressRule
from xdpdns.plugins import PluginError

__all__ = ["Acl", "AclError", "collect_acl"]


class AclError(PluginError):
    """A plugin returned something that is not an address rule or policy
    (a broken hook contract: reported like other plugin errors)."""


@dataclass(frozen=True)
class Acl:
    """What the engine enforces: unique prefixes and the policy."""

    rules: tuple[AddressRule, ...]
    policy: AddressPolicy

    @property
    def denies_anything(self) -> bool:
        return self.policy.default == "deny" or any(r.action == "deny" for r in self.rules)

    def pairs(self) -> list[tuple]:
        """(prefix, action) pairs, as Engine.acl_set takes them."""
        return [(r.prefix, r.action) for r in self.rules]

    def describe(self) -> str:
        """For the log: counts and the policy."""
        allow = sum(r.action == "allow" for r in self.rules)
        return (
            f"allow={allow} deny={len(self.rules) - allow} "
            f"default={self.policy.default} socket_action={self.policy.socket_action}"
        )


def collect_acl(pm, config) -> Acl:
    """Asks every plugin for its address rules and the first for a policy.

    Rules come in plugin order; when two name the same prefix the first one
    wins (the later ones are dropped here, so that what the log counts is
    what the engine holds).  Raises AclError when a plugin returned
    something else than AddressRule objects or an AddressPolicy.
    """
    seen: dict = {}
    # pluggy collects the results in the order it calls the plugins.
    for result in pm.hook.address_rules(config=config):
        for rule in result or ():
            if not isinstance(rule, AddressRule):
                raise AclError(
                    f"address_rules returned {rule!r}, not an xdpdns.hookspecs.AddressRule"
                )
            seen.setdefault(rule.prefix, rule)
    policy = pm.hook.address_policy(config=config)
    if policy is None:
        policy = AddressPolicy()
    elif not isinstance(policy, AddressPolicy):
        raise AclError(f"address_policy returned {policy!r}, not an xdpdns.hookspecs.AddressPolicy")
    return Acl(tuple(seen.values()), policy)
