"""What `xdpdns bench` shows: progress lines while it runs (stderr), the
table of medians and ratios (stdout), the JSON document with every run and
the machine's description, and the PNG chart.

Figures are medians over the repetitions, because single runs on shared
machines swing by up to 30 % (docs/PERFORMANCE.md), and ratios are taken
only between servers measured in the same invocation.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

LATENCY_KEYS = ("p50", "p90", "p99", "p999", "avg")


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---- medians per server and mode ------------------------------------------------


def summarize(runs: Sequence[dict]) -> list[dict]:
    """One row per (server, mode), in the order they first ran."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        if "qps" in run:
            groups.setdefault((run["server"], run["mode"]), []).append(run)
    rows = []
    for (server, mode), mine in groups.items():
        latency = {}
        for key in LATENCY_KEYS:
            value = median([r["latency_ms"].get(key) for r in mine])
            if value is not None:
                latency[key] = value
        rows.append(
            {
                "server": server,
                "mode": mode,
                "runs": len(mine),
                "qps_median": median([r["qps"] for r in mine]),
                "qps_runs": [round(r["qps"]) for r in mine],
                "latency_ms_median": latency,
                "lost_median": median([r["lost"] for r in mine]),
                "sent_median": median([r["sent"] for r in mine]),
                "server_cpu_median": median([r.get("server_cpu") for r in mine]),
                "server_cpus_us_per_answer_median": median(
                    [r.get("server_cpus_us_per_answer") for r in mine]
                ),
                "errors": sum(len(r["errors"]) for r in mine),
            }
        )
    return rows


def ratios(rows: Sequence[dict]) -> list[dict]:
    """xdpdns over each peer in the same mode, and XDP over socket mode."""
    out = []
    mine = {r["mode"]: r for r in rows if r["server"] == "xdpdns"}
    for row in rows:
        if row["server"] == "xdpdns":
            continue
        ours = mine.get(row["mode"])
        if ours and row["qps_median"]:
            out.append(_ratio(ours, row))
    if "xdp" in mine and "socket" in mine and mine["socket"]["qps_median"]:
        out.append(_ratio(mine["xdp"], mine["socket"]))
    return out


def _ratio(a: dict, b: dict) -> dict:
    cpu = None
    ca, cb = a["server_cpus_us_per_answer_median"], b["server_cpus_us_per_answer_median"]
    if ca and cb:
        cpu = ca / cb
    return {
        "of": f"{a['server']} {a['mode']}",
        "to": f"{b['server']} {b['mode']}",
        "qps": a["qps_median"] / b["qps_median"],
        "cpu_per_answer": cpu,
    }


def _latency_text(latency: dict) -> str:
    if "p50" in latency:
        return f"p50 {latency['p50']:.3f} p99 {latency.get('p99', float('nan')):.3f}"
    if "avg" in latency:
        return f"avg {latency['avg']:.3f}"
    return "-"


def _num(value, fmt: str, none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def table(rows: Sequence[dict], ratio_rows: Sequence[dict]) -> str:
    sw = max([6] + [len(r["server"]) for r in rows])
    mw = max([6] + [len(r["mode"]) for r in rows])
    head = (
        f"{'server':{sw}} {'mode':{mw}} {'runs':>4} {'answers/s':>11} "
        f"{'runs (answers/s)':>26} {'latency ms':>24} {'lost':>8} {'srv CPU':>7} "
        f"{'CPU us/ans':>10} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['server']:{sw}} {r['mode']:{mw}} {r['runs']:>4} "
            f"{_num(r['qps_median'], ',.0f'):>11} "
            f"{' '.join(_short(q) for q in r['qps_runs']):>26} "
            f"{_latency_text(r['latency_ms_median']):>24} {_num(r['lost_median'], ',.0f'):>8} "
            f"{_num(r['server_cpu_median'], '.0%'):>7} "
            f"{_num(r['server_cpus_us_per_answer_median'], '.2f'):>10} {r['errors']:>6}"
        )
    if ratio_rows:
        lines.append("")
        for q in ratio_rows:
            cpu = (
                f"; server CPU per answer {q['cpu_per_answer']:.2f}"
                if q["cpu_per_answer"] is not None
                else ""
            )
            lines.append(f"{q['of']} / {q['to']}: answers/s {q['qps']:.2f}{cpu}")
    return "\n".join(lines)


def _short(qps: float) -> str:
    return f"{qps / 1000:.1f}k" if qps >= 1000 else str(round(qps))


def soak_table(summary: dict) -> str:
    def mib(kib):
        return "-" if kib is None else f"{kib / 1024:.1f} MiB"

    return "\n".join(
        [
            f"samples: {summary['samples']} every {summary['interval_s']:g} s "
            f"(drift ignores the first {summary['settle_s']:g} s)",
            f"memory (RSS): first {mib(summary['rss_kib_first'])}, last "
            f"{mib(summary['rss_kib_last'])}, max {mib(summary['rss_kib_max'])}, drift "
            f"{_num(summary['rss_kib_per_minute'], '+.1f')} KiB/min",
            f"answer rate: median {_num(summary['rate_median'], ',.0f')}/s, min "
            f"{_num(summary['rate_min'], ',.0f')}, max {_num(summary['rate_max'], ',.0f')}, "
            f"drift {_num(summary['rate_per_minute'], '+.1f')}/s per min",
        ]
    )


# ---- the JSON document ------------------------------------------------------------


def document(
    settings: dict,
    machine: dict,
    tools: dict,
    zones: list[dict],
    queries: dict | None,
    runs: list[dict],
    rows: list[dict],
    ratio_rows: list[dict],
    error: str | None = None,
) -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": sys.argv,
        "machine": machine,
        "tools": tools,
        "settings": settings,
        "zones": zones,
        "queries": queries,
        "runs": runs,
        "summary": rows,
        "ratios": ratio_rows,
        "error": error,
    }


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ---- the chart ---------------------------------------------------------------------


class ChartError(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ChartError(
            "--chart needs matplotlib (Debian: apt-get install python3-matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def check_chart_support() -> None:
    """Raises ChartError now rather than after a long benchmark."""
    _pyplot()


def chart(path: Path, rows: Sequence[dict], title: str) -> None:
    """Answers/s per server and mode (bars: medians; dots: runs), and
    latency (p50 and p99 where the generator measures them, else the
    average; with none, the server's CPU time per answer)."""
    plt = _pyplot()
    labels = [f"{r['server']}\n{r['mode']}" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    x = range(len(rows))
    bars = left.bar(x, [r["qps_median"] or 0 for r in rows], color="#4c72b0", label="median")
    left.bar_label(
        bars,
        labels=[_short(r["qps_median"] or 0) for r in rows],
        label_type="center",
        color="white",
    )
    for i, r in enumerate(rows):
        left.plot(
            [i] * len(r["qps_runs"]),
            r["qps_runs"],
            "o",
            color="black",
            markersize=4,
            label="runs" if i == 0 else None,
        )
    left.set_xticks(list(x), labels)
    left.set_ylabel("answers per second")
    left.set_title("throughput")
    left.legend()
    left.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))

    keys = [k for k in ("p50", "p99") if any(k in r["latency_ms_median"] for r in rows)]
    if not keys and any("avg" in r["latency_ms_median"] for r in rows):
        keys = ["avg"]
    if keys:
        width = 0.8 / len(keys)
        values = []
        for j, key in enumerate(keys):
            heights = [r["latency_ms_median"].get(key, 0) for r in rows]
            values += [h for h in heights if h > 0]
            bars = right.bar(
                [i + (j - (len(keys) - 1) / 2) * width for i in x], heights, width, label=key
            )
            right.bar_label(
                bars, labels=[f"{h:.3g}" if h else "" for h in heights], padding=2, fontsize=8
            )
        # Tail latencies under overload are a thousand times the median:
        # a linear axis would hide the medians.
        if values and max(values) > 20 * min(values):
            right.set_yscale("log")
        right.set_xticks(list(x), labels)
        right.set_ylabel("milliseconds")
        right.legend()
        right.set_title("latency (median over runs)")
    else:
        # kxdpgun measures no latency: the server's cost per answer instead.
        cost = [r["server_cpus_us_per_answer_median"] or 0 for r in rows]
        bars = right.bar(x, cost, color="#55a868")
        right.bar_label(bars, labels=[f"{c:.2f}" for c in cost], padding=2, fontsize=8)
        right.set_xticks(list(x), labels)
        right.set_ylabel("microseconds of the server's CPUs")
        right.set_title("server CPU per answer (this generator measures no latency)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def soak_chart(path: Path, samples: Sequence[dict], title: str) -> None:
    """The answer rate and the memory over the soak."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    rated = [s for s in samples if s["rate"] is not None]
    rates = [s["rate"] for s in rated]
    top.plot([s["t"] for s in rated], rates, marker=".")
    top.set_ylabel("answers per second")
    top.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    # From zero, with room above: a flat line must look flat, not hide in
    # the frame.
    top.set_ylim(0, max(rates, default=1) * 1.15 or 1)
    mib = [s["rss_kib"] / 1024 for s in samples]
    bottom.plot([s["t"] for s in samples], mib, marker=".", color="#c44e52")
    bottom.set_ylabel("server RSS, MiB")
    bottom.set_xlabel("seconds into the load")
    bottom.set_ylim(0, max(mib, default=1) * 1.15 or 1)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
