"""In-place upgrade (issue #17): PID 1 goes on as the pypilot at another path, in the same process.

``Upgrader`` is PID 1's side. A request (``-upgrade PATH``, ``POST /v3/upgrade``) is checked first: PATH
runs as a child, through the reaper like any other, in its check mode (``-upgrade-check``, with the
state on fd 3) and must answer ``upgrade-check: ok`` on stdout and exit 0, or the request is refused
and nothing changed. Then the state is captured again (``handover.capture``), written to a memfd, the
fds it names are made inheritable, and PID 1 execs PATH with the same arguments and the state's fd in
``PYPILOT_UPGRADE_FD``. Every job stays a child across the exec; an exit in the meantime stays a
zombie until the new image reaps it. Signals stay blocked across the exec (the mask survives; the new
image makes its own signalfd, and what was pending is still pending).

``resume`` is the new image's start: it takes the state over and confirms (the ``resumed`` line, the
``upgrades`` count). If anything fails before that (an exception anywhere, or the test hook
``PYPILOT_UPGRADE_FAIL=exec``), it execs the previous image back with the same state and the reason
(``rollback``); that one resumes and records ``last_upgrade.ok = false``. ``check_main`` is the check
mode (``PYPILOT_UPGRADE_FAIL=check`` makes it fail: another test hook). The format: docs/upgrade.md.
"""

from __future__ import annotations

import os
import sys
import time

from pypilot import handover, logs, reaper
from pypilot.handover import ENV_FD, HandoverError

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pypilot.config.model import Config
    from pypilot.supervisor import Supervisor

    Reply = Callable[[int, Any], None]

ENV_FAIL = "PYPILOT_UPGRADE_FAIL"  # test hook, read by the target: "check" or "exec" makes it fail there
CHECK_FLAG = "-upgrade-check"
CHECK_OK = "upgrade-check: ok"
CHECK_TIMEOUT = 10.0
QUIET_WAIT = 0.05  # s after a short interval's tick the exec may wait for that tick's run to exit
CHECK_FD = 3  # where the check finds the state
MAX_CHECK_OUTPUT = 64 << 10


def self_argv() -> list[str]:
    """How to exec this image again: its launcher, or ``python -m pypilot`` when run that way."""
    argv0 = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if argv0 and not argv0.endswith(".py") and os.access(argv0, os.X_OK):
        return [argv0]
    return [sys.executable, "-m", "pypilot"]


def self_path() -> str:
    return " ".join(self_argv())


class Upgrader:
    """PID 1's record of upgrades (``status()``: the ``pypilot`` section) and the one in progress."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.started = sup.started  # the first start of PID 1: kept across upgrades
        self.upgrades = 0
        self.last: dict[str, Any] | None = None
        self.busy = ""  # the path being checked or exec'd
        self._out = bytearray()
        self._check_pipe = self._check_state = -1

    def status(self) -> dict[str, Any]:
        from pypilot import __version__

        return {"version": __version__, "path": self_path(), "started": self.started,
                "upgrades": self.upgrades, "last_upgrade": self.last}

    # --- the request: check, then exec ------------------------------------------------------------

    def start(self, path: str, reply: Reply) -> None:
        if self.busy:  # the one in progress keeps its record
            logs.error(f"upgrade: refused: an upgrade to {self.busy} is in progress")
            reply(422, {"error": f"an upgrade to {self.busy} is in progress"})
            return
        why = self._not_now(path)
        if why:
            self._refuse(reply, why, path)
            return
        logs.info(f"upgrade: checking {path}")
        self.busy = path
        try:
            self._spawn_check(path, reply)
        except Exception as e:  # OSError from the spawn; anything else is ours to report, not to die of
            self._end_check()
            self._refuse(reply, f"cannot run {path}: {e}", path)

    def _not_now(self, path: str) -> str:
        if self.sup.shutting_down:
            return "pypilot is shutting down"
        if self.sup.reloading:
            return "a reload is in progress"
        if not os.path.isabs(path):
            return f"{path}: the path must be absolute"
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            return f"{path}: not an executable file"
        return ""

    def _refuse(self, reply: Reply, why: str, path: str) -> None:
        """Nothing changed: the refusal is answered, logged and kept as the last upgrade (not ok)."""
        self.busy = ""
        self.last = {"at": time.time(), "from": self_path(), "to": path, "ok": False, "message": why}
        logs.error(f"upgrade: refused: {why}")
        reply(422, {"error": why})

    def _meta(self, path: str) -> dict[str, Any]:
        return {
            "from_argv": self_argv(), "from": self_path(), "to": path, "args": sys.argv[1:],
            "environ": dict(os.environ), "started": self.started, "upgrades": self.upgrades,
            "last_upgrade": self.last, "at": time.time(), "rollback": None,
        }

    def _spawn_check(self, path: str, reply: Reply) -> None:
        state, _fds = handover.capture(self.sup, self._meta(path))
        self._check_state = handover.write_fd(state)
        rd, wr = os.pipe2(os.O_CLOEXEC)
        self._check_pipe = rd
        os.set_blocking(rd, False)
        self._out = bytearray()
        env = {**os.environ, ENV_FD: str(CHECK_FD)}
        since = self.sup.reaper.generation
        try:
            pid = reaper.spawn([path, CHECK_FLAG, *sys.argv[1:]], env=env, stdout=wr, stderr=wr,
                               pass_fd=(self._check_state, CHECK_FD))
        finally:
            os.close(wr)
        loop = self.sup.loop
        loop.add_reader(rd, self._read_check)
        timer = loop.call_later(CHECK_TIMEOUT, lambda: _kill(pid))
        self.sup.reaper.register(pid, lambda _pid, status: self._checked(path, status, reply, timer),
                                 since=since)

    def _read_check(self) -> None:
        try:
            chunk = os.read(self._check_pipe, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.sup.loop.remove_reader(self._check_pipe)
        elif len(self._out) < MAX_CHECK_OUTPUT:
            self._out += chunk

    def _end_check(self) -> str:
        """Close the check's pipe and state; what it printed."""
        if self._check_pipe >= 0:
            self._read_check()
            self.sup.loop.remove_reader(self._check_pipe)
            os.close(self._check_pipe)
        if self._check_state >= 0:
            os.close(self._check_state)
        self._check_pipe = self._check_state = -1
        return self._out.decode("utf-8", "replace")

    def _checked(self, path: str, status: int, reply: Reply, timer: Any) -> None:
        timer.cancel()
        try:
            out = self._end_check()
        except OSError as e:  # the pipe or the memfd: the check's word is lost with it
            self._refuse(reply, f"{path}: reading its check failed: {e}", path)
            return
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if self.sup.shutting_down or self.sup.reloading:  # since the check started
            self._refuse(reply, f"pypilot began a {'shutdown' if self.sup.shutting_down else 'reload'}", path)
            return
        if status == 0 and CHECK_OK in lines:
            reply(202, {"upgrading": True, "to": path})
            at = self._quiet_moment()
            self.sup.loop.call_at(at, lambda: self._exec_when_quiet(path, at + QUIET_WAIT))  # after the reply
            return
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9:
            why = f"{path}: its check did not answer within {CHECK_TIMEOUT:g}s"
        elif status == 0 or not lines:
            said = f"its check said nothing of {CHECK_OK!r}; {reaper.describe(status)}"
            why = f"{path} is not a pypilot ({said})"
        else:
            why = f"{path}: check failed ({reaper.describe(status)}): {lines[-1]}"
        self._refuse(reply, why, path)

    def _quiet_moment(self) -> float:
        """Just after the next tick of a short interval job: the exec then delays no tick by more than
        it takes (rather than the interval plus that), when it takes less than the interval none."""
        ticks = [t for t in (job.next_tick() for job in self.sup.jobs) if t is not None]
        return min(ticks) + 0.002 if ticks else 0.0

    def _exec_when_quiet(self, path: str, until: float) -> None:
        """Exec once the tick's run has exited, up to ``until``: a run still going through the exec and
        the new image's start (CPU they share) can overrun a short interval's timeout and lose its tick."""
        busy = any(job.next_tick() is not None and job.command is not None and job.command.running
                   for job in self.sup.jobs)
        if busy and self.sup.loop.now() < until:
            self.sup.loop.call_later(0.002, lambda: self._exec_when_quiet(path, until))
            return
        self._exec(path)

    def _exec(self, path: str) -> None:
        """Hand over and become ``path``; a failed exec is a refusal, recorded, and nothing changed."""
        if self.sup.shutting_down or self.sup.reloading:
            self._failed(path, "pypilot began a shutdown or a reload after the check")
            return
        fds: list[int] = []
        fd = -1
        try:
            state, fds = handover.capture(self.sup, self._meta(path))
            state["fds"] = fds
            fd = handover.write_fd(state)
            for keep in fds:
                os.set_inheritable(keep, True)
            env = {**os.environ, ENV_FD: str(fd)}
            logs.info(f"upgrade: exec {path}")
            logs.flush()
            os.execve(path, [path, *sys.argv[1:]], env)
        except Exception as e:  # the exec failed (ENOENT, EACCES, ENOEXEC), or the capture: nothing changed
            for keep in fds:
                os.set_inheritable(keep, False)
            if fd >= 0:
                os.close(fd)
            why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            self._failed(path, f"exec {path}: {why}")

    def _failed(self, path: str, why: str) -> None:
        self.busy = ""
        logs.error(f"upgrade: refused: {why}")
        self.last = {"at": time.time(), "from": self_path(), "to": path, "ok": False, "message": why}

    # --- the new image -----------------------------------------------------------------------------

    def resumed(self, state: dict[str, Any]) -> None:
        """Confirm: this image has taken ``state`` over (or, after a rollback, taken it back)."""
        self.started = self.sup.started = float(state["started"])
        self.upgrades = int(state["upgrades"])
        njobs = len(state["jobs"])
        last = {"at": state["at"], "from": state["from"], "to": state["to"]}
        if state["rollback"]:
            why = state["rollback"]
            self.last = {**last, "ok": False, "message": why}
            logs.error(f"upgrade: rolled back to {self_path()}: {why}")
            return
        self.upgrades += 1
        took = round((time.monotonic() - float(state["captured_at"])) * 1000, 1)
        self.last = {**last, "ok": True, "handover_ms": took,
                     "message": f"resumed {njobs} jobs (state v{state['format']}), {took:.0f} ms after exec"}
        logs.info(f"upgrade: resumed from {state['from']} (state v{state['format']}, {njobs} jobs)")


def _kill(pid: int) -> None:
    reaper.kill_group(pid, 9)


def _config(state: dict[str, Any], exec_argv: list[str] | None) -> Config:
    from pypilot.config import load

    if exec_argv:
        from pypilot.config.tini import command_config

        return command_config(exec_argv)
    return load(state["config_path"])


def _take_state_fd() -> dict[str, Any]:
    """The state from the inherited fd, which is closed and its variable removed (jobs never see it)."""
    from pypilot.process import unsetenv

    fd = int(os.environ[ENV_FD])
    unsetenv(ENV_FD)
    try:
        return handover.load(handover.read_fd(fd))
    finally:
        os.close(fd)


def resume(sigfd: int, exec_argv: list[str] | None) -> int:
    """The exec'd image's run: take the state over, confirm, run; roll back on any failure first."""
    try:
        state = _take_state_fd()
    except (OSError, ValueError, KeyError) as e:
        logs.fatal_early(f"upgrade: cannot read the handed-over state: {e}")
        return 1
    sup: Supervisor | None = None  # kept referenced until a rollback's exec: its sockets hold inherited fds
    try:
        if not state["rollback"] and os.environ.get(ENV_FAIL) == "exec":
            raise RuntimeError(f"{ENV_FAIL}=exec (test hook)")
        config = _config(state, exec_argv)
        logs.configure(config.logging.level, config.logging.format, config.logging.output)
        from pypilot.supervisor import Supervisor

        sup = Supervisor(config, sigfd)
        handover.restore(sup, state)
    except Exception as e:
        why = str(e) if isinstance(e, HandoverError | RuntimeError) else f"{type(e).__name__}: {e}"
        if state["rollback"]:  # nowhere left to go back to: run what could be taken over
            logs.log(logs.FATAL, f"upgrade: the previous image cannot take its state back either: {why}")
        else:
            _rollback(state, why)
        if sup is None:
            return 1
    for fd in state.get("fds", []):  # ours again: no job may inherit them
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
    sup.upgrader.resumed(state)
    return sup.run(resumed=True)


def _rollback(state: dict[str, Any], why: str) -> None:
    """Exec the previous image with the same state and the reason; returns only if that exec failed."""
    logs.error(f"upgrade: failed after exec, going back to {state['from']}: {why}")
    logs.flush()
    state = {**state, "rollback": why}
    fd = handover.write_fd(state)
    for keep in state.get("fds", []):
        try:
            os.set_inheritable(keep, True)
        except OSError:
            pass
    argv = [*state["from_argv"], *state["args"]]
    try:
        os.execve(argv[0], argv, {**state["environ"], ENV_FD: str(fd)})
    except OSError as e:
        logs.log(logs.FATAL, f"upgrade: cannot exec the previous image {argv[0]} back: {e}")


def check_main(exec_argv: list[str] | None) -> int:
    """The check mode, in the target: can this pypilot take the state on fd 3 over with the config?"""
    try:
        if os.environ.get(ENV_FAIL) == "check":
            raise HandoverError(f"{ENV_FAIL}=check (test hook)")
        state = _take_state_fd()
        from pypilot.supervisor import Supervisor

        handover.check(state, Supervisor(_config(state, exec_argv), -1))
    except Exception as e:
        sys.stdout.write(f"refused: {e}\n")
        return 1
    from pypilot import __version__

    sys.stdout.write(f"{CHECK_OK}\nversion {__version__}, state format {handover.FORMAT}\n")
    return 0
