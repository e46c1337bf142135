"""process.py's environment helpers (#15): a job's PID variable and -putenv values go into
``os.environ``, which every spawn's environment is built from, never through C's setenv (glibc keeps
every value ever set, so PID 1 grew with each restart)."""

from __future__ import annotations

import ctypes
import os

from pypilot import reaper
from pypilot.process import setenv, unsetenv


def c_getenv(key: str) -> bytes | None:
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    value: bytes | None = libc.getenv(key.encode())
    return value


def test_setenv_reaches_os_environ_and_spawns_but_not_the_c_environment() -> None:
    key = "PYPILOT_TEST_SETENV"
    try:
        setenv(key, "v1")
        setenv(key, "v2")
        assert os.environ[key] == "v2" and os.getenv(key) == "v2"
        assert c_getenv(key) is None  # glibc never saw it: nothing of it is kept
        rd, wr = os.pipe()
        pid = reaper.spawn(["sh", "-c", f'printf %s "${key}"'], stdout=wr)
        os.close(wr)
        out = b""
        while chunk := os.read(rd, 100):
            out += chunk
        os.close(rd)
        os.waitpid(pid, 0)  # the test process is not pypilot: its own child, its own wait
        assert out == b"v2"
        unsetenv(key)
        assert key not in os.environ and c_getenv(key) is None
        unsetenv(key)  # unsetting what is not set is no error
    finally:
        os.environ.pop(key, None)
