"""Soak (issue 9): for 60 s in CI (10 minutes with ``-m slow``) pypilot as PID 1 restarts a churning
job, runs health checks (one passing, one failing), a periodic job, and takes control calls through
the real CLI in a loop: ``-ping``, ``status --json``, ``-putenv`` and ``-reload`` with two alternating
configs (a job changed each time). PID 1's RSS, open fds and thread count are sampled every round;
their least-squares slopes, once a minute of the same traffic has filled the churning job's bounded line
buffer (RSS rises to a plateau in it), must be about flat, and zombies must not grow.
Nothing is lost: every control call succeeds, every reload applies, the churning job's exits in the
log match the runs the status API counts, and the last putenv value reaches the jobs."""

from __future__ import annotations

import signal
import time
from typing import Any

import orjson
import pytest

from pypilot import joblogs
from tests.pid1 import Pilot
from tests.reliability.harness import Sample, cli, control, jobs, sample, slope

MiB = 1 << 20


def config(variant: int, p_dir: str | None = None) -> dict[str, Any]:
    """Config A or B; ``p_dir`` given, the keys ``tests.pid1.Pilot`` adds (the same control socket)."""
    extra = {"consul": "localhost:8500", "control": {"socket": f"{p_dir}/control.sock"}} if p_dir else {}
    return {
        **extra,
        "logging": {"level": "DEBUG"},
        "stopTimeout": 5,
        "jobs": [
            {"name": "churn", "exec": ["sh", "-c", 'echo "n=$SOAK_N"; sleep 0.1'], "restarts": "unlimited",
             "backoff": False},
            {"name": "app", "exec": "sleep 1000", "health": {"exec": "true", "interval": 1, "ttl": 5}},
            {"name": "sick", "exec": "sleep 1000", "health": {"exec": "false", "interval": 1, "ttl": 5}},
            {"name": "tick", "exec": "true", "when": {"interval": "500ms"}},
            {"name": "variant", "exec": ["sleep", str(1000 + variant)]},  # changed by every reload
        ],
    }


def buffer_full(p: Pilot, job: str) -> bool:
    """Whether ``job``'s recent-lines buffer holds all it keeps (it then drops one for each new one)."""
    code, data = control(p, "GET", f"/v3/jobs/{job}/logs")
    assert code == 200, data
    return len(data["lines"]) >= joblogs.BUFFER_LINES


def reloads(p: Pilot, n: int) -> None:
    """``n`` reloads straight over the control socket, alternating the two configs."""
    for i in range(n):
        p.config_path.write_bytes(orjson.dumps(config(i % 2, str(p.dir))))
        code, data = control(p, "POST", "/v3/reload", timeout=60)
        assert code == 200, data


def control_round(p: Pilot, i: int) -> None:
    p.config_path.with_suffix(".tmp").write_bytes(orjson.dumps(config(i % 2, str(p.dir))))
    p.config_path.with_suffix(".tmp").replace(p.config_path)
    for args in (["-ping"], ["status", "--json"], ["-putenv", f"SOAK_N={i}"], ["-reload"]):
        r = cli(p, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        if args[0] == "status":
            assert {j["name"] for j in orjson.loads(r.stdout)["jobs"]} >= {"churn", "app", "sick"}


@pytest.mark.parametrize(
    "seconds",
    [
        # CI's form: a minute, sampled after a minute of the same traffic; in the first minute PID 1's
        # RSS rises ~100-130 KiB/min to a plateau (measured: 18.3 -> 18.4 MiB), a slope that would fail
        pytest.param(60, id="60s", marks=pytest.mark.timeout(420)),
        # its own timeout: the suite's 300 s would kill it (#15, #20)
        pytest.param(600, id="10min", marks=[pytest.mark.slow, pytest.mark.timeout(900)]),
    ],
)
def test_soak_rss_fds_threads_flat_no_zombie_growth(seconds: int) -> None:
    with Pilot(config(0)) as p:
        p.wait_log(r"\{StatusHealthy app\}")
        p.wait_log(r"\{StatusUnhealthy sick\}")
        control_round(p, 1)  # warm-up: the control worker, the reload and config modules, the CLI paths
        reloads(p, 400)  # and the allocator's working size for reloads (see the burst test below)
        control_round(p, 2)
        rounds = 2
        # the short form samples once the churning job's line buffer (for `pypilot logs`) is full: it
        # fills to BUFFER_LINES at ~170 B a line, 80 KiB/min at this rate, bounded, not a leak (it was
        # what CI's run of 1fd5d66 measured: 78 KiB/min, 18432 -> 18516 KiB); the long form drops its
        # first 2 minutes instead
        settle = time.monotonic() + (60 if seconds < 300 else 0)
        while seconds < 300 and (time.monotonic() < settle or not buffer_full(p, "churn")):
            rounds += 1
            control_round(p, rounds)
            assert time.monotonic() < settle + 240, "the churn job's line buffer never filled"
        warm = rounds
        samples: list[Sample] = [sample(p)]
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            rounds += 1
            control_round(p, rounds)
            samples.append(sample(p))
        elapsed = time.monotonic() - start
        minutes = [(s.t - start) / 60 for s in samples]
        rss = slope(minutes, [s.rss for s in samples])
        fds = slope(minutes, [s.fds for s in samples])
        threads = slope(minutes, [s.threads for s in samples])
        zombies = slope(minutes, [s.zombies for s in samples])
        state = jobs(p)
        churn_runs = state["churn"]["runs"]
        print(
            f"\nsoak {elapsed:.0f}s: {rounds - warm} rounds ({4 * (rounds - warm)} CLI calls, "
            f"{rounds - warm} reloads) after {warm - 2} to warm up, churn runs {churn_runs}; "
            f"RSS {samples[0].rss / MiB:.1f} -> {samples[-1].rss / MiB:.1f} MiB, "
            f"slope {rss / 1024:.1f} KiB/min; fds {samples[0].fds} -> {samples[-1].fds}, "
            f"slope {fds:.2f}/min; "
            f"threads {samples[0].threads} -> {samples[-1].threads}, slope {threads:.2f}/min; zombies max "
            f"{max(s.zombies for s in samples)}, slope {zombies:.2f}/min"
        )
        print("RSS series KiB:", [s.rss // 1024 for s in samples[:: max(len(samples) // 20, 1)]])
        assert p.alive()
        assert rounds - warm >= seconds / 5  # the loop really ran control traffic all along
        # on the plateau 13 KiB/min; #15's leak (58 KiB/min, 0.23 KiB a reload) fails, as would a
        # leak of 1 KiB a round (~280 KiB/min)
        assert abs(rss) < 40 * 1024, f"RSS grows {rss / 1024:.1f} KiB/min"
        assert samples[-1].rss - samples[0].rss < 1 * MiB
        if seconds >= 300:
            # PID 1 grew 58 KiB/min for 10 minutes with no plateau (#15, glibc's setenv keeping every
            # PID value): after the first two minutes (the allocator's and the bounded caches' working
            # size), a slope like that fails; the fixed tree stays within a few KiB/min
            late = [i for i, m in enumerate(minutes) if m >= 2]
            tail = slope([minutes[i] for i in late], [samples[i].rss for i in late])
            print(f"RSS slope after minute 2: {tail / 1024:.1f} KiB/min")
            assert tail < 16 * 1024, f"RSS grows {tail / 1024:.1f} KiB/min after minute 2"
        assert abs(fds) < 0.5 and samples[-1].fds <= samples[0].fds + 2
        assert abs(threads) < 0.1 and samples[-1].threads == samples[0].threads
        assert abs(zombies) < 0.5 and max(s.zombies for s in samples) <= 3
        assert len(p.lines(r"reload.*(rolled back|rejected)")) == 0
        assert len(p.lines(r"reloading: keeping")) == rounds + 400
        # nothing lost: the log and the status API agree on the churning job's exits
        p.wait_log(rf"churn n={rounds}$", timeout=10)  # the last putenv reached the next spawn
        state = jobs(p)
        # a reload restarts every job (CP's default): count the exits of the churn job running now,
        # the ones logged after the last reload committed (its old process was gone before that)
        log = p.log().splitlines()
        committed = max(i for i, line in enumerate(log) if "reloaded app via control plane" in line)
        exits = sum(1 for line in log[committed:] if "churn exited " in line)
        assert exits in (state["churn"]["runs"], state["churn"]["runs"] - 1)  # one may be running
        assert not p.lines(r"Traceback|event loop failed")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0


def test_reload_burst_keeps_no_memory() -> None:
    """Found by the soak: every reload's grace timer (reloadGrace, 30 s) stayed in the loop's heap
    after the reload had committed, keeping the Reload, its old jobs and config; cancelled timers kept
    their callbacks too. Memory grew ~7 KiB per reload for 30 s: 300 quick reloads, 2 MiB."""
    with Pilot(config(0)) as p:
        p.wait_log(r"\{StatusHealthy app\}")
        reloads(p, 400)  # warm-up: the heap and the allocator reach their working size
        before = sample(p).rss
        reloads(p, 300)
        grown = sample(p).rss - before
        print(f"\n300 reloads in a burst: RSS +{grown / 1024:.0f} KiB")
        assert grown < 512 * 1024
