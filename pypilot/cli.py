"""Command-line flags, parsed the way ContainerPilot 3's Go ``flag`` package parsed them (§8.2), and
pypilot's subcommands.

Go ``flag`` rules: ``-f`` and ``--f`` are the same; values are ``-f=v`` or ``-f v`` (bool flags take only
``-f`` or ``-f=v``); parsing stops at the first non-flag argument or at ``--``; an unknown or malformed flag
prints the error and the usage listing on stderr and exits 2; ``-h``/``-help`` print the usage and exit 2
(Go 1.9). This module only parses: ``parse_args`` returns ``Options`` or raises ``UsageError``.

Beyond ContainerPilot: ``-validate`` (check a config and print every error), ``-socket PATH`` (the control
socket for client commands, without a config), and the subcommands ``status``, ``job`` and ``logs``, each
with its own flags and ``-h``. Stricter than ContainerPilot, because a slip must not start a second
supervisor or do the opposite of what was meant: a positional word that is not a subcommand is a usage error
(CP ignored it and started the supervisor), ``-maintenance`` takes only ``enable`` or ``disable`` (CP
disabled on anything), and a string flag followed by another flag (``-maintenance -config f``) says the
value is missing.

tini mode (beyond CP): ``pypilot -- CMD ARGS...`` runs CMD as the one main job, with no config file
(``Options.exec_argv``); ``-config`` with it is a usage error.
"""

from __future__ import annotations

from pypilot import __version__

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Callable

    GIT_HASH: str  # both made at their first read: __getattr__
    VERSION_TEXT: str

__all__ = ["GIT_HASH", "SUBCOMMANDS", "VERSION_TEXT", "Options", "UsageError", "parse_args", "usage"]


def __getattr__(name: str) -> str:
    """``GIT_HASH`` and ``VERSION_TEXT``, made when first read (``-version``): the import of
    ``pypilot._build``, which fails in a dev build, cost every start ~0.1 M instructions."""
    if name == "GIT_HASH":
        try:  # written by release builds; a checkout is a dev build
            from pypilot._build import GIT_HASH
        except ImportError:
            GIT_HASH = "dev-build-not-for-release"
        globals()["GIT_HASH"] = GIT_HASH
        return GIT_HASH
    if name == "VERSION_TEXT":
        text = globals()["VERSION_TEXT"] = f"Version: {__version__}\nGitHash: {__getattr__('GIT_HASH')}\n"
        return text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "upgrade": ("string", "Upgrade the running pypilot in place: PID 1 checks the pypilot at this\n"
                          "\tpath, then continues as it (exec), every job kept running.\n"
                          "\tExits 1 if it was refused or rolled back."),
    "socket": ("string", "Control socket for the client commands (-reload, -ping, status, job, ...).\n"
                         "\tDefaults to PYPILOT_SOCKET, else control.socket of the config."),
}

_SOCKET_NOTE = ("Client commands (-reload, -upgrade, -maintenance, -putenv, -putmetric, -ping, status, job, "
                "logs) find the socket\nfrom -socket, else $PYPILOT_SOCKET, else control.socket of the "
                "config (-config or "
                "$CONTAINERPILOT;\nread leniently: a config that does not validate still gives its socket), "
                "else\n/var/run/containerpilot.socket.\n")

# subcommand -> (synopsis, description); the positional words pypilot accepts
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "status": ("status [-json] [-config FILE | -socket PATH]",
               "Show every job's state, PID, runs, last exit and backoff (GET /v3/status)."),
    "job": ("job NAME signal SIGNAL|stop|start|restart [-config FILE | -socket PATH]",
            "Signal, stop, start or restart one job and print its state after the action."),
    "logs": ("logs NAME [-n N] [-f] [-config FILE | -socket PATH]",
             "Print the job's recent output (the last 1000 lines, 256 KiB at most); -f follows new lines."),
}
JOB_ACTIONS = ("signal", "stop", "start", "restart")


class Options:
    """The parsed flags (a plain class: ``dataclasses`` would cost ~7 ms of PID 1's start-up)."""

    def __init__(self) -> None:
        self.config = ""  # "" means: $CONTAINERPILOT (config.load applies the fallback)
        self.version = False
        self.template = False
        self.out = ""
        self.reload = False
        self.upgrade = ""  # -upgrade PATH
        self.maintenance = ""
        self.putenv: list[tuple[str, str]] = []  # last duplicate wins, in first-seen order
        self.putmetric: list[tuple[str, str]] = []
        self.ping = False
        self.validate = False
        self.socket = ""  # "" means: $PYPILOT_SOCKET, else the config's control.socket
        self.help = False
        self.args: list[str] = []  # the subcommand's words, as given (``status -json``)
        self.subcommand = ""  # "" | "status" | "job"
        self.json = False  # status -json
        self.job_name = ""
        self.job_action = ""  # signal | stop | start | restart
        self.job_signal = ""
        self.exec_argv: list[str] = []  # tini mode: the command after ``--``
        self.logs_lines: int | None = None  # logs -n N; None: every line kept
        self.logs_follow = False  # logs -f

    def __repr__(self) -> str:
        return f"Options({vars(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    @property
    def command(self) -> str:
        """What to do, by CP's precedence: version > template > reload > maintenance > putenv > putmetric
        > ping > (pypilot) validate > a subcommand > run."""
        for name, on in (("version", self.version), ("template", self.template), ("reload", self.reload),
                         ("upgrade", bool(self.upgrade)), ("maintenance", bool(self.maintenance)),
                         ("putenv", bool(self.putenv)),
                         ("putmetric", bool(self.putmetric)), ("ping", self.ping),
                         ("validate", self.validate)):
            if on:
                return name
        return self.subcommand or "run"

    @property
    def failure_prefix(self) -> str:
        """The fatal-message prefix for a failed control subcommand, naming its own flag (CP said ``-reload``
        for putenv and putmetric too; fixed)."""
        if self.command == "ping":
            return "-ping: failed: "
        return f"-{self.command}: failed to run subcommand: "


class UsageError(Exception):
    """Bad command line: print ``text`` on stderr and exit ``code`` (2). ``message`` is empty for a help
    request; a subcommand's ``-h`` has code 0 and goes to stdout (``to_stdout``)."""

    def __init__(self, message: str, usage_text: str, code: int = 2) -> None:
        self.message = message
        self.usage = usage_text
        self.code = code
        self.to_stdout = code == 0
        self.text = f"{message}\n{usage_text}" if message else usage_text
        super().__init__(self.text)


def usage(prog: str = "pypilot") -> str:
    """Go 1.9's ``flag.Usage`` listing (``Usage of PROG:`` and each flag, sorted by name), then the
    subcommands and where client commands find the socket."""
    lines = [f"Usage of {prog}:"]
    for name in sorted(_FLAGS):
        kind, text = _FLAGS[name]
        head = f"  -{name}" + {"bool": "", "string": " string", "multi": " value"}[kind]
        lines.append(head + ("\t" if len(head) <= 4 else "\n    \t") + text.replace("\n", "\n    \t"))
    lines.append("")
    lines.append(f"Subcommands ({prog} SUBCOMMAND -h for each one's help):")
    for synopsis, text in SUBCOMMANDS.values():
        lines.append(f"  {synopsis}\n    \t{text}")
    lines.append("")
    lines.append(f"  {prog} [-flags] -- CMD [ARGS...]\n"
                 "    \tRun CMD as the one main job, without a config file (tini mode): orphans reaped,\n"
                 "    \tsignals handled as ever, the exit code is CMD's; a terminal on stdin becomes CMD's.")
    lines.append("")
    return "\n".join(lines) + "\n" + _SOCKET_NOTE


def subcommand_usage(name: str, prog: str = "pypilot") -> str:
    synopsis, text = SUBCOMMANDS[name]
    more = ""
    if name == "status":
        more = "  -json\n    \tPrint the whole status document as JSON instead of the table.\n"
    elif name == "job":
        more = ("  signal SIGNAL\tsend SIGNAL (a name such as SIGHUP or HUP, or a number) to the job's "
                "process group\n"
                "  stop\t\tstop the job (its stop signal, then SIGKILL after its grace) and hold it\n"
                "  start\t\tstart a stopped or waiting job\n"
                "  restart\tstop the job's process and start it again\n")
    elif name == "logs":
        more = ("  -n N\n    \tonly the last N lines (default: every line kept)\n"
                "  -f, -follow\n    \tafter them, print each new line as it comes, until interrupted\n")
    return (f"Usage: {prog} {synopsis}\n{text}\n{more}"
            "  -config FILE\n    \tthe config whose control.socket to use (or $CONTAINERPILOT)\n"
            "  -socket PATH\n    \tthe control socket (or $PYPILOT_SOCKET)\n\n" + _SOCKET_NOTE)


def _pair(name: str, value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep:
        raise ValueError(f"flag value '{value}' was not in the format 'key=val'")
    return key, val


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_HELP = ("help", "h")


def _flag_name(word: str) -> str | None:
    """The flag ``word`` names (``-config``, ``--ping=1``), or None if it is no flag pypilot knows."""
    if len(word) < 2 or word[0] != "-":
        return None
    name = word[2:] if word[1] == "-" else word[1:]
    name = name.partition("=")[0]
    return name if name in _FLAGS or name in _HELP else None


def parse_args(argv: list[str], prog: str = "pypilot") -> Options:
    """Parse ``argv`` (without the program name). Raises UsageError for what Go ``flag`` rejects, for an
    unknown positional word, and for a subcommand's bad arguments."""
    opts = Options()
    multi: dict[str, dict[str, str]] = {"putenv": {}, "putmetric": {}}
    i = 0
    dashdash = False

    def fail(msg: str) -> UsageError:
        return UsageError(msg, usage(prog))

    while i < len(argv):
        s = argv[i]
        if len(s) < 2 or s[0] != "-":
            break  # the first non-flag ends the flags
        minuses = 2 if s[1] == "-" else 1
        if s == "--":
            i += 1
            dashdash = True
            break
        name = s[minuses:]
        if not name or name[0] in "-=":
            raise fail(f"bad flag syntax: {s}")
        i += 1
        name, has_value, value = name.partition("=")
        if name not in _FLAGS:
            if name in _HELP:
                opts.help = True
                raise UsageError("", usage(prog))
            raise fail(f"flag provided but not defined: -{name}")
        kind = _FLAGS[name][0]
        if kind == "bool":
            setattr(opts, name, _bool_flag(name, value if has_value else None, fail))
            continue
        if not has_value:
            if i >= len(argv):
                raise fail(f"flag needs an argument: -{name}")
            value = argv[i]
            other = _flag_name(value)
            if other is not None:  # Go would take "-config" as the value: say what is missing instead
                wanted = "enable|disable" if name == "maintenance" else "VALUE"
                raise fail(f"flag needs an argument: -{name} (the next word, {value}, is a flag: "
                           f"write -{name} {wanted} {value} ...)")
            i += 1
        if kind == "multi":
            try:
                k, v = _pair(name, value)
            except ValueError as e:
                raise fail(f'invalid value "{value}" for flag -{name}: {e}') from None
            multi[name][k] = v
        else:
            setattr(opts, name, value)
    if opts.maintenance and opts.maintenance not in ("enable", "disable"):
        raise fail(f'invalid value "{opts.maintenance}" for flag -maintenance: '
                   "must be 'enable' or 'disable'")
    opts.putenv = list(multi["putenv"].items())
    opts.putmetric = list(multi["putmetric"].items())
    _positional(opts, list(argv[i:]), dashdash, fail, prog)
    return opts


def _bool_flag(name: str, value: str | None, fail: Callable[[str], UsageError]) -> bool:
    """A bool flag takes only ``-f`` or ``-f=v`` (Go's strconv.ParseBool words)."""
    if value is None or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise fail(f'invalid boolean value "{value}" for -{name}: '
               f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _positional(opts: Options, rest: list[str], dashdash: bool, fail: Callable[[str], UsageError],
                prog: str) -> None:
    """What follows the flags: tini mode's command after ``--``, or a subcommand and its arguments."""
    if dashdash:
        if not rest:
            raise fail("-- needs a command to run: pypilot -- CMD [ARGS...]")
        if opts.config:
            raise fail("-config and a command after -- cannot be used together: the command is the whole "
                       "config (tini mode)")
        opts.exec_argv = rest
        return
    if not rest:
        return
    word = rest[0]
    if word == "help":
        opts.help = True
        raise UsageError("", usage(prog))
    if word not in SUBCOMMANDS:
        raise fail(f'unknown subcommand "{word}": the subcommands are {", ".join(SUBCOMMANDS)} '
                   "(anything else is a flag)")
    if opts.command != "run":
        raise fail(f"-{opts.command} and the {word} subcommand cannot be used together")
    opts.args = rest
    opts.subcommand = word
    _parse_subcommand(opts, word, rest[1:], prog)


def _parse_subcommand(opts: Options, sub: str, argv: list[str], prog: str) -> None:
    """A subcommand's own words and flags (``-config``, ``-socket``, ``-json``, ``-h``), in any order."""

    def fail(msg: str) -> UsageError:
        return UsageError(f"{sub}: {msg}", subcommand_usage(sub, prog))

    words: list[str] = []
    i = 0
    while i < len(argv):
        s = argv[i]
        i += 1
        if len(s) < 2 or s[0] != "-" or s == "--":
            if s != "--":
                words.append(s)
            else:
                words.extend(argv[i:])
                break
            continue
        name, has_value, value = s.lstrip("-").partition("=")
        if name in _HELP:
            opts.help = True
            raise UsageError("", subcommand_usage(sub, prog), code=0)
        if name == "json" and sub == "status":
            opts.json = True
            continue
        if name in ("f", "follow") and sub == "logs" and not has_value:
            opts.logs_follow = True
            continue
        if name == "n" and sub == "logs":
            if not has_value:
                if i >= len(argv):
                    raise fail("flag needs an argument: -n")
                value = argv[i]
                i += 1
            if not value.isdigit():
                raise fail(f"-n takes a whole number of lines, not {value!r}")
            opts.logs_lines = int(value)
            continue
        if name not in ("config", "socket"):
            raise fail(f"flag provided but not defined: -{name}")
        if not has_value:
            if i >= len(argv) or _flag_name(argv[i]) is not None or argv[i] == "-json":
                raise fail(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        setattr(opts, name, value)
    _subcommand_words(opts, sub, words, fail)


def _subcommand_words(opts: Options, sub: str, words: list[str], fail: Callable[[str], UsageError]) -> None:
    """A subcommand's positional words: none for status, NAME for logs, NAME ACTION [SIGNAL] for job."""
    if sub == "status":
        if words:
            raise fail(f"unexpected argument {words[0]!r}")
        return
    if sub == "logs":
        if len(words) != 1:
            raise fail("the job's NAME is missing" if not words else f"unexpected argument {words[1]!r}")
        opts.job_name = words[0]
        return
    if not words:
        raise fail("the job's NAME and an action are missing")
    if len(words) < 2:
        raise fail(f"the action is missing: one of {', '.join(JOB_ACTIONS)}")
    name, action, extra = words[0], words[1], words[2:]
    if action not in JOB_ACTIONS:
        raise fail(f"unknown action {action!r}: one of {', '.join(JOB_ACTIONS)}")
    if action == "signal":
        if len(extra) != 1:
            raise fail("signal takes one SIGNAL (a name such as SIGHUP, or a number)")
        opts.job_signal = extra[0]
    elif extra:
        raise fail(f"{action} takes no more arguments (got {extra[0]!r})")
    opts.job_name, opts.job_action = name, action
