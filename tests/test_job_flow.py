"""Each row of a job's dispatch table answers as ContainerPilot's job loop does (#18 item 3):
continue while the job takes events, halt once it has completed."""

from __future__ import annotations

from pypilot import events as ev
from pypilot.config.model import Trigger, WhenConfig
from pypilot.events import Event
from pypilot.jobs import Flow
from tests.test_jobs import SHUTDOWN, STARTUP, Ctx


def test_a_running_job_continues_and_halts_on_shutdown() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app")
    assert job.receive(STARTUP) is Flow.CONTINUE and cmd.running
    assert job.receive(Event(ev.HEALTHY, "other")) is Flow.CONTINUE  # no row matches
    assert job.receive(SHUTDOWN) is Flow.HALT and job.completed
    assert job.receive(STARTUP) is Flow.HALT  # completed: nothing moves it any more


def test_a_job_waiting_for_its_prestop_dependent_continues_until_that_one_stopped() -> None:
    ctx = Ctx()
    job, _ = ctx.add(name="app")
    ctx.add(name="prestop", when=WhenConfig(source="app", once=ev.STOPPING))
    job.stopping_wait = Event(ev.STOPPED, "prestop")  # as the supervisor wires it
    job.receive(STARTUP)
    assert job.receive(Event(ev.QUIT, "app")) is Flow.CONTINUE and job.halted and not job.completed
    assert job.receive(Event(ev.HEALTHY, "prestop")) is Flow.CONTINUE
    assert job.receive(Event(ev.STOPPED, "prestop")) is Flow.HALT and job.completed


def test_the_last_of_when_all_triggers_starts_the_job_and_it_continues() -> None:
    ctx = Ctx()
    a, b = Trigger(event=ev.HEALTHY, source="a"), Trigger(event=ev.HEALTHY, source="b")
    job, cmd = ctx.add(name="late", when=WhenConfig(all=(a, b)))
    assert job.receive(Event(ev.HEALTHY, "a")) is Flow.CONTINUE and not cmd.running
    assert job.receive(Event(ev.HEALTHY, "b")) is Flow.CONTINUE and cmd.running
