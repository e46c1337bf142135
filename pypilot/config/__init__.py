"""Configuration: locate, render, parse and validate a ContainerPilot 3 config (interim loader).

INTERIM: replaced by the full loader of the configuration issue. Public API that must stay:
``load(path, environ) -> Config``, ``ConfigError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .model import UNLIMITED, Config, JobConfig, LoggingConfig


class ConfigError(Exception):
    """A config that cannot be used; the message names the field or position."""


def load(path: str | None, environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    path = path or env.get("CONTAINERPILOT", "")
    if not path:
        raise ConfigError("-config flag is required")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"could not read config file: {e}") from e
    import pyjson5

    try:
        raw = pyjson5.decode(text)
    except Exception as e:
        raise ConfigError(f"parse error: {e}") from e
    jobs = []
    for j in raw.get("jobs") or []:
        exe = j.get("exec")
        argv = tuple(exe.split(" ")) if isinstance(exe, str) else tuple(str(a) for a in exe) if exe else None
        r = j.get("restarts", 0)
        restarts = UNLIMITED if r == "unlimited" else 0 if r == "never" else int(r)
        raw_log = bool((j.get("logging") or {}).get("raw", False))
        jobs.append(JobConfig(name=j["name"], exec=argv, restarts=restarts, raw_logging=raw_log))
    lg = raw.get("logging") or {}
    logging = LoggingConfig(level=str(lg.get("level", "INFO")).upper(), format=lg.get("format", "default"),
                            output=lg.get("output", "stdout"))
    return Config(consul=None, logging=logging, jobs=tuple(jobs), stop_timeout=float(raw.get("stopTimeout") or 5),
                  path=path)
