"""The run's outputs: a markdown table (stdout and ``latest.md``), the raw JSON, and the PNG chart.

Per measure: median, min and max over the repeated runs, the sample count, and pypilot's median divided
by each system's median (below 1 = pypilot faster/leaner, except where "higher is better"). ContainerPilot's
figures are a reference row quoted from anchors.md, not measured.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .common import BENCH_DIR, Result, log
from .reference import FIGURES, LABEL
from .targets import check

ORDER = [
    "pypilot",
    "pypilot (JSON5 config)",
    "ContainerPilot 3.8",
    "tini",
    "dumb-init",
    "s6",
    "runit",
    "supervisord",
    "circus",
    "pypilot (bundle)",
    "python3 -I -S",
    "floor (payload reaps itself)",
]
TITLES = {
    "launch_to_first_exec": "Launch -> first child exec",
    "idle_tree_rss": "Idle memory, whole init tree, RSS",
    "idle_tree_pss": "Idle memory, whole init tree, PSS",
    "idle_pid1_rss": "Idle memory, PID 1 alone, RSS",
    "idle_ping_tree_rss": "Idle memory after one -ping (pypilot's PID 1 answers it), whole init tree, RSS",
    "idle_ping_tree_pss": "Idle memory after one -ping (pypilot's PID 1 answers it), whole init tree, PSS",
    "idle_ctl_tree_rss": "Idle memory after one -putenv too (control worker up), whole init tree, RSS",
    "idle_ctl_tree_pss": "Idle memory after one -putenv too (control worker up), whole init tree, PSS",
    "launch_cpu": "Launch: PID 1's CPU time when its first job reads it (schedstat; an upper bound)",
    "launch_instructions": "Launch: PID 1's instructions to its first exec (callgrind; not changed by load)",
    "idle_wakeups": "Idle wake-ups (context switches)",
    "idle_cpu": "Idle CPU time",
    "restart_gap_clean": "Restart gap, first restart after a clean exit",
    "restart_gap_crash": "Restart gap, first restart after a crash (SIGKILL)",
    "backoff_curve": "Backoff curve: successive restart gaps of a job that crashes at once",
    "dispatch_p50": "Job exit -> event dispatched, p50",
    "dispatch_p99": "Job exit -> event dispatched, p99",
    "spawn_rate": "Spawn throughput (exits dispatched and respawned)",
    "spawn_n_selfexit": "Spawn throughput, N runs (restarts: N - 1) until pypilot exits by itself",
    "control_p50": "Control API round trip under an exit storm, p50",
    "control_p99": "Control API round trip under an exit storm, p99",
    "profile_launch": "Profile: pypilot's launch -> first exec, step by step (python in pypilot's venv)",
    "profile_rss": "Profile: RSS of a Python that imported pypilot's parts",
    "profile_imports": "Profile: slowest top-level imports before pypilot's first exec (-X importtime)",
    "profile_instructions": "Profile: instructions to each step of PID 1's start-up (callgrind, cumulative)",
    "bundle_launch": "Self-contained build vs pip install and bare python3 -I -S: launch -> first child exec",
    "bundle_idle_tree_rss": "Self-contained build vs pip install: idle tree RSS (one sleeping job)",
    "bundle_idle_tree_pss": "Self-contained build vs pip install: idle tree PSS (one sleeping job)",
    "bundle_full_tree_rss": "Self-contained build vs pip install: full-featured tree RSS (every worker up)",
    "bundle_full_tree_pss": "Self-contained build vs pip install: full-featured tree PSS (every worker up)",
    "bundle_idle_tree_pages": "Self-contained build vs pip install: idle tree, distinct pages held (pagemap)",
    "bundle_full_tree_pages": "Self-contained build vs pip install: full-featured tree, distinct pages held",
    "bundle_size_disk": "Self-contained build: size on disk",
    "bundle_size_gzip": "Self-contained build: size as a gzip -6 tarball",
    "tree3_rss": "Full-featured tree, 3 services: RSS of the init's own processes, 8 s after start",
    "tree3_pss": "Full-featured tree, 3 services: PSS, 8 s after start",
    "tree3_pid1_rss": "Full-featured tree, 3 services: PID 1 alone, RSS",
    "tree3_ping_rss": "Full-featured tree, 3 services, after one -ping (pypilot's PID 1 answers it): RSS",
    "tree3_ping_pss": "Full-featured tree, 3 services, after one -ping: PSS",
    "tree3_ping_pid1_rss": "Full-featured tree, 3 services, after one -ping: PID 1 alone, RSS",
    "tree3_ctl_rss": "Full-featured tree, 3 services, after one -putenv too (control worker up): RSS",
    "tree3_ctl_pss": "Full-featured tree, 3 services, after one -putenv too (control worker up): PSS",
    "tree3_ctl_pid1_rss": "Full-featured tree, 3 services, after one -putenv too: PID 1 alone, RSS",
    "tree20_rss": "Full-featured tree, 20 services: RSS, 8 s after start",
    "tree20_pss": "Full-featured tree, 20 services: PSS, 8 s after start",
    "tree20_pid1_rss": "Full-featured tree, 20 services: PID 1 alone, RSS",
    "tree20_ping_rss": "Full-featured tree, 20 services, after one -ping: RSS",
    "tree20_ping_pss": "Full-featured tree, 20 services, after one -ping: PSS",
    "tree20_ping_pid1_rss": "Full-featured tree, 20 services, after one -ping: PID 1 alone, RSS",
    "tree20_ctl_rss": "Full-featured tree, 20 services, after one -putenv too (control worker up): RSS",
    "tree20_ctl_pss": "Full-featured tree, 20 services, after one -putenv too (control worker up): PSS",
    "tree20_ctl_pid1_rss": "Full-featured tree, 20 services, after one -putenv too: PID 1 alone, RSS",
    "tree3_breakdown": "Where pypilot's MiB go: RSS of each process by mapping (3 services, worker up)",
    "tree_libs": "Where pypilot's MiB go: RSS of a fresh interpreter importing each part in turn",
    "upgrade_to_serving": "In-place upgrade: -upgrade -> the new PID 1 serving the control socket",
    "upgrade_cli": "In-place upgrade: the -upgrade CLI until it exits 0 (the new image confirmed)",
    "upgrade_tick_gap": "In-place upgrade: longest gap between a 100 ms interval job's ticks meanwhile",
    "upgrade_check": "In-place upgrade, where the time goes: the target's check run (log stamps)",
    "upgrade_exec": "In-place upgrade, where the time goes: exec -> the new image resumed (log stamps)",
}


def title(measure: str) -> str:
    if measure.startswith("reap_"):
        count = f"{int(measure[5:]):,}".replace(",", " ")
        return f"Reap storm: {count} orphans released at once, until all reaped"
    return TITLES.get(measure, measure)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}".replace(",", " ")
    return (
        f"{v:.3g}"
        if abs(v) < 1
        else f"{v:.1f}"
        if abs(v) < 10
        else f"{v:.0f}"
        if abs(v) >= 20
        else f"{v:.1f}"
    )


def _ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or not theirs:
        return "-"
    value = mine / theirs
    return "<0.01x" if 0 < value < 0.01 else f"{value:.3g}x" if value < 10 else f"{value:.0f}x"


def markdown(results: list[Result], meta: dict[str, object]) -> str:
    by_measure: dict[str, list[Result]] = {}
    for r in results:
        by_measure.setdefault(r.measure, []).append(r)
    lines = [
        f"# pypilot benchmarks: {meta['date']}",
        "",
        f"Machine: {meta['machine']}. Mode: {meta['mode']}. Noise: {meta['noise']}.",
        "",
        "Peers: " + ", ".join(f"{k} {v}" for k, v in dict(meta["versions"]).items()) + ".",
        "",
    ]  # type: ignore[call-overload]
    lines += ["## Targets (issues #8, #13, #15, #17)", "", "| target | pypilot | verdict |", "|---|---|---|"]
    keyed = {(r.measure, r.peer): r for r in results}
    for v in check(keyed):
        verdict = "n/a" if v.ok is None else "meets" if v.ok else "**misses**"
        lines.append(f"| {v.target} | {v.figure} | {verdict} |")
    for measure, rows in by_measure.items():
        rows = sorted(rows, key=lambda r: ORDER.index(r.peer) if r.peer in ORDER else len(ORDER))  # stable
        unit, lower = rows[0].unit, rows[0].lower_is_better
        lines += ["", f"## {title(measure)} ({unit}, {'lower' if lower else 'higher'} is better)", ""]
        if measure == "backoff_curve":
            for r in rows:
                lines.append(f"- {r.peer}: " + (", ".join(_fmt(x) for x in r.samples) or r.error or r.note))
            continue
        mine = next((r.median for r in rows if r.peer == "pypilot"), None)
        lines += [
            "| system | median | min | max | n | pypilot / system | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if not r.samples:
                lines.append(f"| {r.peer} | - | - | - | 0 | - | {r.error or r.note} |")
                continue
            med = r.median
            ratio = _ratio(mine, med) if r.peer != "pypilot" else "-"
            note = "; ".join(x for x in (r.note, r.error) if x)
            lines.append(
                f"| {r.peer} | {_fmt(med)} | {_fmt(min(r.samples))} | {_fmt(max(r.samples))} "
                f"| {len(r.samples)} | {ratio} | {note} |"
            )
        if measure in FIGURES and not any(r.peer == "ContainerPilot 3.8" and r.samples for r in rows):
            # only when CP was not measured, and never in the measured columns or a ratio
            lines.append(f"| {LABEL} | - | - | - | 0 | - | quoted figure {_fmt(FIGURES[measure])} {unit} |")
    return "\n".join(lines) + "\n"


def write(
    results: list[Result], meta: dict[str, object], outdir: Path, stem: str, chart: bool, python: Path | None
) -> str:
    outdir.mkdir(parents=True, exist_ok=True)
    md = markdown(results, meta)
    data = {
        "meta": meta,
        "reference": {"label": LABEL, "figures": FIGURES},
        "results": [r.to_json() for r in results],
    }
    jpath = outdir / f"{stem}.json"
    jpath.write_text(json.dumps(data, indent=1) + "\n")
    (outdir / f"{stem}.md").write_text(md)
    if chart and python is not None:
        png = outdir / f"{stem}.png"
        res = subprocess.run(
            [str(python), str(BENCH_DIR / "chart.py"), str(jpath), str(png)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if res.returncode != 0:
            log(f"chart failed: {res.stderr.strip()[-400:]}")
        else:
            log(f"chart: {png}")
    log(f"results: {jpath}")
    return md
