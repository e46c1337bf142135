"""Payload for the shutdown tests: ``escapees.py DIR KIND...`` starts one escapee per KIND, then
stays in the foreground as the job's own process.

KIND is ``setsid`` (a child in a new session) or ``dfork`` (double fork + setsid: its parent exits,
it is orphaned to PID 1), suffixed ``-ignore`` (SIGTERM ignored) or ``-delay`` (on SIGTERM it waits
0.2 s, then exits). The foreground process itself is ``main-ignore`` or ``main-delay`` (0.3 s) by the
``MAIN`` environment variable. Every process writes ``DIR/<name>.pid`` (its PID as it sees it) once
ready and, when it exits on SIGTERM, ``DIR/<name>.exit`` (``time.monotonic()`` just before _exit).
"""

import os
import signal
import sys
import time

out = sys.argv[1]


def write(name: str, text: str) -> None:
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(out, name))


def become(name: str, behaviour: str, delay: float) -> None:
    if behaviour == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:

        def on_term(*_: object) -> None:
            time.sleep(delay)
            write(name + ".exit", repr(time.monotonic()))
            os._exit(0)

        signal.signal(signal.SIGTERM, on_term)
    write(name + ".pid", str(os.getpid()))
    while True:
        time.sleep(1000)


for i, kind in enumerate(sys.argv[2:]):
    how, behaviour = kind.split("-")
    name = f"{i}-{kind}"
    if os.fork() == 0:
        os.setsid()
        if how == "dfork" and os.fork() != 0:
            os._exit(0)
        become(name, behaviour, 0.2)
        os._exit(0)
main = os.environ.get("MAIN", "main-delay")
become(main, main.split("-")[1], 0.3)
