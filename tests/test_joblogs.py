"""A job's output to its own rotated file (``logging: {file, maxSize, keep, timestamps}``) and
``pypilot logs JOB [-n N] [-f]``, end to end with pypilot as PID 1 of a PID namespace (issue 16)."""
# ruff: noqa: E501 (shell scripts and literal messages read best on one line each)

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from pypilot.config import ConfigError, load
from tests.pid1 import Pilot, wait_for

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d) ")
LINE = 50  # bytes a numbered line takes, newline included


def numbered(count: int, then: str = "exec sleep 1000") -> list[str]:
    """A job that prints ``count`` lines of LINE bytes (``n-00042-xxx…``), then runs ``then``."""
    pad = "x" * (LINE - 9)
    return ["sh", "-c", f'i=0; while [ $i -lt {count} ]; do printf "n-%05d-{pad}\\n" $i; i=$((i+1)); done; {then}']


def cli(p: Pilot, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypilot", *args, "-socket", str(p.dir / "control.sock")],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def serving(p: Pilot) -> None:
    wait_for(lambda: (p.dir / "control.sock").exists(), 10, "the control socket")


def file_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def pilot_files(p: Pilot) -> set[str]:
    try:
        return {f.path for f in p.process().open_files()}
    except psutil.NoSuchProcess:
        return set()


@pytest.mark.timeout(60)
def test_output_rotates_by_size_keeping_the_newest_files_in_order(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    cfg = {"jobs": [{"name": "app", "exec": numbered(300),
                     "logging": {"file": str(log), "maxSize": "2KB", "keep": 3}}]}
    with Pilot(cfg) as p:
        wait_for(lambda: file_lines(log)[-1:] == [f"n-00299-{'x' * (LINE - 9)}"], 15, "the last line")
        names = sorted(f.name for f in tmp_path.iterdir())
        assert names == ["app.log", "app.log.1", "app.log.2", "app.log.3"]
        for f in ("app.log.1", "app.log.2", "app.log.3"):  # rotated before the line that would overflow
            assert 2048 - LINE < (tmp_path / f).stat().st_size <= 2048
        assert log.stat().st_size <= 2048
        kept = [ln for f in ("app.log.3", "app.log.2", "app.log.1", "app.log") for ln in file_lines(tmp_path / f)]
        numbers = [int(ln.split("-")[1]) for ln in kept]
        assert numbers == list(range(numbers[0], 300))  # contiguous, oldest file first, nothing lost
        assert numbers[0] > 0  # the oldest were rotated out: only `keep` files remain
        assert " app n-" not in p.log()  # the lines went to the file, not to pypilot's stdout


@pytest.mark.timeout(60)
def test_keep_0_truncates_the_one_file_instead_of_rotating(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    cfg = {"jobs": [{"name": "app", "exec": numbered(300), "logging": {"file": str(log), "maxSize": "2KB", "keep": 0}}]}
    with Pilot(cfg):
        wait_for(lambda: file_lines(log)[-1:] == [f"n-00299-{'x' * (LINE - 9)}"], 15, "the last line")
        assert [f.name for f in tmp_path.iterdir()] == ["app.log"]
        numbers = [int(ln.split("-")[1]) for ln in file_lines(log)]
        per_file = 2048 // LINE
        assert numbers == list(range(300 - 300 % per_file, 300))  # what came after the last truncation, all of it


@pytest.mark.timeout(60)
def test_timestamps_prefix_each_line_and_without_them_lines_are_raw(tmp_path: Path) -> None:
    stamped, raw = tmp_path / "stamped.log", tmp_path / "raw.log"
    cfg = {"jobs": [
        {"name": "a", "exec": ["sh", "-c", "echo one; echo 'two  words'; exec sleep 1000"],
         "logging": {"file": str(stamped), "timestamps": True}},
        {"name": "b", "exec": ["sh", "-c", "echo one; echo 'two  words'; exec sleep 1000"],
         "logging": {"file": str(raw)}},
    ]}
    with Pilot(cfg):
        wait_for(lambda: len(file_lines(stamped)) == 2 and len(file_lines(raw)) == 2, 10, "both files")
        lines = file_lines(stamped)
        assert all(STAMP.match(ln) for ln in lines), lines
        assert [STAMP.sub("", ln) for ln in lines] == ["one", "two  words"]
        assert file_lines(raw) == ["one", "two  words"]


@pytest.mark.timeout(60)
def test_sigusr1_reopens_a_job_log_that_was_moved_away(tmp_path: Path) -> None:
    log, moved, go = tmp_path / "app.log", tmp_path / "app.log.moved", tmp_path / "go"
    script = f"echo before; while [ ! -e {go} ]; do sleep 0.02; done; echo after; exec sleep 1000"
    cfg = {"jobs": [{"name": "app", "exec": ["sh", "-c", script], "logging": {"file": str(log)}}]}
    with Pilot(cfg) as p:
        wait_for(lambda: file_lines(log) == ["before"], 10, "the first line")
        log.rename(moved)  # what logrotate does
        p.signal(signal.SIGUSR1)
        wait_for(lambda: str(moved) not in pilot_files(p), 10, "pypilot to let go of the moved file")
        go.touch()
        wait_for(lambda: file_lines(log) == ["after"], 10, "the line after the reopen, in a new file")
        assert file_lines(moved) == ["before"]
        assert p.alive()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["not-a-dir", "/dev/full"])
def test_an_unwritable_log_file_is_said_once_and_pid1_goes_on(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    path = str(blocker / "app.log") if where == "not-a-dir" else where  # ENOTDIR at open; ENOSPC on write
    cfg = {"jobs": [{"name": "app", "exec": numbered(200), "logging": {"file": path}},
                    {"name": "other", "exec": ["sh", "-c", "echo other-is-fine; exec sleep 1000"]}]}
    with Pilot(cfg) as p:
        serving(p)
        wait_for(lambda: "n-00199" in cli(p, "logs", "app", "-n", "1").stdout, 15, "every line in the buffer")
        said = p.lines(f"app: log file {re.escape(path)}: ")
        assert len(said) == 1, p.log()
        assert ("cannot open it: not a directory" if where == "not-a-dir" else "no space left on device") in said[0]
        p.wait_log("other other-is-fine")
        assert p.alive() and p.process().status() != psutil.STATUS_ZOMBIE
        assert len(cli(p, "logs", "app").stdout.splitlines()) == 200  # kept for `pypilot logs` meanwhile


@pytest.mark.timeout(60)
def test_logs_prints_the_last_lines_and_follow_shows_new_ones(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = f"for i in 0 1 2 3 4 5 6 7 8 9; do echo l$i; done; while [ ! -e {go} ]; do sleep 0.02; done; " \
             "echo late; exec sleep 1000"
    cfg = {"jobs": [{"name": "app", "exec": ["sh", "-c", script]},
                    {"name": "tofile", "exec": ["sh", "-c", "echo in-file; exec sleep 1000"],
                     "logging": {"file": str(tmp_path / "f.log")}},
                    {"name": "raw", "exec": ["sh", "-c", "echo raw-out; exec sleep 1000"],
                     "logging": {"raw": True}}]}
    with Pilot(cfg) as p:
        serving(p)
        wait_for(lambda: cli(p, "logs", "app", "-n", "1").stdout == "l9\n", 10, "the tenth line")
        assert cli(p, "logs", "app", "-n", "3").stdout == "l7\nl8\nl9\n"
        assert cli(p, "logs", "app", "-n", "0").stdout == ""
        assert cli(p, "logs", "app").stdout == "".join(f"l{i}\n" for i in range(10))
        assert cli(p, "logs", "tofile").stdout == "in-file\n"  # a file job's lines are kept as well
        proc = cli(p, "logs", "raw")
        assert (proc.returncode, proc.stdout) == (0, "") and "logging.raw" in proc.stderr
        raw_follow = subprocess.Popen(
            [sys.executable, "-m", "pypilot", "logs", "raw", "-f", "-socket", str(p.dir / "control.sock")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert raw_follow.stderr is not None and "logging.raw is set" in raw_follow.stderr.readline()
        finally:
            raw_follow.kill()
            raw_follow.wait()
        proc = cli(p, "logs", "nosuch")
        assert proc.returncode == 1 and "no job named 'nosuch'" in proc.stderr
        follow = subprocess.Popen(
            [sys.executable, "-m", "pypilot", "logs", "app", "-n", "2", "-f", "-socket", str(p.dir / "control.sock")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert follow.stdout is not None
            assert [follow.stdout.readline(), follow.stdout.readline()] == ["l8\n", "l9\n"]
            go.touch()  # a line written after -f started
            assert follow.stdout.readline() == "late\n"
            follow.send_signal(signal.SIGINT)
            assert follow.wait(10) == 130
        finally:
            follow.kill()
            follow.wait()
        # the follower's leaving (unfollow) does not stop the next one from following
        again = subprocess.Popen(
            [sys.executable, "-m", "pypilot", "logs", "app", "-n", "1", "-f", "-socket", str(p.dir / "control.sock")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert again.stdout is not None and again.stdout.readline() == "late\n"
        finally:
            again.kill()
            again.wait()
        assert cli(p, "logs", "app", "-n", "1").stdout == "late\n"


@pytest.mark.timeout(60)
def test_the_buffer_is_bounded_in_lines_and_in_bytes(tmp_path: Path) -> None:
    long_line = "y" * 999
    cfg = {"jobs": [{"name": "many", "exec": numbered(3000)},
                    {"name": "long", "exec": ["sh", "-c", f"i=0; while [ $i -lt 600 ]; do echo $i-{long_line}; "
                                              "i=$((i+1)); done; exec sleep 1000"]}]}
    with Pilot(cfg) as p:
        serving(p)
        wait_for(lambda: "n-02999" in cli(p, "logs", "many", "-n", "1").stdout, 20, "the last short line")
        lines = cli(p, "logs", "many").stdout.splitlines()
        assert len(lines) == 1000  # BUFFER_LINES
        assert [int(ln.split("-")[1]) for ln in lines] == list(range(2000, 3000))
        wait_for(lambda: cli(p, "logs", "long", "-n", "1").stdout.startswith("599-"), 20, "the last long line")
        lines = cli(p, "logs", "long").stdout.splitlines()
        assert sum(len(ln) + 1 for ln in lines) <= 256 << 10  # BUFFER_BYTES
        assert 200 < len(lines) < 600 and lines[-1].startswith("599-")
        assert [int(ln.split("-")[0]) for ln in lines] == list(range(600 - len(lines), 600))


# --- the config --------------------------------------------------------------------------------------


def _load(tmp_path: Path, logging: Any, **job: Any) -> Any:
    import orjson

    path = tmp_path / "c.json5"
    path.write_text(orjson.dumps({"consul": "localhost:8500", "jobs": [
        {"name": "web", "exec": "true", "logging": logging, **job}]}).decode())
    return load(str(path)).jobs[0]


def test_a_cp_config_without_the_keys_logs_as_before(tmp_path: Path) -> None:
    assert _load(tmp_path, {"raw": False}).log is None
    job = _load(tmp_path, {"file": "/var/log/a.log"})
    assert (job.log.file, job.log.max_size, job.log.keep, job.log.timestamps) == ("/var/log/a.log", 10 << 20, 5,
                                                                                 False)
    job = _load(tmp_path, {"file": "/x", "maxSize": "1.5MB", "keep": 0, "timestamps": True})
    assert (job.log.max_size, job.log.keep, job.log.timestamps) == (3 << 19, 0, True)
    assert _load(tmp_path, {"file": "/x", "maxSize": 0}).log.max_size == 0
    assert _load(tmp_path, {"file": "/x", "maxSize": "512KiB"}).log.max_size == 512 << 10


@pytest.mark.parametrize(("logging", "expected"), [
    ({"file": "/x", "maxSize": "10 parsecs"}, "job[web].logging.maxSize '10 parsecs' invalid"),
    ({"file": "/x", "maxSize": -1}, "job[web].logging.maxSize '-1' invalid"),
    ({"file": "/x", "keep": -1}, "job[web].logging.keep '-1' invalid"),
    ({"file": "/x", "keep": 1.5}, "job[web].logging.keep '1.5' invalid"),
    ({"file": "/x", "timestamps": "yes"}, "job[web].logging.timestamps 'yes' invalid"),
    ({"file": "relative.log"}, "job[web].logging.file 'relative.log' must be an absolute path"),
    ({"file": ""}, "job[web].logging.file must be set"),
    ({"maxSize": "1MB"}, "job[web].logging.file must be set"),
    ({"file": "/x", "raw": True}, "job[web].logging.file cannot be used with job[web].logging.raw"),
    ({"file": "/x", "rotate": True}, "invalid keys: rotate"),
])
def test_bad_logging_values_are_config_errors_naming_the_job_and_field(
        tmp_path: Path, logging: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, logging)
    assert expected in str(e.value)


def test_the_logs_route_refuses_bad_parameters_and_unknown_jobs(tmp_path: Path) -> None:
    import orjson

    from tests.control.harness import http

    with Pilot({"jobs": [{"name": "app", "exec": ["sh", "-c", "echo hi; exec sleep 1000"]}]}) as p:
        serving(p)
        sock = str(p.dir / "control.sock")
        wait_for(lambda: orjson.loads(http(sock, "GET", "/v3/jobs/app/logs")[2])["lines"], 10, "the line")
        code, _, body = http(sock, "GET", "/v3/jobs/app/logs?n=1")
        data = orjson.loads(body)
        assert (code, data["job"], data["raw"], [e["line"] for e in data["lines"]]) == (200, "app", False, ["hi"])
        assert data["lines"][0]["seq"] == 1 and data["lines"][0]["time"] > 0
        for query, why in (("n=-1", "n must be a whole number >= 0, not '-1'"),
                           ("n=abc", "n must be a whole number >= 0, not 'abc'"),
                           ("follow=maybe", "follow must be 1/true or 0/false, not 'maybe'")):
            code, headers, body = http(sock, "GET", f"/v3/jobs/app/logs?{query}")
            assert (code, orjson.loads(body), headers["x-pypilot-error"]) == (422, {"error": why}, why)
        for query in ("", "?follow=1"):
            code, _, body = http(sock, "GET", f"/v3/jobs/nosuch/logs{query}")
            assert (code, orjson.loads(body)) == (404, {"error": "no job named 'nosuch'"})
        code, headers, _ = http(sock, "POST", "/v3/jobs/app/logs")
        assert code == 405 and headers["allow"] == "GET, HEAD"
