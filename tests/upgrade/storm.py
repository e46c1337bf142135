"""An orphan storm the test fires when it wants: ``storm.py N``.

A middle process forks N children blocked on read() of a gate pipe and exits, so they are orphaned to
PID 1; this process keeps the gate's write end. SIGUSR1 closes it: the N children get EOF and exit at
once, N zombies for PID 1 to reap. The upgrade suite sends it at the moment PID 1 execs the new image,
so the exits land while no image is running. Then it waits for SIGTERM like any long-running job.
"""

import os
import signal
import sys

n = int(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    for _ in range(n):
        if os.fork() == 0:
            os.close(w)
            os.read(r, 1)  # EOF once the gate closes
            os._exit(0)
    os._exit(0)
os.close(r)
os.waitpid(middle, 0)  # our own child: orphans are made once it is gone
print(f"storm armed {n}", flush=True)
signal.sigwait({signal.SIGUSR1})
os.close(w)
print("storm released", flush=True)
while True:
    signal.pause()
