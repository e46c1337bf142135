"""The event loop on its own, in-process: readers, writers, timers, their order, cancelling, and a
callback that raises (pypilot/loop.py; the end-to-end tests only see it through PID 1)."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator

import pytest

from pypilot.loop import Loop

pytestmark = pytest.mark.timeout(10)  # a broken loop blocks in poll for ever: fail, do not hang


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def run_until(loop: Loop, limit: float = 5.0) -> None:
    """Run ``loop`` until something stops it; a guard timer fails the test instead of hanging it."""
    hung: list[bool] = []
    guard = loop.call_later(limit, lambda: (hung.append(True), loop.stop()))
    loop.run()
    guard.cancel()
    assert not hung, "the loop did not stop by itself"


def test_timers_run_in_deadline_order_and_ties_in_scheduling_order() -> None:
    loop = Loop()
    ran: list[str] = []
    base = time.monotonic()
    loop.call_at(base + 0.03, lambda: ran.append("late"))
    loop.call_at(base + 0.01, lambda: ran.append("tie-1"))
    loop.call_at(base + 0.01, lambda: ran.append("tie-2"))
    loop.call_soon(lambda: ran.append("soon"))
    loop.call_at(base + 0.05, loop.stop)
    run_until(loop)
    assert ran == ["soon", "tie-1", "tie-2", "late"]


def test_timer_does_not_run_before_its_deadline() -> None:
    loop = Loop()
    when: list[float] = []
    start = time.monotonic()
    loop.call_later(0.05, lambda: (when.append(time.monotonic()), loop.stop()))
    run_until(loop)
    assert when[0] - start >= 0.05


def test_negative_delay_runs_at_once_and_is_not_in_the_past() -> None:
    loop = Loop()
    before = time.monotonic()
    timer = loop.call_later(-10.0, loop.stop)
    assert timer.deadline >= before
    run_until(loop)


def test_cancelled_timer_never_runs_and_drops_its_callback() -> None:
    loop = Loop()
    ran: list[str] = []
    t = loop.call_later(0.0, lambda: ran.append("cancelled"))
    t.cancel()
    assert t.cancelled
    t.callback()  # the no-op that replaced it: it keeps nothing alive
    assert ran == []
    loop.call_later(0.02, loop.stop)
    run_until(loop)
    assert ran == []


def test_only_cancelled_timers_left_means_poll_sleeps_without_a_timeout() -> None:
    loop = Loop()
    loop.call_later(0.5, lambda: None).cancel()
    loop.call_later(1.0, lambda: None).cancel()
    assert loop._timeout_ms() is None
    assert loop._timers == []
    assert Loop()._timeout_ms() is None


def test_poll_timeout_rounds_up_to_the_next_deadline_and_is_zero_when_due() -> None:
    loop = Loop()
    loop.call_later(0.25, lambda: None)
    ms = loop._timeout_ms()
    assert ms is not None and 200 <= ms <= 250  # rounded up by one: poll never wakes before it
    loop.call_soon(lambda: None)
    assert loop._timeout_ms() == 0
    # a first timer cancelled: the next live one decides
    loop2 = Loop()
    loop2.call_later(0.01, lambda: None).cancel()
    loop2.call_later(2.0, lambda: None)
    ms2 = loop2._timeout_ms()
    assert ms2 is not None and 1800 <= ms2 <= 2000


def test_timer_scheduled_by_a_running_timer_waits_for_the_next_turn() -> None:
    loop = Loop()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        loop.call_soon(lambda: ran.append("rescheduled"))

    loop.call_soon(first)
    loop._run_due_timers()
    assert ran == ["first"]
    loop._run_due_timers()
    assert ran == ["first", "rescheduled"]


def test_due_timers_all_run_in_one_turn() -> None:
    loop = Loop()
    ran: list[int] = []
    for i in range(3):
        loop.call_soon(lambda i=i: ran.append(i))
    loop.call_later(60.0, lambda: ran.append(99))
    loop._run_due_timers()
    assert ran == [0, 1, 2]


def test_lateness_is_measured_for_deadline_timers_not_for_call_soon() -> None:
    loop = Loop()
    loop.call_soon(lambda: None)
    loop._run_due_timers()
    assert loop.max_lateness == 0.0
    loop.call_at(time.monotonic() - 0.2, lambda: None)
    loop.call_at(time.monotonic() - 0.1, lambda: None)
    loop._run_due_timers()
    assert 0.2 <= loop.max_lateness < 1.0


def test_reader_is_called_when_its_fd_is_readable(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = Loop()
    got: list[bytes] = []

    def read() -> None:
        got.append(os.read(r, 100))
        loop.stop()

    loop.add_reader(r, read)
    loop.call_later(0.02, lambda: os.write(w, b"x"))
    run_until(loop)
    assert got == [b"x"]


def test_reader_sees_the_writer_end_closing(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = Loop()
    got: list[bytes] = []

    def read() -> None:
        got.append(os.read(r, 100))
        loop.stop()

    loop.add_reader(r, read)
    loop.call_soon(lambda: os.close(w))
    run_until(loop)
    assert got == [b""]


def test_removed_reader_is_not_called(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = Loop()
    called: list[int] = []
    loop.add_reader(r, lambda: called.append(1))
    loop.remove_reader(r)
    os.write(w, b"x")
    assert loop._poll.poll(0) == []  # poll no longer watches it (else the loop would spin on it)
    loop.call_later(0.05, loop.stop)
    run_until(loop)
    assert called == []
    loop.remove_reader(r)  # twice: harmless
    assert loop._poll.poll(0) == []


def test_writer_is_called_while_writable_and_not_after_removal(pipe: tuple[int, int]) -> None:
    _r, w = pipe
    loop = Loop()
    calls: list[int] = []

    def writable() -> None:
        calls.append(1)
        if len(calls) == 3:
            loop.remove_writer(w)
            loop.call_later(0.05, loop.stop)

    loop.add_writer(w, writable)
    run_until(loop)
    assert calls == [1, 1, 1]
    assert loop._poll.poll(0) == []  # poll no longer watches it
    loop.remove_writer(w)  # already gone: harmless
    assert loop._poll.poll(0) == []


def test_reader_and_writer_on_one_fd_are_both_served_and_removed_separately() -> None:
    import socket

    a, b = socket.socketpair()
    try:
        loop = Loop()
        seen: list[str] = []
        b.send(b"x")

        def on_read() -> None:
            seen.append("read")
            a.recv(10)

        def on_write() -> None:
            seen.append("write")
            loop.remove_writer(a.fileno())

        loop.add_reader(a.fileno(), on_read)
        loop.add_writer(a.fileno(), on_write)
        loop.call_later(0.05, loop.stop)
        run_until(loop)
        assert seen[:2] == ["write", "read"]
        assert seen.count("write") == 1
        # the reader is still registered after the writer went: more data is still read
        b.send(b"y")
        loop.call_later(0.05, loop.stop)
        run_until(loop)
        assert seen.count("read") == 2
    finally:
        a.close()
        b.close()


def test_fd_closed_behind_the_loops_back_is_forgotten_not_spun_on() -> None:
    r, w = os.pipe()
    os.close(w)
    loop = Loop()
    called: list[int] = []
    loop.add_reader(r, lambda: called.append(1))
    loop.add_writer(r, lambda: called.append(2))
    os.close(r)
    loop.call_later(0.05, loop.stop)
    run_until(loop)
    assert called == []
    assert r not in loop._readers and r not in loop._writers
    assert loop._poll.poll(0) == []


def test_a_callback_that_raises_is_logged_and_the_loop_goes_on(logged: list[bytes]) -> None:
    loop = Loop()
    ran: list[str] = []

    def boom() -> None:
        raise ValueError("bad timer")

    loop.call_soon(boom)
    loop.call_soon(lambda: ran.append("next"))
    loop.call_later(0.02, loop.stop)
    run_until(loop)
    assert ran == ["next"]
    text = b"".join(logged).decode()
    assert " event loop callback failed: ValueError('bad timer')\n" in text


def test_stop_from_a_reader_ends_run_after_that_turn(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = Loop()
    os.write(w, b"x")
    loop.add_reader(r, loop.stop)
    loop.run()  # returns: stop() took effect
    assert not loop._running


def test_a_reader_alone_is_not_woken_by_its_fd_being_writable() -> None:
    """A socket is writable nearly always: a reader must not be polled for that, or the loop spins."""
    import socket

    a, b = socket.socketpair()
    try:
        loop = Loop()
        loop.add_reader(a.fileno(), lambda: None)
        assert loop._poll.poll(0) == []
        loop.add_writer(b.fileno(), lambda: None)
        assert loop._poll.poll(0) == [(b.fileno(), select.POLLOUT)]
    finally:
        a.close()
        b.close()


def test_reader_and_writer_on_one_socket_are_each_called_only_for_their_own_event() -> None:
    import socket

    a, b = socket.socketpair()
    try:
        loop = Loop()
        calls: list[str] = []
        loop.add_reader(a.fileno(), lambda: calls.append("read"))
        loop.add_writer(a.fileno(), lambda: (calls.append("write"), loop.stop()))
        run_until(loop)  # writable, nothing to read
        assert calls == ["write"]
        a.setblocking(False)
        try:
            while True:
                a.send(b"x" * 65536)
        except BlockingIOError:
            pass  # its send buffer is full: not writable now
        calls.clear()
        loop.remove_reader(a.fileno())
        loop.add_reader(a.fileno(), lambda: (calls.append("read"), a.recv(10), loop.stop()))
        b.send(b"y")  # readable, not writable
        run_until(loop)
        assert calls == ["read"]
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("side", ["reader", "writer"])
def test_an_fd_watched_one_way_and_closed_behind_the_loops_back_is_forgotten(side: str) -> None:
    r, w = os.pipe()
    loop = Loop()
    if side == "reader":
        loop.add_reader(r, lambda: None)
        os.close(r)
    else:
        loop.add_writer(w, lambda: None)
        os.close(w)
    loop.call_later(0.05, loop.stop)
    run_until(loop)  # no KeyError out of run: the other side was never there
    assert loop._readers == {} and loop._writers == {}
    os.close(w if side == "reader" else r)
