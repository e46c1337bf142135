"""The event stream follows the bus live; per-job signal/stop/start/restart act on a real job."""

from __future__ import annotations

import signal

import orjson
import psutil

from tests.control.harness import ControlPilot, EventStream, wait_for

TRAP = {
    "name": "trap",
    "exec": ["sh", "-c", "trap 'echo trap got HUP' HUP; while :; do sleep 0.05; done"],
    "restarts": "unlimited",
}
SHORT = {"name": "short", "exec": ["sh", "-c", "exit 3"], "when": {"source": "never", "once": "healthy"}}


def test_event_stream_shows_job_exit_live() -> None:
    with ControlPilot(jobs=[TRAP, SHORT]) as p, EventStream(p.socket) as stream:
        assert stream.headers["content-type"] == "text/event-stream"
        code, _ = p.json("POST", "/v3/jobs/short/start")
        assert code == 200
        ev = stream.wait_event(lambda d: d["source"] == "short" and d["code"] == "exitFailed")
        assert ev["event"] == "exitFailed" and ev["data"]["name"] == "ExitFailed" and int(ev["id"]) > 0
        stream.wait_event(lambda d: d["code"] == "error" and d["source"].startswith("short"))
        # metrics and maintenance are bus events too
        p.http("POST", "/v3/metric", '{"k": 2.0}')
        assert stream.wait_event(lambda d: d["code"] == "metric")["data"]["source"] == "k|2"
        p.http("POST", "/v3/maintenance/enable")
        stream.wait_event(lambda d: d["code"] == "enterMaintenance")
        # a second stream sees the same events; closing one leaves the other running
        with EventStream(p.socket) as second:
            p.http("POST", "/v3/maintenance/disable")
            second.wait_event(lambda d: d["code"] == "exitMaintenance")
            stream.wait_event(lambda d: d["code"] == "exitMaintenance")
        p.http("POST", "/v3/maintenance/enable")
        stream.wait_event(lambda d: d["code"] == "enterMaintenance")


def test_job_signal_stop_start_restart() -> None:
    with ControlPilot(jobs=[TRAP, SHORT]) as p:
        pid = wait_for(lambda: p.job("trap")["pid"], 10, "trap running")
        # the shell runs its first sleep only once the trap is set: a HUP before that would kill it
        wait_for(lambda: psutil.Process(pid).children(), 10, "the trap set (the loop's first sleep)")
        code, data = p.json("POST", "/v3/jobs/trap/signal", {"signal": "SIGHUP"})
        assert code == 200 and data["job"]["pid"] == pid
        wait_for(lambda: "trap got HUP" in p.log(), 10, "the job's trap ran")
        assert p.job("trap")["pid"] == pid  # a trapped HUP does not end it
        for sig in ("hup", "HUP", int(signal.SIGHUP)):
            assert p.json("POST", "/v3/jobs/trap/signal", {"signal": sig})[0] == 200
        # bad requests: 4xx with a message, no effect
        for body, want in (
            (None, 400),
            ({"signal": "SIGNOPE"}, 422),
            ({"signal": 0}, 422),
            ({"signal": 999}, 422),
            ({}, 422),
            ([], 422),
            ({"signal": None}, 422),
            ({"signal": True}, 422),
        ):
            code, data = p.json("POST", "/v3/jobs/trap/signal", body)
            assert code == want and data["error"], (body, code, data)
        code, data = p.json("POST", "/v3/jobs/nope/signal", {"signal": "HUP"})
        assert code == 404 and "nope" in data["error"]
        assert p.job("trap")["pid"] == pid and p.job("trap")["runs"] == 1

        code, data = p.json("POST", "/v3/jobs/trap/restart")
        assert code == 200
        new = wait_for(lambda: (j := p.job("trap"))["pid"] not in (None, pid) and j["pid"], 10, "restarted")
        assert p.job("trap")["backoffUntil"] is None

        code, data = p.json("POST", "/v3/jobs/trap/stop")
        assert code == 200 and data["signalled"] is True
        wait_for(lambda: p.job("trap")["state"] == "held", 10, "held after stop")
        assert p.job("trap")["pid"] is None
        code, data = p.json("POST", "/v3/jobs/trap/signal", {"signal": "HUP"})
        assert code == 409  # nothing running to signal

        code, data = p.json("POST", "/v3/jobs/trap/start")
        assert code == 200
        third = wait_for(lambda: p.job("trap")["pid"], 10, "started again")
        assert third not in (pid, new)
        code, data = p.json("POST", "/v3/jobs/trap/start")
        assert code == 409 and "already running" in data["error"]


def test_job_start_409_says_which_of_the_three() -> None:
    """#21: the 409 said "already running, has completed, or has no exec"; it names the one."""
    jobs = [{**TRAP}, {"name": "once", "exec": ["true"]}, {"name": "noexec"}]
    with ControlPilot(jobs=jobs) as p:
        pid = wait_for(lambda: p.job("trap")["pid"], 10, "trap running")
        wait_for(lambda: p.job("once")["state"] == "completed", 10, "once completed")
        for name, want in (
            ("trap", f"job 'trap' is already running (pid {pid})"),
            ("once", "job 'once' cannot be started: it has completed"),
            ("noexec", "job 'noexec' cannot be started: it has no exec"),
        ):
            code, headers, body = p.http("POST", f"/v3/jobs/{name}/start")
            error = orjson.loads(body)["error"]
            assert code == 409 and error.startswith(want), (name, error)
            assert headers["x-pypilot-error"] == error
        code, data = p.json("POST", "/v3/jobs/noexec/restart")
        assert code == 409 and data["error"] == "job 'noexec' cannot be restarted: it has no exec"
        assert p.job("trap")["pid"] == pid and p.job("once")["runs"] == 1
