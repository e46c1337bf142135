"""pypilot's self-contained build (``scripts/bundle.py``) against the pip install it is made from, in one run.

The bundle is made at the start of the measure from the pypilot that the other measures run (the run's
``pip install .`` in ``.peers/pypilot-venv``, or whichever is installed), into ``.peers/bundle/pypilot``:
the same pypilot, dependencies and interpreter build, so only the packaging differs. patchelf is installed
with apt-get when missing. Rows ``pypilot`` (pip install) and ``pypilot (bundle)``; the targets compare
bundle / pip.

- ``bundle_launch``: launch -> first exec of the ``stamp`` payload, as ``launch.py`` measures it; one warm-up
  each, then ``repeats`` rounds, the two interleaved with the bare ``python3 -I -S`` baseline, so that the
  bundle (which skips ``site``, as the baseline does) is also set against issue #15's launch target.
- ``bundle_idle_tree_rss``/``_pss``: one sleeping ``stamp`` job, 2 s after it stamped, summed over pypilot's
  tree minus the payload (``idle.py``'s method).
- ``bundle_full_tree_rss``/``_pss``: the same with the I/O worker running: a health-checked service job,
  Consul at an address nothing answers, telemetry (/metrics fetched once), the control socket pinged once
  (answered by PID 1 itself, as an image's ``HEALTHCHECK pypilot -ping`` is: no control worker).
- ``bundle_*_tree_pages``: the distinct physical pages the tree maps (``pagemap``), each once: PSS falls
  for the pip install when other processes on the host map its libpython and libc (every Python here
  does, the harness included), which a container running only pypilot and its jobs would not see; this
  figure does not depend on what else runs.
- ``bundle_size_disk``/``_gzip``: the bundle's bytes on disk (file sizes) and as a gzip -6 tarball (what an
  image layer costs to pull), in MB (10^6), next to ContainerPilot 3.8's static binary (11.7 MB).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from . import procstat
from .common import PEERS_DIR, REPO, log
from .harness import STAMP, Context, guarded, stamp_of, started
from .nsrun import NsInit
from .peers import Job, Launch, Peer, Pypilot, _env, free_port, pypilot_python

BUNDLE_PREFIX = PEERS_DIR / "bundle" / "pypilot"
BUNDLE = "pypilot (bundle)"
PIP = "pypilot"
SETTLE_S = 2.0
CP_BINARY_MB = 11.7  # ContainerPilot 3.8.0's static binary (anchors.md §1.4)


class BundledPypilot(Pypilot):
    name = BUNDLE

    def available(self) -> bool:
        return (BUNDLE_PREFIX / "bin" / "pypilot").exists()

    def binary(self) -> str:
        return str(BUNDLE_PREFIX / "bin" / "pypilot")


def build() -> None:
    """(Re)make the bundle from the measured pypilot's own interpreter."""
    if shutil.which("patchelf") is None:
        log("apt-get install -y patchelf (the bundle needs it)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "patchelf"]
        if subprocess.run(cmd, capture_output=True, env=env, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
            subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    shutil.rmtree(BUNDLE_PREFIX, ignore_errors=True)
    BUNDLE_PREFIX.parent.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [pypilot_python(), str(REPO / "scripts" / "bundle.py"), "--prefix", str(BUNDLE_PREFIX)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if res.returncode != 0:
        raise OSError(f"scripts/bundle.py failed: {res.stderr.strip()[-300:]}")


def sizes(prefix: Path) -> tuple[float, float]:
    """(bytes on disk, bytes as a gzip -6 tarball) of the tree, in MB."""
    disk = sum(p.lstat().st_size for p in prefix.rglob("*") if p.is_file() and not p.is_symlink())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        tar.add(prefix, arcname=prefix.name)
    return disk / 1e6, buf.tell() / 1e6


def _full_launch(peer: Pypilot, stamp: str, workdir: Path) -> tuple[Launch, int]:
    port = free_port()
    sock = workdir / "pypilot.sock"
    config = {
        "consul": f"127.0.0.1:{free_port()}",  # nothing listens: the worker runs and retries
        "logging": {"level": "INFO"},
        "control": {"socket": str(sock)},
        "jobs": [
            {
                "name": "app",
                "exec": [stamp],
                "port": 8000,
                "interfaces": ["static:127.0.0.1"],
                "health": {"exec": "true", "interval": 1, "ttl": 5},
            }
        ],
        "telemetry": {"port": port, "interfaces": ["static:127.0.0.1"]},
    }
    path = workdir / "full.json5"
    path.write_text(json.dumps(config))
    return Launch([peer.binary(), "-config", str(path)], _env(), control=str(sock)), port


def _ping(path: str) -> None:
    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(5)
            self.sock.connect(path)

    deadline = time.monotonic() + 10
    while True:
        try:
            conn = Conn("localhost", timeout=5)
            conn.request("GET", "/v3/ping")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _tree_memory(ns: NsInit, payload: str) -> tuple[float, float, float, int]:
    """(RSS, PSS, distinct pages) of pypilot's tree in MiB, and how many processes."""
    pids = [pid for pid in ns.tree() if procstat.exe(pid) != payload]
    rss_pss = [procstat.smaps(pid) for pid in pids]
    held = procstat.distinct_pages(pids) / 2**20
    return sum(r for r, _ in rss_pss) / 1024, sum(p for _, p in rss_pss) / 1024, held, len(pids)


def measure(ctx: Context) -> None:
    pip = next((p for p in ctx.peers if p.name == PIP), None)
    if pip is None:
        return
    assert isinstance(pip, Pypilot)
    try:
        build()
    except (OSError, subprocess.SubprocessError) as exc:
        ctx.col.fail("bundle_launch", BUNDLE, "ms", exc)
        return
    bundle = BundledPypilot()
    disk, gz = sizes(BUNDLE_PREFIX)
    note = f"ContainerPilot 3.8's static binary: {CP_BINARY_MB} MB"
    ctx.col.add("bundle_size_disk", BUNDLE, "MB", disk, note=note)
    ctx.col.add("bundle_size_gzip", BUNDLE, "MB", gz, note=note)
    systems: list[Pypilot] = [pip, bundle]
    stamp_job = Job([ctx.p("stamp")])

    def launch_once(peer: Peer) -> float:
        with started(peer, stamp_job, ctx.ws) as (ns, _):
            _, mono, _ = stamp_of(ns.wait_for(STAMP, timeout=20)[0])
            return (mono - ns.launch_ns) / 1e6

    launchers: list[Peer] = [*systems, ctx.baseline]
    for peer in launchers:
        guarded(ctx.col, "bundle_launch", peer.name, "ms", lambda peer=peer: launch_once(peer))  # warm-up
    for _ in range(ctx.s.repeats):
        for peer in launchers:
            value = guarded(ctx.col, "bundle_launch", peer.name, "ms", lambda peer=peer: launch_once(peer))
            if value is not None:
                ctx.col.add("bundle_launch", peer.name, "ms", value)

    payload = ctx.p("stamp")

    def memory(kind: str, peer: Pypilot) -> None:
        with contextlib.ExitStack() as stack:
            wd = ctx.ws.fresh()
            if kind == "idle":
                launch = peer.launch(stamp_job, wd)
                port = 0
            else:
                launch, port = _full_launch(peer, payload, wd)
            ns = stack.enter_context(NsInit(launch.argv, launch.env, cwd=wd))
            ns.wait_for(STAMP, timeout=20)
            if kind == "full":
                _ping(launch.control)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                deadline = time.monotonic() + 10
                while True:
                    try:
                        opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
            time.sleep(SETTLE_S)
            rss, pss, held, n = _tree_memory(ns, payload)
            ctx.col.add(f"bundle_{kind}_tree_rss", peer.name, "MiB", rss, note=f"{n} processes")
            ctx.col.add(f"bundle_{kind}_tree_pss", peer.name, "MiB", pss)
            ctx.col.add(f"bundle_{kind}_tree_pages", peer.name, "MiB", held)

    for _ in range(ctx.s.repeats):
        for kind in ("idle", "full"):
            for peer in systems:
                measure_name = f"bundle_{kind}_tree_rss"
                guarded(ctx.col, measure_name, peer.name, "MiB", lambda k=kind, p=peer: memory(k, p))


if __name__ == "__main__":  # a quick look without the whole suite: python -m benchmarks --only bundle
    sys.exit("run: python -m benchmarks --only bundle")
