"""The PID-1 event loop: one ``poll`` over every fd, and timers whose next deadline is the timeout.

Single-threaded and never blocking: readers and timers run to completion, and one that raises is
logged with its cause while the loop goes on. An idle loop sleeps in ``poll`` with no timeout at all
(zero wake-ups per second).
"""

from __future__ import annotations

import select
import time

from pypilot import logs

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    import heapq
    from collections.abc import Callable

    Callback = Callable[[], None]
else:  # the C heap functions themselves: heapq.py is a pure-Python copy replaced by them at import
    import _heapq as heapq
_READ = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_WRITE = select.POLLOUT


def _noop() -> None:
    pass


class Timer:
    __slots__ = ("callback", "cancelled", "deadline", "seq")

    def __init__(self, deadline: float, seq: int, callback: Callback) -> None:
        self.deadline = deadline
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _noop  # it stays in the heap until its deadline: it must not keep what it refers to

    def __lt__(self, other: Timer) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class Loop:
    def __init__(self) -> None:
        self._poll = select.poll()
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._timers: list[Timer] = []
        self._seq = 0  # each timer's number: equal deadlines run in the order they were set
        self._running = False
        self.max_lateness = 0.0

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        """Call ``callback`` once ``fd`` is writable (until removed): for output that hit EAGAIN."""
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def _update(self, fd: int) -> None:
        mask = (_READ if fd in self._readers else 0) | (_WRITE if fd in self._writers else 0)
        if mask:
            self._poll.register(fd, mask)
        else:
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass

    def call_at(self, deadline: float, callback: Callback) -> Timer:
        timer = Timer(deadline, self._seq, callback)
        self._seq += 1
        heapq.heappush(self._timers, timer)
        return timer

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(time.monotonic() + max(delay, 0.0), callback)

    def call_soon(self, callback: Callback) -> Timer:
        return self.call_at(0.0, callback)

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        self._running = True
        while self._running:
            for fd, mask in self._poll.poll(self._timeout_ms()):
                if mask & select.POLLNVAL:  # closed behind our back: forget it rather than spin
                    self._readers.pop(fd, None)
                    self._writers.pop(fd, None)
                    self._update(fd)
                    continue
                if mask & _WRITE and fd in self._writers:
                    self._call(self._writers[fd])
                if mask & _READ and fd in self._readers:
                    self._call(self._readers[fd])
            self._run_due_timers()

    def _timeout_ms(self) -> int | None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        delay = self._timers[0].deadline - time.monotonic()
        return 0 if delay <= 0 else int(delay * 1000) + 1

    def _run_due_timers(self) -> None:
        """Run the timers due now. One scheduled while these run waits for the next turn, after a
        poll: a callback that keeps rescheduling itself (a job that cannot even start, restarting
        with no delay) must never keep the loop from reading signals and reaping (circus #1157)."""
        now = time.monotonic()
        due = []
        while self._timers and self._timers[0].deadline <= now:
            due.append(heapq.heappop(self._timers))
        for timer in due:
            if not timer.cancelled:
                if timer.deadline:
                    self.max_lateness = max(self.max_lateness, now - timer.deadline)
                self._call(timer.callback)

    @staticmethod
    def _call(callback: Callback) -> None:
        try:
            callback()
        except Exception as e:
            logs.exception("event loop callback failed", e)
