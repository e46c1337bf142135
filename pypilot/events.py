"""Events and the bus that fans them out, in one total order, to every subscriber.

An ``Event`` is a ``(code, source)`` value compared with ``==`` (CP §4.2); codes are the names used
in configs. ``publish`` never blocks and never recurses: an event published while another is being
delivered is queued behind it, so every subscriber sees every event in the same order (CP #590 was a
bounded queue that stalled the whole process; this one is a deque drained by the loop's thread).
"""

from __future__ import annotations

from pypilot import logs

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable
    from typing import Protocol
else:  # the C deque itself: collections' own import (~2 ms) is not needed before the first spawn
    from _collections import deque

# codes, as spelled in configs (when.once / when.each)
EXIT_SUCCESS = "exitSuccess"
EXIT_FAILED = "exitFailed"
STOPPING = "stopping"
STOPPED = "stopped"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
CHANGED = "changed"
STARTUP = "startup"
SHUTDOWN = "shutdown"
ENTER_MAINTENANCE = "enterMaintenance"
EXIT_MAINTENANCE = "exitMaintenance"
TIMER_EXPIRED = "timerExpired"
ERROR = "error"
QUIT = "quit"
SIGNAL = "signal"
METRIC = "metric"
GAVE_UP = "gaveUp"  # beyond CP: a job ran out of restarts after failing

GLOBAL = "global"

# CP's debug/metric spelling of each code
CP_NAMES = {
    EXIT_SUCCESS: "ExitSuccess",
    EXIT_FAILED: "ExitFailed",
    STOPPING: "Stopping",
    STOPPED: "Stopped",
    HEALTHY: "StatusHealthy",
    UNHEALTHY: "StatusUnhealthy",
    CHANGED: "StatusChanged",
    STARTUP: "Startup",
    SHUTDOWN: "Shutdown",
    ENTER_MAINTENANCE: "EnterMaintenance",
    EXIT_MAINTENANCE: "ExitMaintenance",
    TIMER_EXPIRED: "TimerExpired",
    ERROR: "Error",
    QUIT: "Quit",
    SIGNAL: "Signal",
    METRIC: "Metric",
    GAVE_UP: "GaveUp",
}


class Event(tuple[str, str]):
    """``(code, source)``; a plain tuple underneath, so it compares and hashes as one."""

    __slots__ = ()

    def __new__(cls, code: str, source: str) -> Event:
        return tuple.__new__(cls, (code, source))

    @property
    def code(self) -> str:
        return self[0]

    @property
    def source(self) -> str:
        return self[1]

    def __repr__(self) -> str:
        return f"Event({self[0]!r}, {self[1]!r})"

    def __str__(self) -> str:
        return f"{{{CP_NAMES.get(self.code, self.code)} {self.source}}}"


if TYPE_CHECKING:

    class Subscriber(Protocol):
        def receive(self, event: Event) -> object: ...  # a job answers continue/halt; the bus ignores it


class Bus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._queue: deque[Event | Callable[[], None]] = deque()  # a callable: see publish_then
        self._delivering = False
        self.published = 0

    def subscribe(self, sub: Subscriber) -> None:
        if sub not in self._subscribers:
            self._subscribers.append(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def listen(self, fn: Callable[[Event], None]) -> None:
        """Observers (metrics, the event stream) see every event after the subscribers."""
        self._listeners.append(fn)

    def publish(self, *events: Event) -> None:
        """Deliver ``events`` (queued behind any in delivery); several are adjacent in the order."""
        self._queue.extend(events)
        self._drain()

    def publish_then(self, events: tuple[Event, ...], then: Callable[[], None]) -> None:
        """Publish ``events`` and run ``then`` right after the first has reached everyone, ahead of
        the rest: a job handles its own exit there (not as one more subscriber), and what it
        publishes still queues behind the exit and its error, as CP's order has it."""
        self._queue.append(events[0])
        self._queue.append(then)
        self._queue.extend(events[1:])
        self._drain()

    def _drain(self) -> None:
        """Deliver what is queued, unless a delivery further up the stack is already doing it."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                self._deliver(self._queue.popleft())
        finally:
            self._delivering = False

    @staticmethod
    def _call(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # as for a subscriber: an event for the log, never a dead PID 1
            logs.exception("handling an exit failed", e)

    def _deliver(self, event: Event | Callable[[], None]) -> None:
        if not isinstance(event, Event):
            self._call(event)
            return
        self.published += 1
        if logs.enabled(logs.DEBUG):
            logs.debug(f"event: {event}")
        for sub in tuple(self._subscribers):
            try:
                sub.receive(event)
            except Exception as e:  # a failing job is an event for the log, never a dead PID 1
                logs.exception(f"handling {event} failed", e)
        for fn in tuple(self._listeners):
            try:
                fn(event)
            except Exception as e:
                logs.exception(f"listener on {event} failed", e)
