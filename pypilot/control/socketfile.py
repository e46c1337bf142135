"""The control socket's file: who serves it now, and binding it (stdlib only, cheap enough for
start-up: ``__main__`` asks ``served_by`` before any job runs).

A second supervisor started on the socket a running pypilot serves (a typo for a subcommand, issue
#21) must not take it over: it would run every job a second time and, when it exits, remove the file
the running one is reached by. So the file is taken over only when nothing answers on it (a socket
left by a killed pypilot, or a plain file).
"""

from __future__ import annotations

import errno
import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


def served_by(path: str) -> int | None:
    """The pid of the process listening on ``path`` (0 if it is not visible from here), or None when
    nobody is: no file, not a socket, or a stale one."""
    import _socket  # not ``socket``: its import costs start-up ~5 ms, this one ~0.3

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except BlockingIOError:  # the listen backlog is full: someone is serving it, busily
            return 0
        except OSError:  # refused (stale), no file, not a socket; or EACCES: binding will say so
            return None
        try:  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
            creds = s.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
            return int.from_bytes(creds[:4], sys.byteorder)
        except OSError:
            return 0
    finally:
        s.close()


class InUse(OSError):
    """Another live process serves the socket."""


def in_use_message(path: str, pid: int) -> str:
    who = f"another pypilot (pid {pid})" if pid > 0 else "another pypilot"
    return (
        f"{who} is serving the control socket {path}: not starting a second supervisor on it "
        "(to talk to the running one, use a subcommand: pypilot status, pypilot -ping …)"
    )


def bind(path: str, mode: int, backlog: int) -> socket.socket:
    """A listening socket at ``path`` with ``mode``: a stale file replaced, a live one refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{path} is a directory")
        pid = served_by(path)
        if pid is not None:
            raise InUse(errno.EADDRINUSE, in_use_message(path, pid))
        os.unlink(path)  # stale socket of an earlier run (CP removes it too)
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)  # never world-accessible, not even between bind and chmod
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
