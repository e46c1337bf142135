"""A process pypilot never targets: it counts every catchable signal it gets into a file, and never
forks (so PID exhaustion in a tiny namespace cannot end it the way it ends a shell loop)."""

import os
import signal
import sys

count, pidfile = sys.argv[1], sys.argv[2]


def counted(signo: int, _frame: object) -> None:
    with open(count, "a") as f:
        f.write(f"{signo}\n")


for sig in (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTERM,
    signal.SIGALRM,
):
    signal.signal(sig, counted)
with open(pidfile, "w") as f:
    f.write(str(os.getpid()))
while True:
    signal.pause()
