"""ContainerPilot 3.8.0's figures, quoted from ../shared/reference/anchors.md §1.4 (measured there on a
2-core VM
with the same method, §3). ContainerPilot cannot be installed here (no package in any registry we reach),
so it
is a labelled reference column: **not measured in this run**, and no ratio is taken against it except for the
memory target, which issue #8 defines by this very figure.
"""

from __future__ import annotations

LABEL = "ContainerPilot 3.8 (ref, anchors §1.4, not measured)"

FIGURES: dict[str, float] = {
    "launch_to_first_exec": 9.1,
    "reap_1000": 56.0,
    "reap_5000": 222.0,
    "idle_tree_rss": 14.7,
    "restart_gap_clean": 1.0,
}
