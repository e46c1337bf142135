"""Issues #8's and #13's targets for pypilot, checked against one run's medians (a figure, never a test)."""

from __future__ import annotations

import dataclasses

from .common import Result
from .reference import FIGURES


@dataclasses.dataclass
class Verdict:
    target: str
    figure: str
    ok: bool | None  # None: not measured in this run


def _med(results: dict[tuple[str, str], Result], measure: str, peer: str) -> float | None:
    res = results.get((measure, peer))
    return res.median if res is not None else None


def check(results: dict[tuple[str, str], Result]) -> list[Verdict]:
    out: list[Verdict] = []

    def ratio(target: str, measure: str, peer: str, limit: float, me: str = "pypilot") -> None:
        mine, theirs = _med(results, measure, me), _med(results, measure, peer)
        if mine is None or not theirs:
            out.append(Verdict(target, "not measured", None))
        else:
            out.append(
                Verdict(target, f"{mine:.2f} vs {theirs:.2f} = {mine / theirs:.2f}x", mine / theirs <= limit)
            )

    def absolute(target: str, measure: str, limit: float, unit: str, peer: str = "pypilot") -> None:
        mine = _med(results, measure, peer)
        if mine is None:
            out.append(Verdict(target, "not measured", None))
        else:
            out.append(Verdict(target, f"{mine:.2f} {unit}", mine <= limit))

    ratio("reap 1 000 orphans <= 1.2x tini", "reap_1000", "tini", 1.2)
    ratio("launch -> first exec <= 1.5x bare python3 -I -S", "launch_to_first_exec", "python3 -I -S", 1.5)
    launch = "launch_to_first_exec"
    ratio("  same, JSON5 config", launch, "python3 -I -S", 1.5, "pypilot (JSON5 config)")
    cp = "ContainerPilot 3.8"  # issue #15: measured in the same run
    for n in (3, 20):
        for ping in ("", "_ping", "_ctl"):
            when = {"": "", "_ping": ", after one -ping", "_ctl": ", control worker up (a -putenv)"}[ping]
            ratio(f"{n}-service tree PSS{when} <= 1.5x {cp}", f"tree{n}{ping}_pss", cp, 1.5)
            ratio(f"{n}-service tree RSS{when} <= 2x {cp}", f"tree{n}{ping}_rss", cp, 2.0)
    absolute("exit -> dispatch p99 <= 2 ms", "dispatch_p99", 2.0, "ms")
    absolute(
        "  same, pypilot under SCHED_FIFO (others' CPU noise removed)",
        "dispatch_p99",
        2.0,
        "ms",
        "pypilot (SCHED_FIFO)",
    )
    if _med(results, "idle_tree_rss", cp) is not None:
        ratio(f"idle whole-tree RSS <= {cp} (measured)", "idle_tree_rss", cp, 1.0)
    else:
        absolute(
            f"idle whole-tree RSS <= {FIGURES['idle_tree_rss']} MiB (ContainerPilot, quoted)",
            "idle_tree_rss",
            FIGURES["idle_tree_rss"],
            "MiB",
        )
    absolute("idle wake-ups 0/s (<= 0.1/s)", "idle_wakeups", 0.1, "/s")
    absolute("first-restart gap <= 5 ms (clean exit)", "restart_gap_clean", 5.0, "ms")
    absolute("first-restart gap <= 5 ms (crash)", "restart_gap_crash", 5.0, "ms")

    # issue #13: the self-contained build against the pip install it is made from
    def bundle(target: str, measure: str, limit: float) -> None:
        mine, theirs = _med(results, measure, "pypilot (bundle)"), _med(results, measure, "pypilot")
        if mine is None or not theirs:
            out.append(Verdict(target, "not measured", None))
        else:
            figure = f"{mine:.2f} vs {theirs:.2f} = {mine / theirs:.2f}x"
            out.append(Verdict(target, figure, mine / theirs <= limit))

    bundle("self-contained build: launch -> first exec <= 1.1x pip install", "bundle_launch", 1.1)
    ratio("  same, <= 1.5x bare python3 -I -S (issue #15, same rounds)", "bundle_launch", "python3 -I -S",
          1.5, "pypilot (bundle)")
    for kind in ("idle", "full"):
        for mem in ("rss", "pss", "pages"):
            what = f"self-contained build: {kind} tree {mem.upper()} <= pip install"
            bundle(what, f"bundle_{kind}_tree_{mem}", 1.0)
    absolute("self-contained build on disk <= 30 MB", "bundle_size_disk", 30.0, "MB", "pypilot (bundle)")
    absolute("self-contained build gzipped <= 12 MB", "bundle_size_gzip", 12.0, "MB", "pypilot (bundle)")
    # issue #17: in-place upgrade
    absolute("-upgrade -> new PID 1 serving < 200 ms", "upgrade_to_serving", 200.0, "ms")
    absolute("no missed 100 ms tick during an upgrade (gap < 200 ms)", "upgrade_tick_gap", 200.0, "ms")
    return out
