"""A job's exit as an event other jobs start on (CP: ``when: {source, once|each: exitSuccess|exitFailed}``),
end to end: the mutation run found no test in jobs.py's set that would notice the exit event gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pid1 import Pilot, wait_for


@pytest.mark.timeout(30)
def test_jobs_start_on_another_jobs_exit_success_or_failure_and_only_on_that(tmp_path: Path) -> None:
    def mark(name: str) -> list[str]:
        return ["sh", "-c", f"echo ran >> {tmp_path / name}"]

    jobs = [
        {"name": "ok", "exec": "true"},
        {"name": "bad", "exec": ["sh", "-c", "exit 3"]},
        {"name": "after-ok", "exec": mark("after-ok"), "when": {"source": "ok", "once": "exitSuccess"}},
        {"name": "after-bad", "exec": mark("after-bad"), "when": {"source": "bad", "once": "exitFailed"}},
        {"name": "ok-failed", "exec": mark("ok-failed"), "when": {"source": "ok", "once": "exitFailed"}},
        {"name": "bad-succeeded", "exec": mark("bad-succeeded"),
         "when": {"source": "bad", "once": "exitSuccess"}},
    ]
    with Pilot({"jobs": jobs}) as p:
        wait_for(lambda: (tmp_path / "after-ok").exists() and (tmp_path / "after-bad").exists(), 10,
                 "the jobs started by an exit")
        assert (tmp_path / "after-ok").read_text() == "ran\n"  # once
        assert (tmp_path / "after-bad").read_text() == "ran\n"
        p.wait_log(r"bad exited with error: exit status 3")
        assert not (tmp_path / "ok-failed").exists() and not (tmp_path / "bad-succeeded").exists()
