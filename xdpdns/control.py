"""The control socket: a unix stream socket served by the server's asyncio
loop, and the client side of `xdpdns stats`.

One request per connection: the client writes one line (``stats``,
``reload``), the server answers with one JSON object and closes.  An unknown request gets
``{"error": "..."}``.  The socket is created with mode 0600 (the counters
are the operator's business) and removed when the server exits.  It is
never made in a directory that another user could swap it in (owned by
someone else, or writable by others without the sticky bit), and a peer
that is neither root nor the server's own user is answered with an error
(SO_PEERCRED), whatever the file's mode says.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Any, Callable

from xdpdns.counts import XDP_PROGRAM_COUNTERS, summed

log = logging.getLogger("xdpdns.control")

__all__ = ["ControlServer", "ControlError", "request", "format_stats"]

REQUEST_LIMIT = 1024  # bytes of one request line
CLIENT_TIMEOUT = 5.0  # seconds for `xdpdns stats` to get its answer
RELOAD_TIMEOUT = 600.0  # a reload compiles every zone again


class ControlError(Exception):
    """The control socket cannot be served or asked; the message says why."""


def _check_directory(directory: Path) -> None:
    """A directory where nobody but root and this user can put or swap a
    file: owned by one of them, and writable by others only with the sticky
    bit (as /tmp is)."""
    st = directory.lstat()
    me = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"control socket directory {directory}: not a directory")
    if st.st_uid not in (0, me):
        raise ControlError(
            f"control socket directory {directory}: owned by uid "
            f"{st.st_uid}, not by root or this user ({me})"
        )
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise ControlError(
            f"control socket directory {directory}: writable by other "
            f"users (mode {stat.S_IMODE(st.st_mode):o}): another user "
            "could replace the socket"
        )


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _answers(path: Path) -> bool:
    """Whether a live server accepts connections on the socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


class ControlServer:
    """Serves requests on a unix socket from the running event loop."""

    def __init__(self, path: Path, handlers: dict[str, Callable[[], Any]]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.base_events.Server | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        """Binds the socket (replacing a stale one).  Raises ControlError
        when another server answers on the same path or it cannot be made."""
        path = self.path
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            _check_directory(path.parent)
            if path.exists() or path.is_symlink():
                st = path.lstat()
                if not stat.S_ISSOCK(st.st_mode):
                    raise ControlError(f"control socket {path}: exists and is not a socket")
                if st.st_uid not in (0, os.geteuid()):
                    raise ControlError(
                        f"control socket {path}: exists and belongs to uid {st.st_uid}"
                    )
                if _answers(path):
                    raise ControlError(
                        f"control socket {path}: another xdpdns server "
                        "answers there (set [server] control_socket or "
                        "--control-socket)"
                    )
                path.unlink()  # stale: left by a server that was killed
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                # The mode is set at bind time from the umask: no moment
                # where others could connect.
                old = os.umask(0o177)
                try:
                    sock.bind(os.fspath(path))
                finally:
                    os.umask(old)
                os.chmod(path, 0o600)
                self._inode = path.stat().st_ino
                sock.listen(16)
                sock.setblocking(False)
                self._server = await asyncio.start_unix_server(self._serve, sock=sock)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
        log.debug("control socket %s", path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT)
            command = line[:REQUEST_LIMIT].decode("ascii", "replace").strip()
            handler = self.handlers.get(command)
            uid = _peer_uid(writer)
            if uid not in (0, os.geteuid()):
                log.warning("control socket: request %r from uid %s refused", command, uid)
                reply: Any = {
                    "error": f"uid {uid} may not use this control socket: only "
                    f"root and uid {os.geteuid()} may"
                }
            elif handler is None:
                reply = {
                    "error": f"unknown request {command!r}; known: "
                    + ", ".join(sorted(self.handlers))
                }
            else:
                try:
                    reply = handler()
                    if asyncio.iscoroutine(reply):
                        reply = await reply
                except Exception as exc:  # reported to the client, the server goes on
                    log.exception("control request %s", command)
                    reply = {"error": f"{command}: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        """Stops serving and removes the socket if it is still ours."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass


def request(
    path: str | os.PathLike, command: str = "stats", timeout: float = CLIENT_TIMEOUT
) -> Any:
    """Asks the server at path; returns the decoded JSON answer.

    Raises ControlError with a clear message when no server answers there.
    """
    path = os.fspath(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                f"no xdpdns server runs on the control socket {path} "
                "(is `xdpdns serve` running? see --control-socket)"
            ) from None
        except PermissionError:
            raise ControlError(
                f"control socket {path}: permission denied "
                "(it is the server owner's; try as that user)"
            ) from None
        except socket.timeout:
            raise ControlError(f"control socket {path}: no answer within {timeout:g} s") from None
        except OSError as exc:
            if exc.errno == errno.ENOTSOCK:
                raise ControlError(f"{path} is not a control socket") from None
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"control socket {path}: not an xdpdns answer") from None
    if isinstance(reply, dict) and "error" in reply:
        raise ControlError(f"control socket {path}: {reply['error']}")
    return reply


# ---- the readable table of `xdpdns stats` ------------------------------------


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [columns] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [title]
    for row in cells:
        lines.append("  " + "  ".join(v.rjust(w) for v, w in zip(row, widths)))
    return lines


_UDP = ["received", "answered", "dropped", "truncated", "batches", "denied", "limited", "slipped"]
_TCP = [
    "connections",
    "open",
    "rejected",
    "client_rejected",
    "received",
    "answered",
    "denied",
    "idle_closed",
    "io_timeouts",
    "limit_closed",
    "transfers",
    "transfers_refused",
    "transfers_failed",
]
_QUEUE = [
    "received",
    "answered",
    "dropped",
    "bad_checksum",
    "malformed",
    "truncated",
    "tx_full",
    "kicks",
    "batches",
    "limited",
    "slipped",
    "busy_polls",
    "sleeps",
]
_FRAMES = ["frames_fill", "frames_rx", "frames_tx", "frames_free", "frames_total"]
_KERNEL = ["kernel_rx_dropped", "kernel_rx_ring_full", "kernel_fill_empty"]
_PROG = list(XDP_PROGRAM_COUNTERS)
_DEFERRED = ["deferred", "resolver_full", "resolver_expired"]
_HOOKS = ["batches", "queries", "answered", "servfail", "errors", "cached"]


_DNSTAP = ("events", "written", "lost_full", "lost_unconnected", "connects")


def _dnstap_lines(stats: dict) -> list[str]:
    """dnstap's counters, and why no collector is connected, if none is."""
    tap = stats.get("dnstap")
    if not tap:
        return []
    state = "connected" if tap.get("connected") else f"not connected: {tap.get('error', '')}"
    return ["", f"dnstap: {state}"] + _table(
        "dnstap", list(_DNSTAP), [[tap.get(k, 0) for k in _DNSTAP]]
    )


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _secondary_lines(stats: dict) -> list[str]:
    """Each secondary zone: what it serves, its last transfer, its timers."""
    zones = stats.get("secondary") or []
    if not zones:
        return []
    rows = []
    for z in zones:
        t = z.get("last_transfer") or {}
        last = (
            f"{t['kind']} {t['records']} records from {t['primary']} at {_when(t['at'])}"
            if t
            else "-"
        )
        serial = "expired" if z["expired"] and z.get("refreshed") else z["serial"]
        rows.append(
            [
                z["zone"] + (f" (catalog {z['catalog']})" if z.get("catalog") else ""),
                "none" if serial is None else serial,
                _when(z.get("refreshed")),
                _when(z.get("next_refresh")),
                _when(z.get("expires")),
                last,
            ]
        )
    lines = [""] + _table(
        "secondary zones (UTC)",
        ["zone", "serial", "refreshed", "next refresh", "expires", "last transfer"],
        rows,
    )
    for z in zones:
        if z.get("last_error"):
            lines.append(f"  {z['zone']}: last refresh failed: {z['last_error']}")
    return lines


def _journal_lines(stats: dict) -> list[str]:
    """The zones whose IXFR journal holds changes: how many, since when."""
    journals = stats.get("journals") or []
    if not journals:
        return []
    rows = [[j["zone"], j["changes"], j["bytes"], j["oldest_serial"]] for j in journals]
    return [""] + _table(
        "IXFR journals (an IXFR from the oldest serial on gets changes)",
        ["zone", "changes", "bytes", "oldest serial"],
        rows,
    )


def _resolver_lines(stats: dict) -> list[str]:
    """The resolver hook's tables: what each worker deferred, and what the
    hooks' threads did with it."""
    resolver = stats.get("resolver")
    if not resolver:
        return []
    rows = [
        [f"udp {i}"] + [w.get(k, 0) for k in _DEFERRED]
        for i, w in enumerate(stats.get("udp_workers", []))
    ]
    xdp = stats.get("xdp") or {}
    rows += [
        [f"queue {q['queue'] + xdp.get('first_queue', 0)}"] + [q.get(k, 0) for k in _DEFERRED]
        for q in xdp.get("queues", [])
    ]
    lines = [""] + _table(
        "resolver hook: deferred queries", ["worker", "deferred", "full", "expired"], rows
    )
    return (
        lines
        + [""]
        + _table(
            "resolver hook: the plugins' threads", _HOOKS, [[resolver.get(k, 0) for k in _HOOKS]]
        )
    )


def _answers_lines(table: dict | None) -> list[str]:
    """The XDP program's answer table in one line."""
    if not table:
        return []
    if table["state"] != "on":
        return ["", f"answer table: {table['state']}: {table['message']}"]
    return [
        "",
        f"answer table: on, {table['entries']} entries for {table['names']} names "
        f"({table['skipped']} answers left to the workers), {table['pages']} pages, "
        f"{table['bytes']} bytes, compiled in {table['compile_seconds']:.3f} s, "
        f"installed in {table['install_seconds']:.3f} s",
    ]


def _by_kind_lines(what: str, rows: list[dict]) -> list[str]:
    """The rcodes and qtypes of rows, summed, as a line each."""
    lines = []
    for key, label in (("rcodes", "by RCODE"), ("qtypes", "by query type")):
        total = summed(row.get(key) or {} for row in rows)
        if total:
            lines.append(
                f"  {what} {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
            )
    return lines


def format_stats(stats: dict) -> str:
    """The JSON of a "stats" request as tables: per UDP worker, TCP, per
    AF_XDP queue (with where its frames are), per CPU of the XDP program."""
    lines: list[str] = []
    workers = stats.get("udp_workers", [])
    rows = [[i] + [w.get(k, 0) for k in _UDP] for i, w in enumerate(workers)]
    rows.append(["all"] + [stats.get("udp", {}).get(k, 0) for k in _UDP])
    lines += _table("UDP (socket mode)", ["worker"] + _UDP, rows)
    lines += _by_kind_lines("UDP responses", [stats.get("udp", {})])
    tcp = stats.get("tcp", {})
    lines += [""] + _table("TCP", _TCP, [[tcp.get(k, 0) for k in _TCP]])
    xdp = stats.get("xdp")
    if not xdp:
        lines += ["", "XDP: off (socket mode)"] + _resolver_lines(stats) + _dnstap_lines(stats)
        return "\n".join(lines + _secondary_lines(stats) + _journal_lines(stats))
    lines += [
        "",
        f"XDP on {xdp['interface']}: {xdp['mode']} mode, zerocopy "
        f"{'on' if xdp['zerocopy'] else 'off'}, busy polling "
        f"{'on' if xdp.get('busy_poll') else 'off'}, hugepages "
        f"{'yes' if xdp['hugepages'] else 'no'}, NUMA node {xdp['numa_node']}, "
        f"UMEM {xdp['umem_bytes']} bytes per queue",
    ]
    if xdp.get("attach") == "dispatcher":
        lines.append(f"  in libxdp's dispatcher as program id {xdp.get('prog_id', 0)}")
    for warning in xdp.get("warnings", []):
        lines.append(f"  warning: {warning}")
    queues = xdp.get("queues", [])
    rows = [
        [q["queue"] + xdp.get("first_queue", 0), q["cpu"]] + [q.get(k, 0) for k in _QUEUE]
        for q in queues
    ]
    lines += [""] + _table("AF_XDP queues", ["queue", "cpu"] + _QUEUE, rows)
    lines += _by_kind_lines("AF_XDP responses", queues)
    rows = [
        [q["queue"] + xdp.get("first_queue", 0)] + [q[k] for k in _FRAMES] + [q["frames_accounted"]]
        for q in queues
    ]
    lines += [""] + _table(
        "frames (fill + rx + tx + free = total)",
        ["queue"] + [k.removeprefix("frames_") for k in _FRAMES] + ["accounted"],
        rows,
    )
    rows = [
        [q["queue"] + xdp.get("first_queue", 0)] + [q.get(k, 0) for k in _KERNEL] for q in queues
    ]
    lines += [""] + _table(
        "lost before the worker (kernel XDP_STATISTICS)",
        ["queue"] + [k.removeprefix("kernel_") for k in _KERNEL],
        rows,
    )
    cpus = xdp.get("cpus", [])
    rows = [[c["cpu"]] + [c.get(k, 0) for k in _PROG] for c in cpus]
    rows.append(["all"] + [xdp.get("program", {}).get(k, 0) for k in _PROG])
    lines += [""] + _table("XDP program", ["cpu"] + _PROG, rows)
    rcodes = xdp.get("program", {}).get("answered_in_xdp_rcodes") or {}
    if rcodes:
        lines.append(
            "  answered in XDP by RCODE: "
            + ", ".join(f"{k} {v}" for k, v in sorted(rcodes.items()))
        )
    qtypes = xdp.get("program", {}).get("answered_in_xdp_qtypes") or {}
    if qtypes:
        lines.append(
            "  answered in XDP by query type: "
            + ", ".join(f"{k} {v}" for k, v in sorted(qtypes.items()))
        )
    lines += _answers_lines(xdp.get("answers"))
    ports = xdp.get("ports", {})
    if ports:
        lines += ["", "UDP ports"]
        for port, actions in ports.items():
            distinct = sorted(set(actions))
            if len(distinct) == 1:
                lines.append(f"  {port}: {distinct[0]} (on all {len(actions)} possible CPUs)")
            else:
                lines.append(
                    f"  {port}: per CPU "
                    + " ".join(actions)
                    + "  (INCONSISTENT: every CPU should say the same)"
                )
    return "\n".join(
        lines
        + _resolver_lines(stats)
        + _dnstap_lines(stats)
        + _secondary_lines(stats)
        + _journal_lines(stats)
    )
