"""Command-line flags, parsed the way ContainerPilot 3's Go ``flag`` package parsed them (§8.2).

Go ``flag`` rules: ``-f`` and ``--f`` are the same; values are ``-f=v`` or ``-f v`` (bool flags take only
``-f`` or ``-f=v``); parsing stops at the first non-flag argument or at ``--``; an unknown or malformed flag
prints the error and the usage listing on stderr and exits 2; ``-h``/``-help`` print the usage and exit 2
(Go 1.9). This module only parses: ``parse_args`` returns ``Options`` or raises ``UsageError``.

Beyond ContainerPilot: ``-validate`` (check a config and print every error). Positional arguments are kept
in ``Options.args`` for later subcommands (``status``, ``job <name> signal|stop|start|restart``).
"""

from __future__ import annotations

from pypilot import __version__

__all__ = ["GIT_HASH", "VERSION_TEXT", "Options", "UsageError", "parse_args", "usage"]

try:  # written by release builds; a checkout is a dev build
    from pypilot._build import GIT_HASH
except ImportError:
    GIT_HASH = "dev-build-not-for-release"

VERSION_TEXT = f"Version: {__version__}\nGitHash: {GIT_HASH}\n"

# name -> (kind, usage). kind: "bool" | "string" | "multi". Usage text is CP's, tabs included.
_FLAGS: dict[str, tuple[str, str]] = {
    "version": ("bool", "Show version identifier and quit."),
    "template": ("bool", "Render template and quit."),
    "reload": ("bool", "Reload a ContainerPilot process through its control socket."),
    "config": ("string", "File path to JSON5 configuration file. Defaults to CONTAINERPILOT env var."),
    "out": ("string", "File path where to save rendered config file when '-template' is used.\n"
                      "\tDefaults to stdout ('-')."),
    "maintenance": ("string",
                    "Toggle maintenance mode for a ContainerPilot process through its control socket.\n"
                    "\tOptions: '-maintenance enable' or '-maintenance disable'"),
    "putmetric": ("multi", "Update metrics of a ContainerPilot process through its control socket.\n"
                           "\tPass metrics in the format: 'key=value'"),
    "putenv": ("multi", "Update environ of a ContainerPilot process through its control socket.\n"
                        "\tPass environment in the format: 'key=value'"),
    "ping": ("bool", "Check that the ContainerPilot control socket is up."),
    # beyond CP
    "validate": ("bool", "Check the configuration file, print every error and quit (exit 1 if any)."),
}


class Options:
    """The parsed flags (a plain class: ``dataclasses`` would cost ~7 ms of PID 1's start-up)."""

    def __init__(self) -> None:
        self.config = ""  # "" means: $CONTAINERPILOT (config.load applies the fallback)
        self.version = False
        self.template = False
        self.out = ""
        self.reload = False
        self.maintenance = ""
        self.putenv: list[tuple[str, str]] = []  # last duplicate wins, in first-seen order
        self.putmetric: list[tuple[str, str]] = []
        self.ping = False
        self.validate = False
        self.help = False
        self.args: list[str] = []  # positional: room for `status`, `job <name> ...`

    def __repr__(self) -> str:
        return f"Options({vars(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    @property
    def command(self) -> str:
        """What to do, by CP's precedence: version > template > reload > maintenance > putenv > putmetric
        > ping > (pypilot) validate > run."""
        for name, on in (("version", self.version), ("template", self.template), ("reload", self.reload),
                         ("maintenance", bool(self.maintenance)), ("putenv", bool(self.putenv)),
                         ("putmetric", bool(self.putmetric)), ("ping", self.ping),
                         ("validate", self.validate)):
            if on:
                return name
        return "run"

    @property
    def failure_prefix(self) -> str:
        """The fatal-message prefix for a failed control subcommand, naming its own flag (CP said ``-reload``
        for putenv and putmetric too; fixed)."""
        if self.command == "ping":
            return "-ping: failed: "
        return f"-{self.command}: failed to run subcommand: "


class UsageError(Exception):
    """Bad command line: print ``text`` on stderr and exit 2. ``message`` is empty for ``-help``."""

    def __init__(self, message: str, usage_text: str) -> None:
        self.message = message
        self.usage = usage_text
        self.text = f"{message}\n{usage_text}" if message else usage_text
        super().__init__(self.text)


def usage(prog: str = "pypilot") -> str:
    """Go 1.9's ``flag.Usage`` listing: ``Usage of PROG:`` and each flag, sorted by name."""
    lines = [f"Usage of {prog}:"]
    for name in sorted(_FLAGS):
        kind, text = _FLAGS[name]
        head = f"  -{name}" + {"bool": "", "string": " string", "multi": " value"}[kind]
        lines.append(head + ("\t" if len(head) <= 4 else "\n    \t") + text.replace("\n", "\n    \t"))
    return "\n".join(lines) + "\n"


def _pair(name: str, value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep:
        raise ValueError(f"flag value '{value}' was not in the format 'key=val'")
    return key, val


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_args(argv: list[str], prog: str = "pypilot") -> Options:
    """Parse ``argv`` (without the program name). Raises UsageError for what Go ``flag`` rejects."""
    opts = Options()
    multi: dict[str, dict[str, str]] = {"putenv": {}, "putmetric": {}}
    i = 0

    def fail(msg: str) -> UsageError:
        return UsageError(msg, usage(prog))

    while i < len(argv):
        s = argv[i]
        if len(s) < 2 or s[0] != "-":
            break  # the first non-flag ends the flags
        minuses = 2 if s[1] == "-" else 1
        if s == "--":
            i += 1
            break
        name = s[minuses:]
        if not name or name[0] in "-=":
            raise fail(f"bad flag syntax: {s}")
        i += 1
        name, has_value, value = name.partition("=")
        if name not in _FLAGS:
            if name in ("help", "h"):
                opts.help = True
                raise UsageError("", usage(prog))
            raise fail(f"flag provided but not defined: -{name}")
        kind = _FLAGS[name][0]
        if kind == "bool":
            if has_value:
                if value in _TRUE:
                    flag_on = True
                elif value in _FALSE:
                    flag_on = False
                else:
                    raise fail(f'invalid boolean value "{value}" for -{name}: '
                               f'strconv.ParseBool: parsing "{value}": invalid syntax')
            else:
                flag_on = True
            setattr(opts, name, flag_on)
            continue
        if not has_value:
            if i >= len(argv):
                raise fail(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        if kind == "multi":
            try:
                k, v = _pair(name, value)
            except ValueError as e:
                raise fail(f'invalid value "{value}" for flag -{name}: {e}') from None
            multi[name][k] = v
        else:
            setattr(opts, name, value)
    opts.args = list(argv[i:])
    opts.putenv = list(multi["putenv"].items())
    opts.putmetric = list(multi["putmetric"].items())
    return opts
