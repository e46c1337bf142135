"""A job that speaks the sd_notify protocol on $NOTIFY_SOCKET, step by step from its arguments:

``send:TEXT`` (``\\n`` for a newline) sends TEXT from this process, after printing ``sending TEXT``;
``sleep:S``; ``until:PATH`` waits for PATH to exist (the test decides when);
``ping:S`` sends WATCHDOG=1 every S seconds, for good; ``detached:TEXT`` sends TEXT from a child
that left the job's process group (setsid), then keeps that child alive; ``mainpid:TEXT`` does the same
after naming that child in ``MAINPID=``; ``forever`` sleeps until killed.
"""

import os
import socket
import sys
import time


def send(text: str) -> None:
    text = text.replace("\\n", "\n")
    print(f"sending {text!r}", flush=True)
    path = os.environ["NOTIFY_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(text.encode(), path)


def detached(text: str, name_it: bool) -> None:
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.close(wr)
        os.read(rd, 1)  # the parent has sent MAINPID (or not)
        send(text)
        time.sleep(60)
        os._exit(0)
    os.close(rd)
    if name_it:
        send(f"MAINPID={pid}")
    os.write(wr, b"x")


for step in sys.argv[1:]:
    kind, _, arg = step.partition(":")
    if kind == "send":
        send(arg)
    elif kind == "sleep":
        time.sleep(float(arg))
    elif kind == "until":
        while not os.path.exists(arg):
            time.sleep(0.02)
    elif kind == "ping":
        while True:
            send("WATCHDOG=1")
            time.sleep(float(arg))
    elif kind in ("detached", "mainpid"):
        detached(arg, kind == "mainpid")
    elif kind == "forever":
        while True:
            time.sleep(3600)
