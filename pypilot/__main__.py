"""Entry point: ``pypilot -config FILE`` runs the supervisor; the flags mirror ContainerPilot 3's.

Start-up is user-visible, so this imports only what the first spawn needs: the C reaper, the
config loader and the job machinery. Signals are blocked before anything else can start a thread.
"""

from __future__ import annotations

import os
import sys


def _parse(argv: list[str]) -> dict[str, str | bool]:
    """INTERIM flag parsing (replaced by pypilot.cli from the configuration issue)."""
    opts: dict[str, str | bool] = {}
    it = iter(argv)
    for arg in it:
        name, _, value = arg.lstrip("-").partition("=")
        if name in ("config", "out"):
            opts[name] = value or next(it, "")
        elif name in ("version",):
            opts[name] = True
        else:
            sys.stderr.write(f"flag provided but not defined: -{name}\n")
            raise SystemExit(2)
    return opts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = _parse(args)
    if opts.get("version"):
        from pypilot import __version__

        sys.stdout.write(f"Version: {__version__}\nGitHash: dev-build-not-for-release\n")
        return 0
    return run(str(opts.get("config") or "") or None)


def run(config_path: str | None) -> int:
    from pypilot import logs, reaper

    sigfd = reaper.setup_signals()  # first: no thread may exist yet, and none may see a signal
    os.environ["CONTAINERPILOT_PID"] = str(os.getpid())
    from pypilot.config import ConfigError, load

    try:
        config = load(config_path)
        logs.configure(config.logging.level, config.logging.format, config.logging.output)
    except (ConfigError, ValueError) as e:
        logs.fatal_early(str(e))
        return 1
    from pypilot.supervisor import Supervisor

    return Supervisor(config, sigfd).run()


if __name__ == "__main__":
    sys.exit(main())
