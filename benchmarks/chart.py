"""Draws the results JSON as a PNG (run in the peers venv, where matplotlib is installed).

``python chart.py RESULTS.json OUT.png``: one panel per main measure, a horizontal bar per system at its
median with a min-max whisker (log scale where the bars span a decade); pypilot in orange; ContainerPilot's
quoted figure hatched.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MAIN = [
    "launch_to_first_exec",
    "reap_1000",
    "reap_5000",
    "idle_tree_rss",
    "idle_wakeups",
    "restart_gap_clean",
    "restart_gap_crash",
    "dispatch_p99",
    "spawn_rate",
    "control_p99",
]


ORDER = ["pypilot", "tini", "dumb-init", "s6", "runit", "supervisord", "circus", "python3 -I -S"]


def _rank(peer: str) -> int:
    return ORDER.index(peer) if peer in ORDER else len(ORDER)


def main(src: str, dst: str) -> int:
    data = json.load(open(src))
    results = [r for r in data["results"] if r["samples"]]
    ref = data["reference"]["figures"]
    measures = [m for m in MAIN if any(r["measure"] == m for r in results)]
    measures += sorted({r["measure"] for r in results if r["measure"].startswith("reap_")} - set(measures))
    cols = 2
    rows = (len(measures) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.6 * rows + 1), squeeze=False)
    for ax, measure in zip(axes.flat, measures, strict=False):
        rs = sorted((r for r in results if r["measure"] == measure), key=lambda r: _rank(r["peer"]))
        names = [r["peer"] for r in rs]
        med = [max(r["median"], 1e-3) for r in rs]
        lo = [m - max(r["min"], 1e-3) for m, r in zip(med, rs, strict=True)]
        hi = [max(r["max"], 1e-3) - m for m, r in zip(med, rs, strict=True)]
        colors = ["tab:orange" if n == "pypilot" else "tab:blue" for n in names]
        ax.barh(names, med, xerr=[lo, hi], color=colors, capsize=2)
        if measure in ref:
            ax.barh(["ContainerPilot (ref)"], [ref[measure]], color="white", edgecolor="gray", hatch="//")
        values = [*med, *(ref[measure] for _ in [0] if measure in ref)]
        if max(values) / min(values) >= 10:  # log only where the bars span a decade or more
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.invert_yaxis()
        better = "lower" if rs[0]["lower_is_better"] else "higher"
        ax.set_title(f"{measure} ({rs[0]['unit']}, {better} is better)", fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(measures) :]:
        ax.axis("off")
    meta = data["meta"]
    fig.suptitle(f"pypilot vs peers, {meta['date']} ({meta['mode']}), {meta['machine']}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(dst, dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
