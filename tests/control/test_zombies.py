"""Zombies pypilot cannot reap are reported, never claimed fixed (tini #130, anchors pitfall 17).

A job whose process forks a child and never waits for it (here: ``sh`` runs ``/bin/true`` in the
background and then execs ``sleep``, which never calls wait) leaves a zombie whose parent is alive and
is not pypilot.
"""

from __future__ import annotations

import psutil

from tests.control.harness import KEEPER, ControlPilot, wait_for

LEAKY = {"name": "leaky", "exec": ["sh", "-c", "/bin/true & exec sleep 1000"]}


def test_status_reports_a_jobs_unreaped_zombie_with_its_parent_and_job() -> None:
    with ControlPilot(jobs=[KEEPER, LEAKY]) as p:
        leader = wait_for(lambda: p.job("leaky")["pid"], 10, "the leaky job's pid")
        zombie = wait_for(
            lambda: next((z for z in p.status()["zombies"] if z["ppid"] == leader), None), 10, "the zombie"
        )
        assert zombie["job"] == "leaky" and zombie["command"] == "true"
        assert psutil.Process(zombie["pid"]).status() == psutil.STATUS_ZOMBIE  # it is real, and still there
        assert psutil.Process(zombie["pid"]).ppid() == leader
        assert all(z["job"] != "keeper" for z in p.status()["zombies"])


def test_status_lists_no_zombie_for_jobs_that_leak_none() -> None:
    with ControlPilot(jobs=[KEEPER]) as p:
        keeper = wait_for(lambda: p.job("keeper")["pid"], 10, "the keeper's pid")
        assert keeper and [z for z in p.status()["zombies"] if z["job"] is not None] == []
