"""Exercises pypilot.reaper in a process of its own (reaping in the test runner would take its
children) and prints what it saw as JSON for tests/test_reaper.py."""

import os
import select
import signal
import sys
import time

import orjson

from pypilot import reaper

out: dict[str, object] = {}
sigfd = reaper.setup_signals()
r = reaper.Reaper()
exits: dict[int, int] = {}


def wait_exits(pids: set[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pids <= exits.keys() and time.monotonic() < deadline:
        select.select([sigfd], [], [], 0.2)
        reaper.read_signals(sigfd)
        r.drain()


def reap_unregistered(pid: int, timeout: float = 10.0) -> None:
    """Wait on the signalfd until ``pid``, registered by nobody, has been reaped and kept."""
    deadline = time.monotonic() + timeout
    while pid not in r._stash and time.monotonic() < deadline:
        select.select([sigfd], [], [], 0.2)
        reaper.read_signals(sigfd)
        r.drain()


def record(pid: int, status: int) -> None:
    exits[pid] = status


# 1. exit codes 0..3 and a signal, each dispatched to its own PID
pids = {}
for code in range(4):
    pid = reaper.spawn(["sh", "-c", f"exit {code}"])
    r.register(pid, record)
    pids[pid] = code
killed = reaper.spawn(["sleep", "100"])
r.register(killed, record)
reaper.kill_group(killed, signal.SIGKILL, reaper.pidfd_open(killed))
wait_exits({*pids, killed})
out["codes"] = {str(pids[p]): reaper.exit_code(exits[p]) for p in pids}
out["killed"] = reaper.describe(exits[killed])

# 2. a leader held with SIGTERM: its group is signalled while it is still a zombie
rd, wr = os.pipe()
leader = reaper.spawn(["sh", "-c", "sleep 100 & echo $!; exit 0"], stdout=wr)
os.close(wr)
r.register(leader, record, group_signal=signal.SIGTERM)
straggler = int(os.read(rd, 100).split()[0])
wait_exits({leader})
# the straggler is reparented to init, not to us: watch /proc for it to go
deadline = time.monotonic() + 5
while os.path.exists(f"/proc/{straggler}") and time.monotonic() < deadline:
    try:
        state = open(f"/proc/{straggler}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        break
    if state == "Z":
        break
    time.sleep(0.01)
out["straggler_gone"] = not os.path.exists(f"/proc/{straggler}") or state == "Z"

# 3. a status that arrives before anyone registered its PID is kept until someone does
early = reaper.spawn(["true"])
reap_unregistered(early)  # nobody registered `early` yet
got: list[int] = []
r.register(early, lambda pid, status: got.append(status))
out["stashed"] = got == [0]

# 3b. a kept status reaped before a spawn belongs to an earlier process with that PID: not delivered
since = r.generation
old = reaper.spawn(["true"])
reap_unregistered(old)
reused: list[int] = []
r.register(old, lambda pid, status: reused.append(status), since=r.generation)  # "spawned" after it
fresh: list[int] = []
r.register(old, lambda pid, status: fresh.append(status), since=since)  # the status is gone already
out["stale_dropped"] = reused == [] and fresh == []
r.unregister(old)

# 3c. an orphan's status nobody claims is forgotten after STASH_DRAINS drains, not kept until STASH_MAX
orphan = reaper.spawn(["true"])
reap_unregistered(orphan)
kept_after_one = orphan in r._stash
for _ in range(reaper.STASH_DRAINS + 1):
    r.drain()
out["orphan_forgotten"] = kept_after_one and orphan not in r._stash

# 4. spawn errors name the command; cwd and env reach the child
try:
    reaper.spawn(["/no/such/binary"])
except reaper.SpawnError as e:
    out["spawn_error"] = str(e)
rd, wr = os.pipe()
pid = reaper.spawn(
    ["sh", "-c", 'echo "$PWD $PROBE"'], env={"PROBE": "yes", "PATH": "/usr/bin:/bin"}, cwd="/tmp", stdout=wr
)
os.close(wr)
r.register(pid, record)
out["cwd_env"] = os.read(rd, 100).decode().strip()
wait_exits({pid})
sys.stdout.write(orjson.dumps(out).decode())
