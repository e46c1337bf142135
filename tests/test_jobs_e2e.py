"""The job model end to end, pypilot as PID 1: ContainerPilot's integration tests (§11) and the
beyond-CP features, with real processes, signals and log lines."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time

import psutil

from tests.pid1 import Pilot, wait_for


def stamp(line: str) -> float:
    """The time of a default-format log line (RFC3339Nano, UTC), in seconds."""
    from datetime import datetime

    head = line.split(" ", 1)[0].rstrip("Z")
    whole, _, frac = head.partition(".")
    return datetime.fromisoformat(whole).timestamp() + float(f"0.{frac or 0}")


def test_tasks_cp() -> None:
    """CP test_tasks: counted restarts, exec timeouts killing the group, an interval task."""
    jobs = [
        {
            "name": "task1",
            "exec": ["sh", "-c", "sleep 0.2; echo task1 ran"],
            "timeout": "500ms",
            "restarts": "5",
        },
        {"name": "task3", "exec": ["sleep", "2"], "timeout": "100ms", "restarts": 5},
        {
            "name": "task4",
            "exec": ["sh", "-c", "echo task4 ran at $(date +%s)"],
            "when": {"interval": "1000ms"},
        },
    ]
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": jobs}) as p:
        p.wait_log(r"task1 task1 ran", count=6)
        p.wait_log(r"task4 task4 ran", count=2)
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        assert len(p.lines(r"task1 task1 ran")) == 6
        assert not p.lines(r"task1 timeout")
        assert len(p.lines(r"task3 timeout after 100ms: '\[2\]'")) == 6
        assert len(p.lines(r"task3 exited with error: signal: killed")) == 6
        starts = [stamp(line) for line in p.lines(r" task4\.Run start$")]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(starts) >= 2 and min(gaps) > 0.9, gaps  # at most one run a second (when it started)


def test_sighup_and_sigusr2_fire_their_jobs_cp() -> None:
    """CP test_sighup: signals are event sources, not reloads or shutdowns."""
    jobs = [
        {"name": "app", "exec": "sleep 1000"},
        {
            "name": "on-sighup",
            "exec": ["echo", "on-sighup job fired on SIGHUP"],
            "when": {"source": "SIGHUP"},
        },
        {
            "name": "on-sigusr2",
            "exec": ["echo", "on-sigusr2 job fired on SIGUSR2"],
            "when": {"source": "SIGUSR2"},
        },
    ]
    with Pilot({"jobs": jobs}) as p:
        app = wait_for(lambda: p.children(), 10, "app running")[0]
        p.signal(signal.SIGHUP)
        p.wait_log(r"on-sighup job fired on SIGHUP")
        p.signal(signal.SIGUSR2)
        p.wait_log(r"on-sigusr2 job fired on SIGUSR2")
        p.signal(signal.SIGHUP)
        p.wait_log(r"on-sighup job fired on SIGHUP", count=2)
        assert app.is_running() and p.alive()


def test_sigterm_runs_prestop_and_poststop_cp() -> None:
    """CP test_sigterm: on `docker stop` the preStop and postStop hooks run, in order."""
    jobs = [
        {"name": "app", "exec": "sleep 1000", "restarts": "unlimited"},
        {
            "name": "preStop",
            "exec": ["echo", "preStop fired on app stopping"],
            "when": {"source": "app", "once": "stopping"},
        },
        {
            "name": "postStop",
            "exec": ["echo", "postStop fired on app stopped"],
            "when": {"source": "app", "once": "stopped"},
        },
    ]
    with Pilot({"jobs": jobs}) as p:
        wait_for(lambda: p.children(), 10, "app running")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        log = p.log()
        assert log.index("preStop fired on app stopping") < log.index("postStop fired on app stopped")


def test_reopen_log_file_on_sigusr1_cp(tmp_path: object) -> None:
    """CP test_reopen: after logrotate moves the file, SIGUSR1 makes pypilot open a new one."""
    log = os.path.join(str(tmp_path), "containerpilot.log")
    jobs = [{"name": "hello", "exec": ["echo", "hello world!"], "when": {"interval": "200ms"}}]
    with Pilot({"logging": {"output": log}, "jobs": jobs}) as p:
        wait_for(
            lambda: os.path.exists(log) and "hello world" in open(log).read(), 10, "lines in the log file"
        )
        os.rename(log, log + ".1")
        size = os.path.getsize(log + ".1")
        wait_for(lambda: os.path.getsize(log + ".1") > size, 10, "lines going to the moved file")
        p.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(log) and "hello world" in open(log).read(), 10, "a new log file")


def test_envvars_pid_of_a_running_job_cp() -> None:
    """CP test_envvars (no Consul): CONTAINERPILOT_<JOB>_PID is set while the job runs, for later spawns."""
    jobs = [
        {"name": "testpid", "exec": "sleep 30", "health": {"exec": "true", "interval": 1, "ttl": 5}},
        {"name": "testenvvar", "exec": "env", "when": {"source": "testpid", "once": "healthy"}},
    ]
    with Pilot({"jobs": jobs}) as p:
        pid_line = p.wait_log(r"testenvvar CONTAINERPILOT_TESTPID_PID=\d+")[0]
        sleeper = next(c for c in p.children() if c.name() == "sleep")
        ns_pid = open(f"/proc/{sleeper.pid}/status").read().split("NSpid:")[1].split("\n")[0].split()[-1]
        assert pid_line.rsplit("=", 1)[1] == ns_pid
        assert p.lines(r"testenvvar CONTAINERPILOT_PID=1$")


def test_logging_formats_cp() -> None:
    """CP test_logging: DEBUG text format, wrapped and raw job and health output."""
    jobs = [
        {"name": "job1", "exec": ["echo", "job1 exec"]},
        {"name": "job2", "exec": ["echo", "job2 exec"], "logging": {"raw": True}},
        {
            "name": "job3",
            "exec": "sleep 100",
            "health": {"exec": ["echo", "job3 health"], "interval": 1, "ttl": 5, "logging": {"raw": True}},
        },
        {
            "name": "job4",
            "exec": "sleep 100",
            "health": {"exec": ["echo", "job4 health"], "interval": 1, "ttl": 5},
        },
    ]
    with Pilot({"logging": {"level": "DEBUG", "format": "text"}, "jobs": jobs}) as p:
        p.wait_log(r'msg="job4 health')
        p.wait_log(r"^job3 health")
        assert p.lines(r"loaded config:")
        assert p.lines(r'msg="job1 exec')
        assert p.lines(r"^job2 exec")


def test_json_log_format_has_sorted_keys() -> None:
    import orjson

    with Pilot({"logging": {"format": "json"}, "jobs": [{"name": "j", "exec": ["echo", "hi"]}]}) as p:
        assert p.wait_exit() == 0
        records = [orjson.loads(line) for line in p.log().splitlines() if line.startswith("{")]
        hi = next(r for r in records if r["msg"] == "hi")
        assert list(hi) == sorted(hi) and hi["job"] == "j" and hi["level"] == "info"


def test_health_worker_killed_is_replaced_and_checks_go_on() -> None:
    jobs = [{"name": "app", "exec": "sleep 1000", "health": {"exec": "true", "interval": 1, "ttl": 5}}]
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": jobs}) as p:
        p.wait_log(r"\{StatusHealthy app\}")
        for round_ in range(3):
            worker = wait_for(
                lambda: [c for c in p.children() if c.name() != "sleep"], 10, "the health worker"
            )[0]
            os.kill(worker.pid, signal.SIGKILL)
            p.wait_log(r"worker health \(pid \d+\) died: signal: killed", count=round_ + 1)
            healthy_before = len(p.lines(r"\{StatusHealthy app\}"))
            p.wait_log(r"\{StatusHealthy app\}", count=healthy_before + 1)
        assert p.alive() and not p.zombies()


def test_http_and_tcp_health_checks() -> None:
    port = 18000 + os.getpid() % 1000
    web = {
        "name": "web",
        "exec": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        "health": {"http": f"http://127.0.0.1:{port}/", "interval": 1, "ttl": 5},
    }
    tcp = {
        "name": "tcp",
        "exec": "sleep 1000",
        "health": {"tcp": f"127.0.0.1:{port}", "interval": 1, "ttl": 5},
    }
    down = {"name": "down", "exec": "sleep 1000", "health": {"tcp": "127.0.0.1:1", "interval": 1, "ttl": 5}}
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": [web, tcp, down]}) as p:
        p.wait_log(r"\{StatusHealthy web\}")
        p.wait_log(r"\{StatusHealthy tcp\}")
        p.wait_log(r"\{StatusUnhealthy down\}")
        assert p.lines(r"check.down failed: ConnectionRefusedError")


def test_main_job_exit_code_becomes_pypilot_exit_code() -> None:
    jobs = [
        {"name": "main", "exec": ["sh", "-c", "exit 3"], "main": True},
        {"name": "other", "exec": "sleep 1000"},
    ]
    with Pilot({"jobs": jobs}) as p:
        assert p.wait_exit() == 3
        assert p.lines(r"main job main ended with exit code 3; shutting down")


def test_main_job_killed_by_sigterm_remapped_to_zero() -> None:
    jobs = [{"name": "main", "exec": "sleep 1000", "main": True, "exitCodeMap": {"143": 0}}]
    with Pilot({"jobs": jobs}) as p:
        wait_for(lambda: p.children(), 10, "main running")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
    with Pilot({"jobs": [{"name": "main", "exec": "sleep 1000", "main": True}]}) as p:
        wait_for(lambda: p.children(), 10, "main running")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 143


def test_per_job_stop_signal() -> None:
    """supervisord's stopsignal, CP #208: a Resque-style worker stops on SIGQUIT."""
    script = "trap 'echo got QUIT; exit 0' QUIT; trap '' TERM; echo ready; while :; do sleep 0.05; done"
    jobs = [{"name": "resque", "exec": ["sh", "-c", script], "stopSignal": "SIGQUIT"}]
    with Pilot({"stopTimeout": 5, "jobs": jobs}) as p:
        p.wait_log(r"resque ready")
        start = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        assert p.lines(r"resque got QUIT")
        assert time.monotonic() - start < 3


def test_zero_jobs_sigterm_exits_at_once() -> None:
    """CP bug: with no jobs SIGTERM hung until SIGKILL."""
    with Pilot({"jobs": []}) as p:
        wait_for(lambda: psutil.Process(p.host_pid).status() == psutil.STATUS_SLEEPING, 10, "pypilot idle")
        start = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        assert time.monotonic() - start < 1


def test_coprocess_cp() -> None:
    """CP test_coprocess: `restarts: 1` restarts once after a kill and not after the second; a reload that
    changes the job's exec starts it again with the new argument and a fresh count, so it restarts again."""
    import subprocess
    import sys

    import orjson

    def coprocess(arg: str) -> list[psutil.Process]:
        out = []
        for c in p.children():
            try:
                if c.cmdline() == ["sleep", arg]:
                    out.append(c)
            except psutil.Error:
                pass
        return out

    jobs = [
        {"name": "coprocess", "exec": ["sleep", "1001"], "restarts": 1},
        {"name": "keeper", "exec": "sleep 1000"},
    ]
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": jobs}) as p:
        first = wait_for(lambda: coprocess("1001"), 10, "the coprocess")[0]
        first.terminate()
        second = wait_for(lambda: [c for c in coprocess("1001") if c.pid != first.pid], 10, "a restart")[0]
        second.terminate()
        p.wait_log(r"\{Stopped coprocess\}")
        assert not coprocess("1001")
        cfg = orjson.loads(p.config_path.read_bytes())
        cfg["jobs"][0]["exec"] = ["sleep", "1002"]
        p.config_path.write_bytes(orjson.dumps(cfg))
        reload = subprocess.run(
            [sys.executable, "-m", "pypilot", "-reload", "-config", str(p.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reload.returncode == 0, reload.stderr
        third = wait_for(lambda: coprocess("1002"), 10, "the coprocess with its new argument")[0]
        third.terminate()
        wait_for(
            lambda: [c for c in coprocess("1002") if c.pid != third.pid], 10, "a restart after the reload"
        )


def test_main_job_exit_code_remapped_logs_both_codes() -> None:
    """#21: after exitCodeMap the log said `exit code 3` while pypilot exited 0."""
    jobs = [{"name": "main", "exec": ["sh", "-c", "exit 3"], "main": True, "exitCodeMap": {"3": 0}}]
    with Pilot({"jobs": jobs}) as p:
        assert p.wait_exit() == 0
        assert p.lines(r"main job main ended with exit code 3 \(pypilot exits 0: exitCodeMap\); shutting")
