"""tini mode's config: ``pypilot -- CMD ARGS...`` is one main job and nothing else, built here in code.

The job is ContainerPilot's shape with the beyond-CP keys a tini user expects: ``main`` (pypilot exits with
CMD's code, 128+signal when it was killed), no restarts and no backoff, raw output (the command's bytes
pass through untouched, a terminal's escape sequences too), and ``interactive``: CMD gets pypilot's stdin
and, when that is a terminal, becomes its foreground process group. pypilot's own log is warnings and
errors only, on stderr, so that CMD's stdout is CMD's alone. There is no Consul; the control socket is
``$PYPILOT_SOCKET`` or the default one, so ``pypilot status`` works in the container as ever.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from . import model as m


def job_name(command: str) -> str:
    """The job's name: the command's basename (``bash``), so status and log lines say what runs."""
    return os.path.basename(command) or "main"


def command_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> m.Config:
    env = os.environ if environ is None else environ
    job = m.JobConfig(name=job_name(argv[0]), exec=tuple(argv), main=True, restarts=0, backoff=None,
                      raw_logging=True, interactive=True)
    return m.Config(consul=None, logging=m.LoggingConfig(level="WARN", output="stderr"), jobs=(job,),
                    control=m.ControlConfig(socket=env.get("PYPILOT_SOCKET") or m.DEFAULT_SOCKET))
