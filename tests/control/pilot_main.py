"""Runs pypilot the way ``__main__`` will once the control plane is wired: the supervisor plus
``ControlPlane`` (started before the loop, stopped after it). Tests use it until ``python -m pypilot``
starts the control plane itself; then ``CONTROL_MAIN`` in harness.py can switch to ``-m pypilot``.

Usage: ``python -m tests.control.pilot_main CONFIG``.
"""

from __future__ import annotations

import os
import sys


def main(config_path: str) -> int:
    from pypilot import logs, reaper

    sigfd = reaper.setup_signals()
    os.environ["CONTAINERPILOT_PID"] = str(os.getpid())
    from pypilot.config import ConfigError, load

    try:
        config = load(config_path)
        logs.configure(config.logging.level, config.logging.format, config.logging.output)
    except (ConfigError, ValueError) as e:
        logs.fatal_early(str(e))
        return 1
    from pypilot.control.plane import ControlPlane
    from pypilot.supervisor import Supervisor

    sup = Supervisor(config, sigfd)
    plane = ControlPlane(sup, config.control)
    plane.start()
    sweep = sup._sweep

    def sweep_then_stop_control() -> None:  # the wiring asked of supervisor.py: stop it in _sweep
        plane.stop()
        sweep()

    sup._sweep = sweep_then_stop_control  # type: ignore[method-assign]
    try:
        return sup.run()
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
