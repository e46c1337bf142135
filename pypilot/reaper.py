"""The one owner of every ``wait`` in pypilot, and the thin wrapper over the C hot path.

Everything pypilot spawns is spawned here (``spawn``) and every exit status of every child comes
back through ``Reaper.drain``, dispatched by PID to whoever registered it. Nothing else in the
process may wait on a child: a second waiter would race this one and turn real exit codes into 0
or hangs (CP #178/#222, bpo-15756). Statuses of PIDs nobody has registered yet are kept for a
while, so a registration that comes after the exit still gets it.

PIDs are reused, and fast in a small namespace, so two rules keep a status with its own process: a
batch's handlers are all looked up before any of them runs (a handler that spawns may get a PID reaped
in the same batch), and a kept status goes only to a registration whose spawn came before the drain
that reaped it (``since``: the ``generation`` read before spawning); an older one belongs to an
earlier process with that number and is dropped.
"""

from __future__ import annotations

import os

from pypilot import logs
from pypilot._reaper import ffi, lib

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    from collections import OrderedDict
    from collections.abc import Callable, Mapping, Sequence
else:  # the C OrderedDict itself: collections' own import (~2 ms) is not needed before the first spawn
    from _collections import OrderedDict

BATCH = 256
STASH_MAX = 4096  # unclaimed statuses kept (orphans mostly); oldest dropped first
# ... and for this many drains only: every registration follows its spawn at once, so an older status is
# an orphan's that nobody will claim. Kept until STASH_MAX, they grew PID 1 by ~0.23 KiB a reload (#15).
STASH_DRAINS = 64

if TYPE_CHECKING:
    ExitHandler = Callable[[int, int], None]  # (pid, wait status)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def setup_signals() -> int:
    """Block every asynchronous signal in this (still single-threaded) process; return a signalfd."""
    return _check(lib.pp_signals_setup(), "signalfd")


_sig_buf = ffi.new("int[]", 64)
_sender_buf = ffi.new("int[]", 64)


def read_signals(fd: int) -> list[tuple[int, int]]:
    """Every pending (signal number, sending PID) on the signalfd, oldest first."""
    out: list[tuple[int, int]] = []
    while True:
        n = _check(lib.pp_signals_read(fd, _sig_buf, _sender_buf, 64), "read signalfd")
        out.extend((_sig_buf[i], _sender_buf[i]) for i in range(n))
        if n < 64:
            return out


def set_subreaper() -> None:
    _check(lib.pp_set_subreaper(), "prctl(PR_SET_CHILD_SUBREAPER)")


def malloc_tune(mmap_threshold: int, arena_max: int) -> bool:
    """mallopt for a threaded worker; False where the libc cannot (musl), which only costs memory."""
    return bool(lib.pp_malloc_tune(mmap_threshold, arena_max) == 0)


def malloc_trim() -> bool:
    """Hand the heap's free pages back to the kernel (glibc's ``malloc_trim(0)``): True if some went."""
    return bool(lib.pp_malloc_trim() > 0)


class SpawnError(OSError):
    """The command could not be started; the message names it. ``stage`` says which step before the
    exec failed (``setuid 1000``, ``chdir /srv``, ``setrlimit nofile``); "" for the exec itself."""

    stage = ""


# the config's name of an RLIMIT_* number, for a refused limit's message (resource is imported only then)
def _rlimit_name(res: int) -> str:
    import resource

    for name in dir(resource):
        if name.startswith("RLIMIT_") and getattr(resource, name) == res:
            return name[len("RLIMIT_"):].lower()
    return str(res)


def _stage_text(stage: str, cwd: str | None) -> str:
    what, _, num = stage.partition(" ")
    if what == "setrlimit" and num.isdigit():
        return f"setrlimit {_rlimit_name(int(num))}"
    if what == "chdir":
        return f"chdir {cwd}"
    if what == "no_new_privs":
        return "prctl(PR_SET_NO_NEW_PRIVS)"
    if what == "dup2":
        return f"dup2 onto fd {num}"
    return stage


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: int = -1,
    stdout: int = -1,
    stderr: int = -1,
    new_group: bool = True,
    *,
    uid: int | None = None,
    gid: int | None = None,
    groups: Sequence[int] | None = None,
    umask: int | None = None,
    rlimits: Sequence[tuple[int, int, int]] = (),
    no_new_privs: bool = False,
    ppid_shim: bool = False,
    tty_fd: int = -1,
    pass_fd: tuple[int, int] | None = None,
) -> int:
    """Start ``argv`` (looked up in PATH) in a new process group; return its PID.

    Stdio fds of -1 are inherited. The child gets an empty signal mask and default dispositions.
    The keyword options are applied in the child before exec (credentials: ``groups`` are set, then
    ``gid``, then ``uid``; ``rlimits`` are ``(RLIMIT_*, soft, hard)`` with -1 for unlimited; ``tty_fd``:
    that terminal's foreground group becomes the child's; ``pass_fd``: ``(fd, target)``, ``fd`` put at
    ``target`` in the child). Without any of them the child is started by
    posix_spawnp; with one, by the C clone path; a failure of either is a ``SpawnError`` for this start.
    """
    if not argv:
        import errno  # here and below, on the paths that need it: errno's table is ~0.25 M instructions

        raise SpawnError(errno.EINVAL, "empty command")
    env = os.environ if env is None else env
    args = [ffi.new("char[]", os.fsencode(a)) for a in argv]
    envs = [ffi.new("char[]", os.fsencode(k) + b"=" + os.fsencode(v)) for k, v in env.items()]
    c_argv = ffi.new("char *[]", [*args, ffi.NULL])
    c_envp = ffi.new("char *[]", [*envs, ffi.NULL])
    c_cwd = ffi.new("char[]", os.fsencode(cwd)) if cwd else ffi.NULL
    pid = ffi.new("int *")
    plain = (uid is None and gid is None and groups is None and umask is None and not rlimits
             and not no_new_privs and not ppid_shim and tty_fd < 0 and pass_fd is None)
    if plain:  # the hot path, unchanged
        ret = lib.pp_spawn(args[0], c_argv, c_envp, c_cwd, stdin, stdout, stderr, int(new_group), pid)
        if ret < 0:
            err = SpawnError(-ret, os.strerror(-ret), argv[0])
            if cwd and (why := _cwd_unusable(cwd)):  # posix_spawn fails a chdir as it fails an exec
                err = SpawnError(why, f"chdir {cwd}: {os.strerror(why)}", argv[0])
                err.stage = f"chdir {cwd}"
            raise err
        return int(pid[0])
    opts = _SpawnOptions(uid, gid, groups, umask, rlimits, no_new_privs, ppid_shim, tty_fd, pass_fd)
    return _spawn_ex(args[0], c_argv, c_envp, c_cwd, (stdin, stdout, stderr), new_group, opts, argv[0], cwd)


def _cwd_unusable(cwd: str) -> int:
    """The errno a chdir into ``cwd`` would fail with (0: it would not), asked only after a failed spawn."""
    import errno

    if not os.path.isdir(cwd):
        return errno.ENOTDIR if os.path.exists(cwd) else errno.ENOENT
    return 0 if os.access(cwd, os.X_OK) else errno.EACCES  # root passes: only a non-root pypilot is refused


class _SpawnOptions:
    """What the clone path applies in the child before exec (see ``spawn``)."""

    __slots__ = ("gid", "groups", "no_new_privs", "pass_fd", "ppid_shim", "rlimits", "tty_fd", "uid", "umask")

    def __init__(
        self,
        uid: int | None,
        gid: int | None,
        groups: Sequence[int] | None,
        umask: int | None,
        rlimits: Sequence[tuple[int, int, int]],
        no_new_privs: bool,
        ppid_shim: bool,
        tty_fd: int,
        pass_fd: tuple[int, int] | None,
    ) -> None:
        self.uid, self.gid, self.groups, self.umask, self.rlimits = uid, gid, groups, umask, rlimits
        self.no_new_privs, self.ppid_shim = no_new_privs, ppid_shim
        self.tty_fd, self.pass_fd = tty_fd, pass_fd


def _spawn_ex(
    file: object,
    c_argv: object,
    c_envp: object,
    c_cwd: object,
    stdio: tuple[int, int, int],
    new_group: bool,
    o: _SpawnOptions,
    argv0: str,
    cwd: str | None,
) -> int:
    """The clone path: the options set in the child; a failed step is a ``SpawnError`` naming it."""
    pid = ffi.new("int *")
    ext = ffi.new("struct pp_spawn_ext *")
    ext.uid = -1 if o.uid is None else o.uid
    ext.gid = -1 if o.gid is None else o.gid
    c_groups = ffi.new("unsigned int[]", list(o.groups or ()) or [0])
    ext.ngroups = -1 if o.groups is None else len(o.groups)
    ext.groups = c_groups
    ext.umask = -1 if o.umask is None else o.umask
    c_res = ffi.new("int[]", [r[0] for r in o.rlimits] or [0])
    c_soft = ffi.new("long long[]", [r[1] for r in o.rlimits] or [0])
    c_hard = ffi.new("long long[]", [r[2] for r in o.rlimits] or [0])
    ext.nrlimits = len(o.rlimits)
    ext.rlimit_res, ext.rlimit_soft, ext.rlimit_hard = c_res, c_soft, c_hard
    ext.no_new_privs = int(o.no_new_privs)
    ext.ppid_shim = int(o.ppid_shim)
    ext.tty_fd = o.tty_fd
    ext.pass_fd, ext.pass_target = o.pass_fd if o.pass_fd is not None else (-1, -1)
    ret = lib.pp_spawn_ex(file, c_argv, c_envp, c_cwd, *stdio, int(new_group), ext, pid)
    if ret < 0:
        stage = ffi.string(ext.stage).decode()
        if stage in ("", "exec"):
            raise SpawnError(-ret, os.strerror(-ret), argv0)
        err = SpawnError(-ret, f"{_stage_text(stage, cwd)}: {os.strerror(-ret)}", argv0)
        err.stage = _stage_text(stage, cwd)
        raise err
    return int(pid[0])


def pidfd_open(pid: int) -> int:
    """A pidfd for ``pid``, or -1 where the kernel has none (it is only an optimisation)."""
    ret = lib.pp_pidfd_open(pid)
    return ret if ret >= 0 else -1


def kill_group(pgid: int, sig: int, pidfd: int = -1) -> bool:
    """Signal a process group; False when it no longer exists (ESRCH is not an error here)."""
    import errno

    ret = lib.pp_kill_group(pgid, sig, pidfd)
    if ret == -errno.ESRCH:
        return False
    _check(ret, f"kill group {pgid}")
    return True


def kill(pid: int, sig: int) -> bool:
    import errno

    ret = lib.pp_kill(pid, sig)
    if ret == -errno.ESRCH:
        return False
    _check(ret, f"kill {pid}")
    return True


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def describe(status: int) -> str:
    """CP's wording for an exit (``exit status 1``, ``signal: killed``)."""
    if os.WIFSIGNALED(status):
        import _signal  # the C module, not signal: signal.py builds IntEnums (enum: ~3 M instructions)

        sig = os.WTERMSIG(status)
        try:
            name = _signal.strsignal(sig) or str(sig)
        except ValueError:
            name = str(sig)
        return f"signal: {name.lower()}"
    return f"exit status {os.WEXITSTATUS(status)}"


class Reaper:
    """Drains exits and dispatches each status to the handler registered for its PID."""

    def __init__(self) -> None:
        self._handlers: dict[int, ExitHandler] = {}
        self._stash: OrderedDict[int, tuple[int, int]] = OrderedDict()  # pid -> (status, generation)
        self.generation = 0  # drains so far: read it before a spawn, pass it to register
        self._pids = ffi.new("int[]", BATCH)
        self._statuses = ffi.new("int[]", BATCH)
        self.orphans_reaped = 0

    def register(
        self, pid: int, handler: ExitHandler, group_signal: int = 0, since: int | None = None
    ) -> None:
        """Route ``pid``'s exit to ``handler``. With ``group_signal``, its group gets that signal
        at the moment it exits, while it is still unreaped (CP sends SIGTERM to leftovers).
        ``since``: ``generation`` before the spawn; older kept statuses are another process's."""
        kept = self._stash.pop(pid, None)
        if kept is not None and (since is None or kept[1] > since):
            handler(pid, kept[0])  # it exited and was reaped before this registration
            return
        if group_signal:
            _check(lib.pp_hold(pid, group_signal), "hold")
        self._handlers[pid] = handler

    def unregister(self, pid: int) -> None:
        self._handlers.pop(pid, None)
        lib.pp_release(pid)

    def drain(self) -> int:
        """Reap every child that has exited (no cap: a storm is drained in one call)."""
        total = 0
        while True:
            self.generation += 1
            n = _check(lib.pp_reap(self._pids, self._statuses, BATCH), "waitid")
            calls = []
            for i in range(n):  # every lookup before any handler runs (a handler may spawn)
                pid, status = self._pids[i], self._statuses[i]
                handler = self._handlers.pop(pid, None)
                if handler is not None:
                    calls.append((handler, pid, status))
                else:
                    self._keep(pid, status)
            for handler, pid, status in calls:
                try:
                    handler(pid, status)
                except Exception as e:  # one failing handler must not lose the rest of the batch
                    logs.exception(f"exit handler for pid {pid} failed", e)
            total += n
            if n < BATCH:
                self._forget_old()
                return total

    def _forget_old(self) -> None:
        stash, oldest = self._stash, self.generation - STASH_DRAINS
        while stash and next(iter(stash.values()))[1] < oldest:
            stash.popitem(last=False)

    def _keep(self, pid: int, status: int) -> None:
        self.orphans_reaped += 1
        self._stash[pid] = (status, self.generation)
        self._stash.move_to_end(pid)
        if len(self._stash) > STASH_MAX:
            self._stash.popitem(last=False)
        logs.debug(f"reaped orphan {pid}: {describe(status)}")
