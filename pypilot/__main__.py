"""Entry point: ``pypilot -config FILE`` runs the supervisor; the flags mirror ContainerPilot 3's.

Start-up is user-visible, so this imports only what the first spawn needs: the C reaper, the
config loader and the job machinery. Signals are blocked before anything else can start a thread.
``pypilot -- CMD ARGS...`` (tini mode) supervises CMD alone, with no config file.
Exit codes: 0 clean shutdown (or the main job's code), 1 config or subcommand failure, 2 bad flags or an
unknown subcommand (never a supervisor start), 0 for a subcommand's ``-h``.
"""

from __future__ import annotations

import gc
import os
import sys


def main(argv: list[str] | None = None) -> int:
    __import__("pypilot.environ").environ.restore()  # first: jobs and templates see the container's environ
    from pypilot.cli import UsageError, parse_args

    args = sys.argv[1:] if argv is None else argv
    check = bool(args) and args[0] == "-upgrade-check"  # an in-place upgrade's check of this image
    try:
        opts = parse_args(args[1:] if check else args)
    except UsageError as e:
        (sys.stdout if e.to_stdout else sys.stderr).write(e.text)
        return e.code
    command = opts.command
    if check:
        from pypilot.upgrade import check_main

        return check_main(opts.exec_argv)
    if command == "version":
        from pypilot.cli import VERSION_TEXT

        sys.stdout.write(VERSION_TEXT)
        return 0
    if command == "template":
        return _template(opts.config or None, opts.out)
    if command == "validate":
        return _validate(opts.config or None)
    if command != "run":  # a client command: CP's flags, or status / job
        try:
            from pypilot.control.client import run_subcommand
        except ImportError:
            sys.stderr.write(f"{command}: the control plane is not available in this build\n")
            return 1
        return int(run_subcommand(opts))
    return run(opts.config or None, opts.exec_argv)


def _template(path: str | None, out: str) -> int:
    from pypilot.config import ConfigError, render

    try:
        text = render(path)
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    if out in ("", "-"):
        sys.stdout.write(text)
        return 0
    try:
        with open(out, "w", encoding="utf-8", errors="surrogateescape") as f:  # env bytes, as Go wrote them
            f.write(text)
        os.chmod(out, 0o644)
    except OSError as e:
        sys.stderr.write(f"could not write config file: {e}\n")
        return 1
    return 0


def _validate(path: str | None) -> int:
    from pypilot.config import check

    errors, warnings = check(path)
    for warning in warnings:
        sys.stdout.write(f"warning: {warning}\n")
    for err in errors:
        sys.stdout.write(f"{err}\n")
    if not errors:
        sys.stdout.write("config is valid\n")
    return 1 if errors else 0


def run(config_path: str | None, command: list[str] | None = None) -> int:
    """Supervise the config at ``config_path`` (or $CONTAINERPILOT), or, in tini mode, ``command``."""
    # No garbage collection before the first spawns: start-up makes few cycles, and the collections that
    # its allocations (imports, the config) set off cost ~2.6 M instructions of it. Supervisor.run
    # enables it again once the jobs have started; here, on the way out, for a start that fails.
    gc.disable()
    try:
        return _run(config_path, command)
    finally:
        gc.enable()


def _run(config_path: str | None, command: list[str] | None) -> int:
    from pypilot import logs, reaper

    sigfd = reaper.setup_signals()  # first: no thread may exist yet, and none may see a signal
    if "PYPILOT_UPGRADE_FD" in os.environ:  # exec'd by an in-place upgrade: take the state over
        from pypilot.upgrade import resume

        return resume(sigfd, command)
    os.environ["CONTAINERPILOT_PID"] = str(os.getpid())
    from pypilot.config import ConfigError, load

    try:
        if command:
            from pypilot.config.tini import command_config

            config = command_config(command)
        else:
            config = load(config_path)
        logs.configure(config.logging.level, config.logging.format, config.logging.output)
    except (ConfigError, ValueError) as e:
        logs.fatal_early(str(e))
        return 1
    if logs.enabled(logs.DEBUG):
        import orjson

        logs.debug(f"loaded config: {orjson.dumps(config, default=lambda o: o._asdict()).decode()}")
    if os.path.lexists(config.control.socket):  # a second supervisor must not run the jobs again
        from pypilot.control.socketfile import in_use_message, served_by

        serving = served_by(config.control.socket)
        if serving is not None:
            logs.log(logs.FATAL, in_use_message(config.control.socket, serving))
            return 1
    from pypilot.supervisor import Supervisor

    return Supervisor(config, sigfd).run()


if __name__ == "__main__":
    sys.exit(main())
