"""Shared plumbing for the benchmark measures: paths, run settings, results and small statistics."""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / ".peers"
BUILD_DIR = BENCH_DIR / "build"
RESULTS_DIR = BENCH_DIR / "results"
PAYLOAD_SRC = BENCH_DIR / "payloads"


@dataclasses.dataclass(frozen=True)
class Settings:
    """How hard to run: ``quick`` is the CI smoke test (small storms, few repeats, short windows)."""

    quick: bool
    repeats: int
    storm_sizes: tuple[int, ...]
    idle_window_s: float
    restart_run_ms: int
    dispatch_samples: int
    dispatch_window_s: float
    spawn_target: int
    spawn_window_s: float
    backoff_window_s: float
    control_requests: int

    @classmethod
    def make(cls, quick: bool, repeats: int | None = None) -> Settings:
        if quick:
            return cls(True, repeats or 1, (300,), 2.0, 1100, 8, 6.0, 200, 2.0, 3.0, 40)
        return cls(False, repeats or 5, (1000, 5000), 30.0, 2000, 200, 20.0, 1000, 10.0, 12.0, 300)


@dataclasses.dataclass
class Result:
    """One figure for one system: every sample kept, summarised by median/min/max."""

    measure: str
    peer: str
    unit: str
    samples: list[float]
    lower_is_better: bool = True
    note: str = ""
    error: str = ""
    raw: list[float] = dataclasses.field(default_factory=list)  # e.g. every latency behind a percentile

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["median"] = self.median
        data["min"] = min(self.samples) if self.samples else None
        data["max"] = max(self.samples) if self.samples else None
        return data


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation), robust for the small sample counts used here."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def run(
    argv: Sequence[str], timeout: float = 600.0, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a helper command (installers, compilers) with a deadline, capturing its output."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check, env=env)


def log(msg: str) -> None:
    """Progress to stderr, so stdout stays the result table."""
    import sys

    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
