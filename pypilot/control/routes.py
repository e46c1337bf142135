"""The control API's routes, listed once: the Falcon app mounts them, PID 1's dispatch (``plane``)
handles their request kinds, and the OpenAPI document describes them (stdlib only: PID 1 reads it).

A route is a path (or its template, which is also the request counters' path label and the OpenAPI
key), its methods, whether it is one of ContainerPilot 3's (CP's text bodies) and the request kind it
forwards to PID 1 (None: the worker answers it alone).
"""

from __future__ import annotations

from collections import namedtuple


class Route(namedtuple("Route", "label methods cp kind")):  # not a dataclass: its import costs PID 1 ~10 ms
    """label: str, methods: frozenset[str], cp: bool, kind: str | None."""

    __slots__ = ()
    label: str
    methods: frozenset[str]
    cp: bool
    kind: str | None

    @property
    def action(self) -> str:
        """The last path segment: ``enable``/``disable``, a job action."""
        return self.label.rsplit("/", 1)[1]


ANY = frozenset({"*"})  # /v3/ping: every method
_POST, _GET = frozenset({"POST"}), frozenset({"GET", "HEAD"})
JOB_ACTIONS = ("signal", "stop", "start", "restart")

ROUTES: dict[str, Route] = {
    r.label: r
    for r in (
        Route("/v3/environ", _POST, True, "environ"),
        Route("/v3/reload", _POST, True, "reload"),
        Route("/v3/metric", _POST, True, "metric"),
        Route("/v3/maintenance/enable", _POST, True, "maintenance"),
        Route("/v3/maintenance/disable", _POST, True, "maintenance"),
        Route("/v3/ping", ANY, True, "ping"),
        Route("/v3/status", _GET, False, "status"),
        Route("/v3/events", _GET, False, "subscribe"),
        Route("/v3/openapi.json", _GET, False, None),
        *(Route(f"/v3/jobs/{{name}}/{a}", _POST, False, "job") for a in JOB_ACTIONS),
        Route("/v3/jobs/{name}/logs", _GET, False, "logs"),  # ?n=N&follow=1
        Route("/v3/upgrade", _POST, False, "upgrade"),  # {"path": PATH}: PID 1 execs that pypilot
    )
}
KINDS = frozenset(r.kind for r in ROUTES.values() if r.kind is not None)
_JOB_TAILS = frozenset((*JOB_ACTIONS, "logs"))


def classify(path: str) -> Route | None:
    route = ROUTES.get(path)
    if route is not None:
        return route
    if path.startswith("/v3/jobs/"):  # /v3/jobs/NAME/ACTION, NAME without "/" (not ``re``: PID 1 reads this)
        parts = path[len("/v3/jobs/"):].split("/")
        if len(parts) == 2 and parts[0] and parts[1] in _JOB_TAILS:
            return ROUTES[f"/v3/jobs/{{name}}/{parts[1]}"]
    return None
