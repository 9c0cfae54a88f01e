"""Chart of bench/xdp_scaling.sh results: answers per second against queues.

    .venv/bin/python bench/plot_scaling.py OUT.png RUNS.jsonl|BENCH.json ...

RUNS.jsonl: bench/xdp_scaling.sh's JSON lines; BENCH.json: the --json of
`xdpdns bench` (one queue count per file).

For each server and queue count it plots the best median answer rate over
the ladder of offered rates (the most it answered) and the highest offered
rate it answered with at most 1 % loss (median), with the line of perfect
scaling from one queue for comparison.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CLEAN_LOSS = 0.01


def _from_bench(report: dict) -> list[dict]:
    """The runs of an `xdpdns bench --json` report in xdp_scaling.sh's terms."""
    queues = report["settings"]["queues"]
    out = []
    for run in report["runs"]:
        if not run.get("sent"):
            continue
        out.append(
            {
                "server": f"{run['server']} {run['mode']}",
                "queues": queues,
                "rate": run.get("offered_rate") or 0,
                "answered_per_s": run["answered"] / run["duration"],
                "loss": 1 - run["answered"] / run["sent"],
            }
        )
    return out


def load(paths: list[str]) -> list[dict]:
    runs = []
    for path in paths:
        with open(path) as f:
            text = f.read()
        if path.endswith(".jsonl"):
            runs += [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            runs += _from_bench(json.loads(text))
    return runs


def summarize(runs: list[dict]) -> dict[str, dict[int, tuple[float, float]]]:
    """server -> queues -> (best median answers/s, clean offered rate)."""
    by = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by[(r["server"], r["queues"])][r["rate"]].append(r)
    out: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    for (server, queues), rates in by.items():
        best = max(statistics.median(x["answered_per_s"] for x in rs) for rs in rates.values())
        clean = [
            rate
            for rate, rs in rates.items()
            if rate
            and statistics.median(1 if x["loss"] is None else x["loss"] for x in rs) <= CLEAN_LOSS
        ]
        out[server][queues] = (best, max(clean, default=0))
    return out


def plot(summary, path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for server, points in sorted(summary.items()):
        queues = sorted(points)
        best = [points[q][0] / 1e6 for q in queues]
        (line,) = ax.plot(queues, best, marker="o", label=f"{server}: most answered")
        # A queue count where no offered rate stayed under 1 % loss has no
        # point on that line (NaN), rather than a misleading zero.
        clean = [points[q][1] / 1e6 if points[q][1] else float("nan") for q in queues]
        if any(points[q][1] for q in queues):
            ax.plot(
                queues,
                clean,
                marker="s",
                linestyle="--",
                color=line.get_color(),
                label=f"{server}: offered, loss <= 1 %",
            )
        ax.plot(
            queues,
            [best[0] * q / queues[0] for q in queues],
            linestyle=":",
            color=line.get_color(),
            alpha=0.5,
            label=f"{server}: linear from 1 queue",
        )
    ax.set_xlabel("queues (workers, and generator queues)")
    ax.set_ylabel("million answers per second")
    ax.set_xticks(sorted({q for p in summary.values() for q in p}))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    summary = summarize(load(argv[2:]))
    source = (
        "xdpdns bench"
        if any(not p.endswith(".jsonl") for p in argv[2:])
        else "bench/xdp_scaling.sh"
    )
    plot(summary, argv[1], f"XDP mode on a veth, 16-core machine ({source})")
    for server, points in sorted(summary.items()):
        for q in sorted(points):
            print(f"{server} {q} best={points[q][0]:.0f} clean={points[q][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
