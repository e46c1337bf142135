"""Names: service-name validation and the environment variable names ContainerPilot derives from jobs.

``CONTAINERPILOT_<ENVNAME>_PID`` uses ``env_name`` of the command (§4.5) and ``CONTAINERPILOT_<JOB>_IP``
uses ``ip_env_name`` of the job name (§9.1); they differ on purpose, as they did in ContainerPilot.
"""

from __future__ import annotations

import os

__all__ = ["env_name", "ip_env_name", "ip_var", "pid_var", "validate_name"]


def env_name(name: str) -> str:
    """CP's ENVNAME: basename, drop the ``.ext`` part, runs of non-alphanumerics → ``_``, upper case.

    ``test-Case--now.sh`` → ``TEST_CASE_NOW``; ``check.web`` → ``CHECK`` (all health checks share it).
    """
    base = os.path.basename(name).split(".", 1)[0]
    out: list[str] = []
    for c in base:
        if c.isascii() and c.isalnum():
            out.append(c.upper())
        elif not out or out[-1] != "_":
            out.append("_")
    return "".join(out)


def ip_env_name(name: str) -> str:
    """``<JOB>`` in ``CONTAINERPILOT_<JOB>_IP``: upper case with ``-`` → ``_`` (§9.1)."""
    return name.upper().replace("-", "_")


def pid_var(command: str) -> str:
    return f"CONTAINERPILOT_{env_name(command)}_PID"


def ip_var(job_name: str) -> str:
    return f"CONTAINERPILOT_{ip_env_name(job_name)}_IP"


def validate_name(name: str) -> str | None:
    """CP's service-name rule (``^[a-z][a-zA-Z0-9\\-]+$``); returns the error message or None."""
    if name == "":
        return "'name' must not be blank"
    ok = len(name) >= 2 and "a" <= name[0] <= "z" and all(
        c.isascii() and (c.isalnum() or c == "-") for c in name[1:])
    if not ok:
        return "service names must be alphanumeric with dashes to comply with service discovery"
    return None
