"""A job's process environment (issue #16), pypilot as PID 1: ``user``, ``group``, ``workdir``,
``umask``, ``rlimits``, ``noNewPrivileges`` and ``ppidShim``, asserted on what the job itself sees
(``/proc/self/status``, ``id``, ``ulimit``, ``umask``, its cwd and parent) and on how its start fails.

The test user lives in this test only: pypilot runs in its own mount namespace (``unshare --mount-proc``)
with copies of /etc/passwd and /etc/group bind-mounted over the real ones (unshare makes mounts private),
so nothing on the machine changes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.pid1 import Pilot, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid, PID namespaces)")

UID, GID, EXTRA_GID = 4321, 4321, 4400
SHOW = (
    "grep -E '^(Uid|Gid|Groups|NoNewPrivs):' /proc/self/status; id; echo nofile=$(ulimit -n):$(ulimit -Hn); "
    "echo core=$(ulimit -c); echo umask=$(umask); echo cwd=$(pwd); "
    "echo HOME=$HOME USER=$USER LOGNAME=$LOGNAME; "
    "echo ppid=$PPID parent=$(cat /proc/$PPID/comm); echo done"
)


class UsersPilot(Pilot):
    """pypilot as PID 1 with a test user ``ppuser`` (4321, also in group ``ppextra`` 4400)."""

    def config_text(self, config: dict[str, Any] | str) -> str:
        home = self.dir / "home"
        home.mkdir()
        os.chown(home, UID, GID)
        etc = self.dir / "etc"
        etc.mkdir()
        (etc / "passwd").write_text(Path("/etc/passwd").read_text()
                                    + f"ppuser:x:{UID}:{GID}:pypilot test:{home}:/bin/sh\n")
        (etc / "group").write_text(Path("/etc/group").read_text()
                                   + f"ppuser:x:{GID}:\nppextra:x:{EXTRA_GID}:ppuser\n")
        self.dir.chmod(0o755)  # the user's home is in here
        return super().config_text(config)

    def command(self, args: list[str]) -> list[str]:
        inner = " ".join(super().command(args))
        etc = self.dir / "etc"
        return ["sh", "-c", f"mount --bind {etc}/passwd /etc/passwd && mount --bind {etc}/group /etc/group "
                            f"&& exec {inner}"]


def seen(p: Pilot, job: str) -> dict[str, str]:
    """What ``SHOW`` printed in ``job``: its lines by their first word (``Uid:``, ``uid=…``, ``umask=``)."""
    p.wait_log(rf" {job} done$")
    out: dict[str, str] = {}
    for line in p.lines(rf" {job} "):
        text = line.split(f" {job} ", 1)[1]
        key = re.split(r"[:=\t ]", text, maxsplit=1)[0]
        out.setdefault(key, text)
    return out


def show_job(name: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "exec": ["sh", "-c", SHOW], **keys}


def test_user_runs_with_its_groups_from_etc_group_and_home_user_logname() -> None:
    jobs = [show_job("app", user="ppuser"), show_job("plain")]
    with UsersPilot({"jobs": jobs}) as p:
        app, plain = seen(p, "app"), seen(p, "plain")
        assert app["Uid"] == f"Uid:\t{UID}\t{UID}\t{UID}\t{UID}"
        assert app["Gid"] == f"Gid:\t{GID}\t{GID}\t{GID}\t{GID}"
        assert sorted(app["Groups"].split()[1:]) == [str(GID), str(EXTRA_GID)]
        assert app["uid"] == f"uid={UID}(ppuser) gid={GID}(ppuser) groups={GID}(ppuser),{EXTRA_GID}(ppextra)"
        assert app["HOME"] == f"HOME={p.dir / 'home'} USER=ppuser LOGNAME=ppuser"
        # a job without the keys is started as ContainerPilot started it: root, PID 1's environment
        assert plain["Uid"] == "Uid:\t0\t0\t0\t0"
        assert plain["HOME"] == f"HOME={os.environ.get('HOME', '')} USER={os.environ.get('USER', '')} " \
                                f"LOGNAME={os.environ.get('LOGNAME', '')}"
        assert plain["ppid"].startswith("ppid=1 ")
        assert plain["NoNewPrivs"] == "NoNewPrivs:\t0"


def test_uid_gid_numbers_and_the_group_key_override_the_primary_group() -> None:
    jobs = [show_job("num", user=f"{UID}:{EXTRA_GID}"), show_job("grp", user="ppuser", group="ppextra"),
            show_job("nobody", user="65534")]
    with UsersPilot({"jobs": jobs}) as p:
        num, grp, nobody = seen(p, "num"), seen(p, "grp"), seen(p, "nobody")
        assert num["Uid"].split()[1:] == [str(UID)] * 4 and num["Gid"].split()[1:] == [str(EXTRA_GID)] * 4
        assert grp["uid"].startswith(f"uid={UID}(ppuser) gid={EXTRA_GID}(ppextra)")
        assert grp["Gid"].split()[1:] == [str(EXTRA_GID)] * 4
        assert nobody["Uid"].split()[1:] == ["65534"] * 4
        assert "groups=" in nobody["uid"] and "(root)" not in nobody["uid"]  # root's groups are dropped


def test_limits_umask_workdir_and_no_new_privileges_are_what_the_job_sees() -> None:
    jobs = [show_job("app", user="ppuser", workdir="/tmp", umask="027", noNewPrivileges=True,
                     rlimits={"nofile": "256:512", "core": 0}),
            show_job("root", rlimits={"nofile": 100})]
    with UsersPilot({"jobs": jobs}) as p:
        app, root = seen(p, "app"), seen(p, "root")
        assert app["nofile"] == "nofile=256:512"
        assert app["core"] == "core=0"
        assert app["umask"] == "umask=0027"
        assert app["cwd"] == "cwd=/tmp"
        assert app["NoNewPrivs"] == "NoNewPrivs:\t1"
        assert root["nofile"] == "nofile=100:100"  # a number sets both
        assert root["Uid"] == "Uid:\t0\t0\t0\t0"


def test_exec_health_check_runs_as_the_jobs_user() -> None:
    jobs = [{"name": "app", "exec": "sleep 1000", "user": "ppuser",
             "health": {"exec": ["sh", "-c", "echo check-as=$(id -un):$(id -gn):$USER"], "interval": 1,
                        "ttl": 5}}]
    with UsersPilot({"jobs": jobs}) as p:
        line = p.wait_log(r"check\.app check-as=")[0]
        assert line.endswith("check-as=ppuser:ppuser:ppuser")


def test_unknown_user_or_group_is_a_config_error_naming_the_job() -> None:
    with UsersPilot({"jobs": [show_job("app", user="nosuchuser")]}) as p:
        assert p.wait_exit() == 1
        assert "job[app].user 'nosuchuser' invalid: no such user in /etc/passwd" in p.log()
    with UsersPilot({"jobs": [show_job("web", user="ppuser", group="nosuchgroup")]}) as p:
        assert p.wait_exit() == 1
        assert "job[web].group 'nosuchgroup' invalid: no such group in /etc/group" in p.log()


def test_a_step_that_fails_in_the_child_fails_that_start_not_pypilot() -> None:
    jobs = [show_job("nodir", user="ppuser", workdir="/nonexistent-dir"),
            show_job("limit", rlimits={"nofile": 1 << 40}),
            show_job("fine"), {"name": "keep", "exec": "sleep 1000"}]
    with UsersPilot({"jobs": jobs}) as p:
        p.wait_log(r"unable to start nodir: sh: chdir /nonexistent-dir: no such file or directory")
        p.wait_log(r"unable to start limit: sh: setrlimit nofile: operation not permitted")
        seen(p, "fine")
        assert p.alive()


def test_workdir_the_user_may_not_enter_fails_the_start(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    tmp_path.chmod(0o755)
    jobs = [show_job("app", user="ppuser", workdir=str(private)), {"name": "keep", "exec": "sleep 1000"}]
    with UsersPilot({"jobs": jobs}) as p:
        p.wait_log(rf"unable to start app: sh: chdir {private}: permission denied")
        assert p.alive()


# --- ppidShim --------------------------------------------------------------------------------------

# Counts deliveries of SIGTERM and of SIGRTMIN+1 (a real-time signal: two deliveries never merge into
# one) through the wakeup fd, which gets one byte per delivery; prints each count once TERM came.
COUNT = (
    "import os, select, signal, sys, time\n"
    "RT = signal.SIGRTMIN + 1\n"
    "r, w = os.pipe(); os.set_blocking(w, False); signal.set_wakeup_fd(w)\n"
    "for s in (signal.SIGTERM, RT): signal.signal(s, lambda s, f: None)\n"
    "signal.signal(signal.SIGUSR1, lambda s, f: print('usr1', flush=True))\n"
    "print('ready', os.getppid(), flush=True)\n"
    "seen = b''\n"
    "while True:\n"
    "    seen += os.read(r, 64)\n"
    "    if bytes([RT]) in seen:\n"
    "        end = time.monotonic() + 0.5  # a second delivery would arrive in here\n"
    "        while (left := end - time.monotonic()) > 0:\n"
    "            if select.select([r], [], [], left)[0]: seen += os.read(r, 64)\n"
    "        print('rt', seen.count(bytes([RT])), flush=True); seen = seen.replace(bytes([RT]), b'')\n"
    "    if bytes([signal.SIGTERM]) in seen: break\n"
    "print('term', flush=True)\n"
    "sys.exit(7)\n"
)


def test_ppid_shim_parent_is_not_pid1_and_exit_status_passes_through() -> None:
    jobs = [show_job("app", ppidShim=True, user="ppuser"),
            {"name": "main", "exec": ["sh", "-c", "sleep 2; exit 3"], "ppidShim": True, "main": True}]
    with UsersPilot({"jobs": jobs}) as p:
        app = seen(p, "app")
        ppid = int(app["ppid"].split()[0].split("=")[1])
        assert ppid != 1 and app["ppid"].endswith("parent=ppid-shim")
        assert app["Uid"].split()[1:] == [str(UID)] * 4  # the job has the user; its shim stays root
        assert p.wait_exit() == 3


def test_ppid_shim_death_by_signal_is_reported_as_the_jobs() -> None:
    jobs = [{"name": "main", "exec": ["sh", "-c", "kill -USR2 $$"], "ppidShim": True, "main": True}]
    with Pilot({"jobs": jobs}) as p:
        assert p.wait_exit() == 128 + signal.SIGUSR2
        assert p.lines(r"main exited with error: signal: user defined signal 2")


def test_ppid_shim_passes_on_a_signal_to_its_pid_but_a_group_signal_reaches_the_job_once() -> None:
    jobs = [{"name": "app", "exec": [sys.executable, "-c", COUNT], "ppidShim": True, "main": True}]
    with Pilot({"jobs": jobs}) as p:
        ready = p.wait_log(r" app ready ")[0]
        assert ready.split()[-1] != "1"
        shim = next(c for c in p.children() if c.name() == "ppid-shim")
        job = shim.children()[0]
        assert job.pid != shim.pid and os.getpgid(job.pid) == shim.pid  # one group, the shim leads it
        os.kill(shim.pid, signal.SIGUSR1)  # aimed at the PID pypilot knows: reaches the job
        p.wait_log(r" app usr1$")
        # pypilot signals the group (the control API's `job signal`): the shim must not add a second one
        ctl = subprocess.run([sys.executable, "-m", "pypilot", "-socket", str(p.dir / "control.sock"), "job",
                              "app", "signal", str(int(signal.SIGRTMIN) + 1)],
                             capture_output=True, text=True, timeout=30, cwd=Pilot.ROOT)
        assert ctl.returncode == 0, ctl.stderr
        assert p.wait_log(r" app rt ")[0].endswith("rt 1")
        p.signal(signal.SIGTERM)  # shutdown: the stop signal goes to the group
        p.wait_log(r" app term$")
        assert p.wait_exit() == 7  # the job's own code, through the shim
        assert p.lines(r" app rt ") == [p.lines(r" app rt ")[0]]


def test_ppid_shim_group_stop_reaches_the_job_and_its_children() -> None:
    script = "trap 'echo stopped-by-term; exit 0' TERM; sleep 1000 & sleep 1000 & wait"
    jobs = [{"name": "app", "exec": ["sh", "-c", script], "ppidShim": True, "stopTimeout": "20s"}]
    with Pilot({"jobs": jobs, "stopTimeout": 30}) as p:
        shim = wait_for(lambda: next((c for c in p.children() if c.name() == "ppid-shim"), None), 10,
                        "the shim")

        def sleepers() -> list[psutil.Process]:
            return [d for d in shim.children(recursive=True) if d.name() == "sleep"]

        found = wait_for(lambda: len(sleepers()) == 2 and sleepers(), 10, "two sleepers")
        assert {os.getpgid(s.pid) for s in found} == {shim.pid}
        p.signal(signal.SIGTERM)
        assert p.wait_exit(timeout=10) == 0  # well within the 20 s grace: no SIGKILL was needed
        assert p.lines(r" app stopped-by-term$")
        for s in (shim, *found):
            assert not s.is_running() or s.status() == psutil.STATUS_ZOMBIE


class NobodyPilot(Pilot):
    """pypilot itself running as nobody (an image with ``USER nobody``), as a subreaper."""

    def config_text(self, config: dict[str, Any] | str) -> str:
        self.dir.chmod(0o777)  # nobody creates the control socket in here
        return super().config_text(config)

    def command(self, args: list[str]) -> list[str]:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *super().command(args)]


def test_a_pypilot_that_is_not_root_runs_a_job_as_itself_and_fails_another_users_start() -> None:
    jobs = [show_job("same", user="nobody", umask="077"), show_job("other", user="4242"),
            {"name": "keep", "exec": "sleep 1000"}]
    with NobodyPilot({"jobs": jobs}, pid1=False) as p:
        same = seen(p, "same")
        assert same["Uid"].split()[1:] == ["65534"] * 4 and same["umask"] == "umask=0077"
        p.wait_log(r"unable to start other: sh: setgroups: operation not permitted")
        assert p.alive()
