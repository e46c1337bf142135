"""The environment pypilot was started with, restored before anything reads it.

Python changes its own environment at start-up: with no locale set, PEP 538's locale coercion does
``setenv("LC_CTYPE", "C.UTF-8")``, and every job and template would then see a variable the container never
set (ContainerPilot adds nothing). The kernel's copy of the process's original environment,
``/proc/self/environ``, is not touched by ``setenv``: whatever ``os.environ`` holds beyond it, or holds
differently, was put there by the interpreter (or its launcher) and is put back as it was. Called once, first
thing in ``main()``, before any module copies ``os.environ``.
"""

from __future__ import annotations

import os

# what an interpreter or a bundler's launcher may set in its own process; never a user's choice when the
# original environment did not have it
_ADDED_BY_RUNTIME = ("LC_CTYPE", "LC_ALL", "LANG", "PYTHONHOME", "PYTHONPATH", "PYTHONEXECUTABLE",
                     "LD_LIBRARY_PATH", "LD_PRELOAD")  # fmt: skip
_ADDED_PREFIXES = ("_PYI_", "_MEIPASS", "__PYVENV_LAUNCHER__")


def original() -> dict[str, str] | None:
    """The environment this process was exec'd with, as the kernel keeps it; None where /proc is missing."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env.setdefault(os.fsdecode(key), os.fsdecode(value))
    return env


def restore() -> list[str]:
    """Undo what the runtime added to ``os.environ``; the names it removed or put back."""
    first = original()
    if first is None:
        return []
    changed = []
    for key in list(os.environ):
        if key in first:
            if os.environ[key] != first[key] and key in _ADDED_BY_RUNTIME:
                os.environ[key] = first[key]
                changed.append(key)
        elif key in _ADDED_BY_RUNTIME or key.startswith(_ADDED_PREFIXES):
            del os.environ[key]
            changed.append(key)
    return changed
