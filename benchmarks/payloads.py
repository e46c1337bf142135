"""Compiles the C payloads in ``benchmarks/payloads/`` with ``cc -O2`` into ``benchmarks/build/``.

The payloads are C so that they cost the same under every init: ``stamp`` (prints CLOCK_MONOTONIC/REALTIME
at exec; with ``0 exit`` it is the ``true``-like exiter), ``reapstorm`` (N orphans released at once, timed
until reaped) and ``churn`` (a steady stream of orphans: the exit storm of the control measure).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .common import BUILD_DIR, PAYLOAD_SRC, log, run

NAMES = ("stamp", "reapstorm", "churn")


def build() -> dict[str, Path]:
    """Compile every payload whose binary is missing or older than its source; return name -> path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) found: apt-get install -y gcc")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    header = PAYLOAD_SRC / "common.h"
    for name in NAMES:
        src = PAYLOAD_SRC / f"{name}.c"
        binary = BUILD_DIR / name
        newest = max(src.stat().st_mtime, header.stat().st_mtime)
        if not binary.exists() or binary.stat().st_mtime < newest:
            log(f"compiling payload {name}")
            run([cc, "-O2", "-Wall", "-Wextra", "-o", str(binary), str(src)], timeout=120)
        out[name] = binary
    return out
