"""What the control worker checks before forwarding a request and PID 1 checks again before acting
on it (stdlib only): signal names and numbers, environment updates, metric values."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable


def parse_signal(value: object) -> int | None:
    """``SIGHUP``, ``hup``, ``HUP`` or a number → a valid signal number; None if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        num = value
    elif isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit():
            num = int(name)
        else:
            if not name.startswith("SIG"):
                name = "SIG" + name
            try:
                num = int(signal.Signals[name])
            except KeyError:
                return None
    else:
        return None
    valid = {int(s) for s in signal.valid_signals()}
    return num if num in valid and num != 0 else None


def valid_env(env: object) -> str | None:
    """Why ``env`` cannot be set (None if it can): string keys and values, settable by setenv."""
    if not isinstance(env, dict):
        return "the body must be a JSON object"
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"the value of {key!r} must be a string or null"
        if not key or "=" in key or "\0" in key:
            return f"invalid environment variable name {key!r}"
        if "\0" in value:
            return f"the value of {key!r} contains a NUL byte"
        try:
            os.fsencode(key), os.fsencode(value)
        except UnicodeError:
            return f"{key!r} cannot be encoded for the environment"
    return None


def metric_problem(metrics: dict[str, str], declared: Iterable[tuple[str, str, str, str]]) -> str | None:
    """Why these metric values would be ignored by telemetry (None if none would): a name no
    ``telemetry.metrics`` entry declares, or a value that is not a number. ``declared`` is
    ``(namespace, subsystem, name, type)`` per entry; a metric is posted by its full name."""
    types: dict[str, str] = {}
    for ns, sub, name, kind in declared:
        types["_".join(p for p in (ns, sub, name) if p)] = kind
        types[f"{ns}_{sub}_{name}"] = kind
    for key, text in metrics.items():
        if key not in types:
            if not types:
                return f"metric {key!r} is not recorded: the config declares no telemetry metrics"
            return f"metric {key!r} is not declared in telemetry.metrics"
        try:
            value = float(text.strip())
        except ValueError:
            return f"metric {key!r} needs a number, got {text!r}"
        if types[key] == "counter" and value < 0:
            return f"metric {key!r} is a counter: it cannot decrease (got {text})"
    return None
