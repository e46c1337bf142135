"""The OpenAPI 3 document of the whole control API, served at ``GET /v3/openapi.json``.

A Python module rather than a data file so that it ships in every wheel. Its paths are those of
``routes.ROUTES`` (checked when it is built); the tests check that the app's answers match the
responses it documents.
"""

from __future__ import annotations

from typing import Any

from pypilot.control.routes import ANY, ROUTES

_TEXT = {"text/plain; charset=utf-8": {"schema": {"type": "string"}}}
_ERR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _cp(op_id: str, summary: str, body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "Done: the body is a single newline (ContainerPilot 3).", "content": _TEXT},
        "405": _ref("CPMethodNotAllowed"),
        "413": _ref("CPTooLarge"),
        "503": _ref("CPUnavailable"),
    }
    responses.update(extra)
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = body
    return op


def _job(action: str, summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "Done.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobResult"}}},
        },
        "404": {"description": "No job of that name.", "content": _ERR},
        "405": _ref("MethodNotAllowed"),
        "409": {
            "description": "Nothing to do in the job's state; the error says which: nothing running to "
            "signal, already running (with its pid), completed, or no exec.",
            "content": _ERR,
        },
        "413": _ref("TooLarge"),
        "503": _ref("Unavailable"),
    }
    op: dict[str, Any] = {
        "operationId": f"job_{action}",
        "summary": summary,
        "parameters": [{"$ref": "#/components/parameters/JobName"}],
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = body
        responses["400"] = {"description": "The body is not JSON.", "content": _ERR}
        responses["422"] = {"description": "No signal, or an invalid signal name.", "content": _ERR}
    return op


def _json_body(schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_PING_METHODS = ("get", "head", "post", "put", "delete", "patch", "options")

_PATHS: dict[str, dict[str, Any]] = {
    "/v3/environ": {
        "post": _cp(
            "environ",
            "Set environment variables for later spawns and reload renders "
            "(null sets the variable to empty).",
            _json_body(
                {
                    "type": "object",
                    "nullable": True,
                    "additionalProperties": {"type": "string", "nullable": True},
                }
            ),
            **{"422": _ref("CPUnprocessable")},
        )
    },
    "/v3/reload": {
        "post": _cp(
            "reload",
            "Reload the configuration file: validated first, applied as a diff, rolled back on failure.",
            **{
                "200": {
                    "description": (
                        "Answered once the reload is done. A CP client gets `\\n` on success; with "
                        "`Accept: application/json`, or when the new config was rejected or rolled "
                        "back, the body is the JSON outcome (still 200, as CP clients expect)."
                    ),
                    "content": {
                        **_TEXT,
                        "application/json": {"schema": {"$ref": "#/components/schemas/ReloadResult"}},
                    },
                }
            },
        )
    },
    "/v3/metric": {
        "post": _cp(
            "metric",
            "Record metric values (published as Metric events; values formatted as Go's %v).",
            _json_body({"type": "object", "nullable": True, "additionalProperties": {}}),
            **{
                "200": {
                    "description": (
                        "Published. As in ContainerPilot 3, a metric that telemetry will ignore (not "
                        "declared in `telemetry.metrics`, not a number, a counter going down) is "
                        "published too and answered `\\n`, with the reason in `X-Pypilot-Error`. "
                        "With `Accept: application/json` the body is `{\"published\": [names]}`."
                    ),
                    "content": {
                        **_TEXT,
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"published": {"type": "array", "items": {"type": "string"}}},
                            }
                        },
                    },
                },
                "422": {
                    "description": (
                        "`Unprocessable Entity\\n`: bad JSON or not an object. With "
                        "`Accept: application/json`, also a metric telemetry would ignore (JSON error, "
                        "nothing published)."
                    ),
                    "content": {**_TEXT, **_ERR},
                },
            },
        )
    },
    "/v3/maintenance/enable": {
        "post": _cp(
            "maintenance_enable", "Enter maintenance mode (services deregistered, checks paused)."
        )
    },
    "/v3/maintenance/disable": {"post": _cp("maintenance_disable", "Leave maintenance mode.")},
    "/v3/ping": {
        m: {
            "operationId": f"ping_{m}",
            "summary": "Check that the control socket is up and PID 1 answers (any method).",
            "responses": {
                "200": {"description": "`\\n`", "content": _TEXT},
                "503": _ref("CPUnavailable"),
            },
        }
        for m in _PING_METHODS
    },
    "/v3/status": {
        "get": {
            "operationId": "status",
            "summary": "Every job's state, PID, restarts, last exit, health and backoff; maintenance; "
            "the control plane's request counters.",
            "responses": {
                "200": {
                    "description": "The status.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
                },
                "405": _ref("MethodNotAllowed"),
                "503": _ref("Unavailable"),
            },
        }
    },
    "/v3/events": {
        "get": {
            "operationId": "events",
            "summary": "Server-sent events: every bus event as it happens "
            "(`id`: sequence number, `event`: code, `data`: JSON).",
            "responses": {
                "200": {
                    "description": "An endless `text/event-stream`; a comment every 15 s while idle.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "405": _ref("MethodNotAllowed"),
                "503": _ref("Unavailable"),
            },
        }
    },
    "/v3/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "405": _ref("MethodNotAllowed"),
            },
        }
    },
    "/v3/jobs/{name}/signal": {
        "post": _job(
            "signal",
            "Send a signal to the job's process group.",
            _json_body(
                {
                    "type": "object",
                    "required": ["signal"],
                    "properties": {
                        "signal": {
                            "oneOf": [
                                {"type": "string", "example": "SIGHUP"},
                                {"type": "integer", "minimum": 1, "maximum": 64},
                            ]
                        }
                    },
                },
                required=True,
            ),
        )
    },
    "/v3/jobs/{name}/stop": {
        "post": _job(
            "stop", "Stop the job's process and keep it stopped (no restart, no backoff) until started."
        )
    },
    "/v3/jobs/{name}/start": {"post": _job("start", "Start the job now (also releases a stopped job).")},
    "/v3/jobs/{name}/restart": {
        "post": _job(
            "restart",
            "Stop the job's process and start it again, with no backoff and no restart counted.",
        )
    },
    "/v3/jobs/{name}/logs": {
        "get": {
            "operationId": "job_logs",
            "summary": "The job's recent output lines, from a buffer in PID 1 bounded in lines and bytes "
            "(`pypilot logs`); with `follow`, a stream of them as they come (`pypilot logs -f`).",
            "parameters": [
                {"$ref": "#/components/parameters/JobName"},
                {"name": "n", "in": "query", "description": "At most this many of the last lines (default: "
                 "all that are kept).", "schema": {"type": "integer", "minimum": 0}},
                {"name": "follow", "in": "query", "description": "1/true: after the last lines, every new "
                 "one as a server-sent event `line` (`id`: its sequence number, `data`: JSON "
                 "`{seq, time, line}`; an event `raw` first if the job's output is not captured); a comment "
                 "every 15 s while idle.",
                 "schema": {"type": "boolean"}},
            ],
            "responses": {
                "200": {
                    "description": "The lines (`raw` true: the job's output is not captured, its "
                    "`logging.raw` sends it straight to pypilot's stdout).",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/JobLogs"}},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "404": {"description": "No job of that name.", "content": _ERR},
                "405": _ref("MethodNotAllowed"),
                "422": {"description": "`n` or `follow` is not valid.", "content": _ERR},
                "503": _ref("Unavailable"),
            },
        }
    },
    "/v3/upgrade": {
        "post": {
            "operationId": "upgrade",
            "summary": "Continue PID 1 as the pypilot at `path` (an in-place upgrade, docs/upgrade.md): "
            "checked first by running it in its check mode, then exec'd with every job's state.",
            "requestBody": _json_body(
                {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}, True
            ),
            "responses": {
                "202": {
                    "description": "The check passed; PID 1 execs `path` now. Poll `GET /v3/status`: "
                    "`pypilot.upgrades` grows once the new image runs, `pypilot.last_upgrade.ok` is false "
                    "if it was rolled back.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": {"description": "The body is not a JSON object with a string `path`.",
                        "content": _ERR},
                "405": _ref("MethodNotAllowed"),
                "413": _ref("TooLarge"),
                "422": {
                    "description": "Refused, nothing changed: not an executable, not a pypilot, its "
                    "check failed, a state format it does not know, or pypilot is busy (shutdown, reload, "
                    "upgrade).",
                    "content": _ERR,
                },
                "503": _ref("Unavailable"),
            },
        }
    },
}


def _paths() -> dict[str, Any]:
    """``_PATHS`` in the order of ``routes.ROUTES``, checked against it: every route documented with
    exactly its methods (HEAD goes with GET), nothing documented that is not a route."""
    out = {}
    for label, route in ROUTES.items():
        item = _PATHS[label]
        routed = route.methods - {"HEAD"}
        methods = set(_PING_METHODS) if route.methods == ANY else {m.lower() for m in routed}
        if set(item) != methods:
            raise AssertionError(f"{label}: documented {sorted(item)}, routed {sorted(methods)}")
        out[label] = item
    if set(_PATHS) - set(ROUTES):
        raise AssertionError(f"documented but not routed: {sorted(set(_PATHS) - set(ROUTES))}")
    return out


DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "pypilot control API",
        "version": "3",
        "description": (
            "ContainerPilot 3's control API on the unix socket `control.socket` (HTTP/1.1, host `control`), "
            "with ContainerPilot's status codes and bodies, plus pypilot's status, event stream and per-job "
            "control. The reason for any rejection is in the `X-Pypilot-Error` header. Unknown paths get "
            "404 `404 page not found\\n`; bodies over 1 MiB get 413."
        ),
    },
    "servers": [{"url": "http://control"}],
    "paths": _paths(),
    "components": {
        "parameters": {
            "JobName": {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        },
        "responses": {
            "CPMethodNotAllowed": {"description": "`Method Not Allowed\\n`", "content": _TEXT},
            "CPUnprocessable": {
                "description": "`Unprocessable Entity\\n`: unreadable body, bad JSON, "
                "or values of the wrong type.",
                "content": _TEXT,
            },
            "CPTooLarge": {
                "description": "`Request Entity Too Large\\n`: a body over 1 MiB.",
                "content": _TEXT,
            },
            "CPUnavailable": {
                "description": "`Service Unavailable\\n`: PID 1 did not answer in time.",
                "content": _TEXT,
            },
            "MethodNotAllowed": {"description": "Wrong method.", "content": _ERR},
            "TooLarge": {"description": "A body over 1 MiB.", "content": _ERR},
            "Unavailable": {"description": "PID 1 did not answer in time.", "content": _ERR},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "JobLogs": {
                "type": "object",
                "required": ["job", "lines"],
                "properties": {
                    "job": {"type": "string"},
                    "raw": {"type": "boolean"},
                    "lines": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["seq", "time", "line"],
                            "properties": {
                                "seq": {"type": "integer"},
                                "time": {"type": "number", "description": "Unix time it was read"},
                                "line": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "ReloadResult": {
                "type": "object",
                "required": ["reloaded"],
                "properties": {
                    "reloaded": {"type": "boolean"},
                    "message": {"type": "string"},
                    "error": {"type": "string"},
                },
            },
            "Job": {
                "type": "object",
                "required": ["name", "state", "status"],
                "properties": {
                    "name": {"type": "string"},
                    "state": {
                        "type": "string",
                        "enum": [
                            "waiting", "running", "backoff", "held", "stopping", "restarting", "completed"
                        ],
                    },
                    "status": {
                        "type": "string",
                        "enum": ["idle", "unknown", "healthy", "unhealthy", "maintenance"],
                    },
                    "pid": {"type": "integer", "nullable": True},
                    "runs": {"type": "integer"},
                    "restarts": {"type": "integer"},
                    "restartsRemaining": {"type": "integer", "nullable": True},
                    "lastExit": {"type": "integer", "nullable": True},
                    "failuresInARow": {"type": "integer"},
                    "backoffUntil": {"type": "number", "nullable": True},
                },
                "additionalProperties": True,
            },
            "JobResult": {
                "type": "object",
                "properties": {"job": {"$ref": "#/components/schemas/Job"}, "signalled": {"type": "boolean"}},
            },
            "Status": {
                "type": "object",
                "required": ["jobs", "maintenance"],
                "properties": {
                    "pid": {"type": "integer"},
                    "shuttingDown": {"type": "boolean"},
                    "maintenance": {"type": "boolean"},
                    "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    "watches": {"type": "array", "items": {}},
                    "zombies": {
                        "description": "exited processes whose parent, alive and not pypilot, has not waited "
                        "for them: only that parent can reap them",
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "pid": {"type": "integer"},
                                "ppid": {"type": "integer"},
                                "command": {"type": "string"},
                                "job": {"type": "string", "nullable": True},
                            },
                        },
                    },
                    "control": {
                        "type": "object",
                        "properties": {
                            "socket": {"type": "string"},
                            "workerPid": {"type": "integer", "nullable": True},
                            "workerRestarts": {"type": "integer"},
                            "requests": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "code": {"type": "integer"},
                                        "path": {"type": "string"},
                                        "count": {"type": "integer"},
                                    },
                                },
                            },
                        },
                    },
                },
                "additionalProperties": True,
            },
        },
    },
}
