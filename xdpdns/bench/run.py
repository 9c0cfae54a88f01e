"""One measured run, and its record.

In the namespaces: a fresh topology, one server started in the server
namespace and waited for, the steering applied, an optional warm-up, then
the generator for the duration while the server's CPU time, its CPUs' busy
time and (xdpdns) its own answer counters are read before and after; then
the server stopped and the topology deleted, whatever happened.  Against
--target: only the load, from the host to loopback.

The record is a plain dict (it goes to the JSON as it is) that is filled as
the run goes, so that a run that fails half-way still says what it had
started: its topology, and the processes, each with its start time.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

from xdpdns.bench import generators, procfs, report, servers, signals, soak
from xdpdns.bench.process import Server, answered_in_xdp, answered_total
from xdpdns.bench.options import BenchOptions
from xdpdns.bench.topology import Topology
from xdpdns.bench.zones import ZoneFile

PORT = 53
PROGRESS_EVERY = 5.0  # seconds between progress lines during a load
# Seconds into a load at which strict (or split) steering is applied again: NAPI
# threads appear once the generator attaches its XDP program.
STEER_AT = (0.5, 1.5)


class Run:
    def __init__(
        self,
        opts: BenchOptions,
        server: str,
        mode: str,
        repeat: int,
        workdir: Path,
        zones: Sequence[ZoneFile],
        query_file: Path,
        soak_interval: float | None = None,
    ) -> None:
        self.opts = opts
        self.name = server
        self.mode = mode
        self.workdir = workdir
        self.zones = zones
        self.query_file = query_file
        self.soak_interval = soak_interval
        self.sampler: soak.Sampler | None = None
        self.topo: Topology | None = None
        self.record: dict = {
            "server": server,
            "mode": mode,
            "repeat": repeat,
            "generator": opts.generator,
            "dnssec": opts.dnssec,
            "steering": None if opts.target else opts.steering,
            "errors": [],
            "processes": [],
            "xdp_programs": {},
        }

    def execute(self) -> dict:
        if self.opts.target:
            host, port = self.opts.target
            self.record["target"] = f"{host}:{port}"
            self._load(
                None,
                generators.Load(
                    target=host,
                    port=port,
                    query_file=self.query_file,
                    duration=self.opts.duration,
                    rate=self.opts.rate,
                    clients=self.opts.clients,
                    cpus=self.opts.client_cpus,
                    dnssec=self.opts.dnssec,
                ),
            )
            return self.record
        opts = self.opts
        self.topo = Topology(opts.queues, opts.server_cpus, opts.client_cpus, opts.steering)
        try:
            self.topo.create()
            self.record["topology"] = self.topo.describe()
            self._serve()
        finally:
            with signals.deferred():
                self.topo.delete()
        return self.record

    # ---- in the namespaces -------------------------------------------------------

    def _serve(self) -> None:
        opts, topo = self.opts, self.topo
        where = servers.Placement(
            listen=(topo.server.v4, topo.server.v6),
            port=PORT,
            cpus=opts.server_cpus,
            workers=opts.queues,
            netns=topo.server.netns,
            interface=topo.server.ifname,
            client_netns=topo.client.netns,
        )
        server = servers.make_server(
            self.name, self.mode, self.workdir, self.zones, where, config=opts.config
        )
        try:
            server.start()
            self.record["startup_s"] = round(server.wait_answering(self.zones), 3)
            self.record["pinned_threads"] = server.pin()
            self._look_at_programs()
            self.record["napi_threads"] = topo.steer()
            if self.soak_interval:
                self.sampler = soak.Sampler(server, self.soak_interval, opts.duration)
            self._load(
                server,
                generators.Load(
                    target=topo.server.v4,
                    port=PORT,
                    query_file=self.query_file,
                    duration=opts.duration,
                    rate=opts.rate,
                    clients=opts.clients,
                    queues=opts.queues,
                    cpus=opts.client_cpus,
                    netns=topo.client.netns,
                    interface=topo.client.ifname,
                    src_address=topo.client.v4,
                    src_mac=topo.client.mac,
                    dst_mac=topo.server.mac,
                    dnssec=opts.dnssec,
                ),
            )
        finally:
            with signals.deferred():
                self.record["processes"] += server.processes()
                self.record["server_exit_status"] = server.stop()

    def _look_at_programs(self) -> None:
        """Which XDP programs are attached, for the record (the tests check
        that they are gone afterwards)."""
        for side, end in (("server", self.topo.server), ("client", self.topo.client)):
            prog = end.xdp_prog_id()
            if prog is not None:
                self.record["xdp_programs"][side] = prog

    # ---- the load -----------------------------------------------------------------

    def _load(self, server: Server | None, load: generators.Load) -> None:
        opts = self.opts
        if opts.warmup:
            generators.run(
                opts.generator,
                dataclasses.replace(load, duration=opts.warmup),
                self._ticker(None),
                self._started,
            )
            if server is not None:
                server.pin()  # threads started lazily count too
        before = _Snapshot.take(server)
        tx_errors = self.topo.server.xdp_tx_errors() if self.topo is not None else 0
        if self.sampler is not None:
            self.sampler.start()
        result = generators.run(opts.generator, load, self._ticker(self.sampler), self._started)
        after = _Snapshot.take(server)
        self._account(result, server, before, after)
        if self.topo is not None:
            # Answers the server's XDP program sent that the veth dropped on
            # the way to the client (its ring full): lost on the bench's wire.
            self.record["server_xdp_tx_errors"] = self.topo.server.xdp_tx_errors() - tx_errors

    def _started(self, process: dict) -> None:
        self.record["processes"].append(process)

    def _ticker(self, sampler):
        """What runs every half second of a load: strict steering of the
        NAPI threads that appear once the generator attaches its program, a
        look at the attached programs, soak samples, and progress lines."""
        steer_at = list(STEER_AT) if self.topo is not None else []
        last_line = [0.0]

        def tick(elapsed: float) -> None:
            if steer_at and elapsed >= steer_at[0]:
                steer_at.pop(0)
                self.topo.steer()
                self._look_at_programs()
            if sampler is not None:
                sampler(elapsed)
            if elapsed - last_line[0] >= PROGRESS_EVERY:
                last_line[0] = elapsed
                report.progress(
                    f"  {elapsed:.0f} s of {self.opts.duration:g}"
                    if elapsed <= self.opts.duration
                    else "  waiting for the end"
                )

        return tick

    def _account(
        self, result: generators.LoadResult, server, before: "_Snapshot", after: "_Snapshot"
    ) -> None:
        record = self.record
        record.update(
            {k: v for k, v in result.as_dict(self.opts.verbose).items() if k != "process"}
        )
        wall = after.at - before.at
        record["wall_s"] = round(wall, 3)
        record["cpu_busy"] = (
            {
                str(c): round(procfs.busy_seconds(before.times, after.times, {c}, wall) / wall, 3)
                for c in after.times
            }
            if wall > 0
            else {}
        )
        answered = result.answered
        if server is not None:
            user, system = after.user - before.user, after.system - before.system
            busy = procfs.busy_seconds(before.times, after.times, set(self.opts.server_cpus), wall)
            # Per second of sending: generators take a while to start and to
            # drain (kxdpgun about two seconds) while the server idles.
            sending = result.duration or wall
            record.update(
                {
                    "server_cpu": (user + system) / sending if sending > 0 else None,
                    "server_user_us_per_answer": _per(user, answered),
                    "server_system_us_per_answer": _per(system, answered),
                    # Under strict steering everything the server causes runs on
                    # its CPUs: their busy time per answer is its whole cost.
                    "server_cpus_us_per_answer": _per(busy, answered),
                }
            )
            if before.stats is not None and after.stats is not None:
                record["server_answered"] = answered_total(after.stats) - answered_total(
                    before.stats
                )
                # Of those, the XDP program's own (its answer table).
                record["server_answered_in_xdp"] = answered_in_xdp(after.stats) - answered_in_xdp(
                    before.stats
                )
                record["server_queues_answered"] = _queue_deltas(before.stats, after.stats)
                record["server_queues"] = _queue_counter_deltas(before.stats, after.stats)
            if not server.alive():
                record["errors"].append(
                    f"{server.label} exited during the load; {server.log_tail()}"
                )
        if answered == 0:
            record["errors"].append("no query was answered")
        if self.sampler is not None:
            record["soak"] = {"summary": self.sampler.summary(), "samples": self.sampler.as_list()}
            record["errors"].extend(self.sampler.errors)


@dataclasses.dataclass
class _Snapshot:
    """The server's CPU time, the CPUs' times and the server's counters at
    one moment."""

    at: float
    times: dict
    user: float = 0.0
    system: float = 0.0
    stats: dict | None = None

    @classmethod
    def take(cls, server: Server | None) -> "_Snapshot":
        user = system = 0.0
        stats = None
        if server is not None:
            user, system = procfs.cpu_user_system(server.pids())
            try:
                stats = server.stats()
            except Exception:  # the counters are a cross-check, never a reason to fail
                stats = None
        return cls(time.monotonic(), procfs.cpu_times(), user, system, stats)


def _per(seconds: float, answered: int) -> float | None:
    """Microseconds per answer."""
    return seconds / answered * 1e6 if answered else None


# What each server queue did during the load, for telling where queries
# were lost under overload: before the worker (the kernel's counters),
# in it, or on the way out.
SERVER_QUEUE_COUNTERS = (
    "received",
    "answered",
    "dropped",
    "tx_full",
    "kernel_rx_dropped",
    "kernel_rx_ring_full",
    "kernel_fill_empty",
    "batches",
    "kicks",
    "busy_polls",
    "sleeps",
)


def _queue_counter_deltas(before: dict, after: dict) -> list[dict]:
    first = {q["queue"]: q for q in (before.get("xdp") or {}).get("queues", [])}
    return [
        {
            "queue": q["queue"],
            **{k: q.get(k, 0) - first.get(q["queue"], {}).get(k, 0) for k in SERVER_QUEUE_COUNTERS},
        }
        for q in (after.get("xdp") or {}).get("queues", [])
    ]


def _queue_deltas(before: dict, after: dict) -> list[int]:
    """Answers per AF_XDP queue of the server during the load (XDP mode):
    every queue must answer, not only the first (DESIGN.md)."""
    first = {q["queue"]: q["answered"] for q in (before.get("xdp") or {}).get("queues", [])}
    return [
        q["answered"] - first.get(q["queue"], 0) for q in (after.get("xdp") or {}).get("queues", [])
    ]
