"""Forks N children blocked on a pipe, then exits: they are orphaned to PID 1 and, as the pipe's
last writer goes with the parent, all released at once (a reap storm)."""

import os
import sys

n = int(sys.argv[1])
r, w = os.pipe()
for _ in range(n):
    if os.fork() == 0:
        os.close(w)
        os.setpgid(0, 0)  # out of the job's group: CP-style SIGTERM to the group must not be what ends us
        os.read(r, 1)  # EOF once the parent (the last writer) has exited
        os._exit(0)
os.close(r)
print(f"forked {n}", flush=True)
