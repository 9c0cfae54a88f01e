"""`xdpdns bench` from start to end: the checks that can fail at once, the
zones and the query file, the runs in order (run.py), then the table, the
JSON and the chart.

Servers and modes alternate over the repetitions, rotating so that none
always runs first.  A failure ends the benchmark after the clean-up, with
the runs so far and the error in the JSON; a signal too (exit status 128 +
the signal).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from xdpdns.bench import generators, procfs, queries, report, servers, signals, zones
from xdpdns.bench.process import ServerError
from xdpdns.bench.options import ROOT_MESSAGE, BenchOptions
from xdpdns.bench.run import Run
from xdpdns.bench.topology import TopologyError

# What ends a benchmark with a message (anything else is a bug: a traceback).
FAILURES = (
    ServerError,
    generators.GeneratorError,
    TopologyError,
    queries.QueryFileError,
    zones.ZoneArgumentError,
    report.ChartError,
)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


class Bench:
    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.runs: list[dict] = []
        self.zones: list[zones.ZoneFile] = []
        self.plan: queries.QueryPlan | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="xdpdns-bench-"))

    def main(self) -> int:
        """Runs everything; returns the exit status, or raises BenchError
        with the reason it could not."""
        error = None
        interrupted = None
        try:
            self.check()
            self.prepare()
            self.run_all()
        except signals.Interrupted as exc:
            error, interrupted = str(exc), exc.signum
        except (BenchError, *FAILURES) as exc:
            error = str(exc)
        finally:
            with signals.deferred():
                if self.opts.keep:
                    report.progress(f"kept {self.workdir}")
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
        if interrupted is not None:
            self.finish(error, draw=False)
            report.progress(f"{error}; what it had started is stopped and deleted")
            return 128 + interrupted
        status = self.finish(error, draw=error is None)
        if error is not None:
            raise BenchError(error)
        return status

    def check(self) -> None:
        """What can fail at once instead of after an hour."""
        opts = self.opts
        if opts.target is None and os.geteuid() != 0:
            raise BenchError(ROOT_MESSAGE)
        missing = [
            m
            for m in [generators.missing_tool(opts.generator)]
            + [servers.missing_program(p) for p in opts.compare]
            if m
        ]
        if missing:
            raise BenchError("; ".join(missing))
        if opts.chart:
            report.check_chart_support()
        if opts.generator == "xdpdns":
            try:
                from xdpdns.bench.loadgen import LoadGenerator  # noqa: F401
            except ImportError:
                raise BenchError(
                    "--generator xdpdns: this build of xdpdns has no load "
                    "generator (xdpdns.bench.loadgen)"
                ) from None

    def prepare(self) -> None:
        opts = self.opts
        self.zones = zones.resolve(opts.zone_args, opts.config)
        path = self.workdir / "queries.txt"
        if opts.queries:
            self.plan = queries.user_file(opts.queries, path)
        else:
            mix = queries.parse_mix(opts.mix) if opts.mix else None
            self.plan = queries.generated_file(path, self.zones, opts.query_count, mix, opts.seed)
        where = (
            f"against {opts.target[0]}:{opts.target[1]}"
            if opts.target
            else f"{opts.queues} queue(s), steering {opts.steering}, server CPUs "
            f"{_cpus(opts.server_cpus)}, client CPUs {_cpus(opts.client_cpus)}"
        )
        mix = ", ".join(f"{k} {v:g} %" for k, v in self.plan.mix.items())
        report.progress(
            f"{self.plan.count} queries ({self.plan.source}"
            + (f": {mix}" if mix else "")
            + f"); {opts.generator} for "
            f"{opts.duration:g} s per run; {where}"
        )
        for kind, why in self.plan.dropped.items():
            report.progress(f"no {kind} queries: {why}")

    def run_all(self) -> None:
        opts = self.opts
        plan = opts.plan()
        total = len(plan) * opts.repeat
        if opts.soak:
            report.progress(
                f"soak: xdpdns {opts.modes[0]} at {opts.rate:,}/s for "
                f"{opts.duration:g} s, a sample every {opts.sample_interval:g} s"
            )
        for rep in range(opts.repeat):
            shift = rep % len(plan)
            for name, mode in plan[shift:] + plan[:shift]:
                n = len(self.runs)
                report.progress(
                    f"run {n + 1}/{total}: {name} {mode}"
                    + (f" (repetition {rep + 1})" if opts.repeat > 1 else "")
                )
                run = Run(
                    opts,
                    name,
                    mode,
                    rep,
                    self.workdir / f"run{n}-{name}-{mode}",
                    self.zones,
                    self.plan.path,
                    soak_interval=opts.sample_interval if opts.soak else None,
                )
                # In the list before it runs: a run that fails half-way still
                # reports what it had started.
                self.runs.append(run.record)
                try:
                    run.execute()
                except (signals.Interrupted, *FAILURES) as exc:
                    run.record["errors"].append(str(exc))
                    raise
                report.progress(_run_line(run.record))

    # ---- the end ----------------------------------------------------------------------

    def finish(self, error: str | None, draw: bool) -> int:
        """Prints the table, writes the JSON (also after a failure: the runs
        so far and the error) and, with draw, the chart."""
        opts = self.opts
        rows = report.summarize(self.runs)
        ratio_rows = report.ratios(rows)
        soak = next((r["soak"] for r in self.runs if "soak" in r), None)
        if rows:
            # What was measured how (steering, queues, generator) heads the table.
            print(self.title().splitlines()[0] + "\n", flush=True)
            print(report.table(rows, ratio_rows), flush=True)
        if soak:
            print(report.soak_table(soak["summary"]), flush=True)
        if opts.json:
            doc = report.document(
                opts.settings(),
                procfs.machine(),
                self.tools(),
                [{"origin": z.origin, "file": str(z.path)} for z in self.zones],
                self.plan.describe() if self.plan else None,
                self.runs,
                rows,
                ratio_rows,
                error,
            )
            report.write_json(opts.json, doc)
            report.progress(f"wrote {opts.json}")
        if opts.chart and draw:
            if soak:
                report.soak_chart(opts.chart, soak["samples"], self.title())
            elif rows:
                report.chart(opts.chart, rows, self.title())
            report.progress(f"drew {opts.chart}")
        return 1 if any(r["errors"] for r in self.runs) else 0

    def title(self) -> str:
        o = self.opts
        where = (
            f"target {o.target[0]}:{o.target[1]}"
            if o.target
            else f"{o.queues} queue(s), steering {o.steering}"
        )
        kind = "soak" if o.soak else f"{o.repeat} run(s) of {o.duration:g} s"
        rate = f", {o.rate:,}/s offered" if o.rate else ""
        return (
            f"xdpdns bench: {o.generator}{rate}, {where}, {kind}\n"
            f"{procfs.cpu_model()}, {os.cpu_count()} CPUs, Linux {os.uname().release}"
        )

    def tools(self) -> dict:
        used = {
            "xdpdns": servers.version("xdpdns"),
            self.opts.generator: generators.version(self.opts.generator),
        }
        for peer in self.opts.compare:
            used[peer] = servers.version(peer)
        return used


def _cpus(cpus) -> str:
    return ",".join(map(str, cpus))


def _run_line(r: dict) -> str:
    if "qps" not in r:
        return "  no result"
    latency = r.get("latency_ms", {})
    lat = (
        f"  p50 {latency['p50']:.3f} ms p99 {latency['p99']:.3f} ms"
        if "p50" in latency
        else f"  avg {latency['avg']:.3f} ms"
        if "avg" in latency
        else ""
    )
    cpu = r.get("server_cpu")
    cpu_text = f"  server CPU {cpu:.0%}" if cpu is not None else ""
    errors = f"  ERRORS: {'; '.join(r['errors'])}" if r["errors"] else ""
    in_xdp = r.get("server_answered_in_xdp")
    share = (
        f"  in XDP {in_xdp / r['server_answered']:.0%}"
        if in_xdp and r.get("server_answered")
        else ""
    )
    tx_lost = r.get("server_xdp_tx_errors")
    tx_text = f" (XDP_TX lost on the veth {tx_lost:,})" if tx_lost else ""
    return (
        f"  {r['qps']:,.0f} answers/s  sent {r['sent']:,}  lost {r['lost']:,}{tx_text}"
        f"{share}{lat}{cpu_text}{errors}"
    )


def main(opts: BenchOptions) -> int:
    """Runs the benchmark; returns the exit status.  Raises BenchError with
    a one-line reason when it could not run (the caller prints it)."""
    with signals.raised():
        return Bench(opts).main()
