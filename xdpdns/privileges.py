"""Running as an unprivileged user ([server] user and group).

xdpdns starts as root: port 53, the XDP program, AF_XDP sockets and their
UMEM need it.  Everything else does not, so the zone files are read with
the user's identity from the start (a file it could not read on reload is
an error at once), and once the server is set up it becomes that user for
good.  In XDP mode the main thread keeps CAP_BPF and CAP_NET_ADMIN: a reload
writes new maps into the program (the answer table, the ACL, rate
limiting); every other capability and every other thread's are gone.
[xdp] attach = "dispatcher" keeps no more: taking the program out of
libxdp's dispatcher at stop needs root (CAP_SYS_ADMIN to open the
dispatcher by id, and root's pin directories in bpffs), which a guard
process started before the switch keeps instead (xdpdns/xdp.py).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
from dataclasses import dataclass
from typing import Iterator

from xdpdns import engine as _engine

# linux/capability.h
CAP_NET_ADMIN = 12
CAP_BPF = 39
XDP_CAPABILITIES = (1 << CAP_NET_ADMIN) | (1 << CAP_BPF)


class PrivilegeError(OSError):
    """The server cannot run as the configured user."""


@dataclass(frozen=True)
class RunAs:
    user: str
    group: str
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.user}:{self.group} ({self.uid}:{self.gid})"


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if name.isdigit():
            return pwd.getpwuid(int(name))
        raise


def run_as(user: str | None, group: str | None) -> RunAs | None:
    """Who [server] user and group name (None: no user configured)."""
    if user is None:
        if group is not None:
            raise PrivilegeError("[server] group needs [server] user")
        return None
    try:
        entry = _user(user)
    except KeyError:
        raise PrivilegeError(f"[server] user {user!r}: no such user") from None
    gid = entry.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            if not group.isdigit():
                raise PrivilegeError(f"[server] group {group!r}: no such group") from None
            gid = int(group)
    if entry.pw_uid == 0:
        raise PrivilegeError(f"[server] user {user!r} is root: name an unprivileged user")
    try:
        group_name = grp.getgrgid(gid).gr_name
    except KeyError:
        group_name = str(gid)
    return RunAs(entry.pw_name, group_name, entry.pw_uid, gid)


def check_root(who: RunAs) -> None:
    if os.geteuid() != 0:
        raise PrivilegeError(
            f"[server] user = {who.user!r}: start the server as root; it "
            f"switches to {who} once its sockets are set up"
        )


@contextlib.contextmanager
def acting_as(who: RunAs | None) -> Iterator[None]:
    """Files opened inside are opened with who's identity (the effective
    user and group; the real ones stay root to switch back)."""
    if who is None:
        yield
        return
    groups = os.getgroups()
    os.setgroups([who.gid])
    os.setegid(who.gid)
    os.seteuid(who.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def drop(who: RunAs, xdp: bool) -> None:
    """Becomes who for good, keeping XDP mode's capabilities in the calling
    thread when xdp is set."""
    try:
        _engine.drop_privileges(who.uid, who.gid, XDP_CAPABILITIES if xdp else 0)
    except OSError as exc:
        raise PrivilegeError(f"cannot run as {who}: {exc.strerror}") from None
