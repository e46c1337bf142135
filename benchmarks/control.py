"""Control API latency under an exit storm: pypilot (HTTP on a unix socket, ``GET /v3/ping``), supervisord
(XML-RPC ``getState``), circus (ZeroMQ ``list``).

The storm is the same for every init: the ``churn`` payload orphans ``STORM_RATE`` processes a second, each of
which PID 1 must reap. After 1 s of storm, ``ctlclient.py`` (in the peers venv) sends ``control_requests``
requests back to back; p50/p99 of the round trips. pypilot is skipped cleanly while it has no control
socket (the control plane not built).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from .common import BENCH_DIR, percentile
from .harness import Context, guarded, started
from .peers import VENV, Job, Peer

STORM_RATE = 1000


def measure(ctx: Context) -> None:
    for peer in ctx.peers:
        if peer.control:
            guarded(ctx.col, "control_p99", peer.name, "ms", lambda peer=peer: once(ctx, peer))


def once(ctx: Context, peer: Peer) -> None:
    job = Job([ctx.p("churn"), str(STORM_RATE)])
    with started(peer, job, ctx.ws) as (ns, launch):
        ns.wait_for("CHURN rate", timeout=30)
        time.sleep(1.0)
        if launch.control.startswith("/") and not os.path.exists(launch.control):
            ctx.col.skip("control_p99", peer.name, "ms", "no control socket (control plane not built yet)")
            return
        res = subprocess.run(
            [
                str(VENV / "bin" / "python"),
                str(BENCH_DIR / "ctlclient.py"),
                peer.name,
                launch.control,
                str(ctx.s.control_requests),
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    if res.returncode != 0:
        raise ValueError(f"ctlclient failed: {res.stderr.strip()[-300:]}")
    out = json.loads(res.stdout)
    lat: list[float] = out["ms"]
    if not lat:
        raise ValueError(f"no request answered: {out['first_error']}")
    note = f"n={len(lat)}, errors={out['errors']}, storm {STORM_RATE} orphans/s"
    ctx.col.add("control_p50", peer.name, "ms", percentile(lat, 50), note=note)
    ctx.col.add("control_p99", peer.name, "ms", percentile(lat, 99), note=note)
    ctx.col.results[("control_p99", peer.name)].raw = lat
