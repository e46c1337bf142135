"""CLI flag parsing (§8.2): Go ``flag`` rules and messages, and pypilot's subcommands (#21).

Expectations are literal: the usage text and the defaults are written out here, not taken from the
product's own ``usage()`` or ``Options()`` (#20).
"""
# ruff: noqa: E501 (table rows read best on one line each)

from __future__ import annotations

import subprocess
import sys

import pytest

from pypilot.cli import VERSION_TEXT, UsageError, parse_args, subcommand_usage, usage

# Go 1.9's flag listing for CP's flags, as ContainerPilot 3.8.0 -h prints it (with pypilot's three)
CP_LISTING = (
    "  -config string\n"
    "    \tFile path to JSON5 configuration file. Defaults to CONTAINERPILOT env var.\n"
    "  -maintenance string\n"
    "    \tToggle maintenance mode for a ContainerPilot process through its control socket.\n"
    "    \t\tOptions: '-maintenance enable' or '-maintenance disable'\n"
    "  -out string\n"
    "    \tFile path where to save rendered config file when '-template' is used.\n"
    "    \t\tDefaults to stdout ('-').\n"
    "  -ping\n"
    "    \tCheck that the ContainerPilot control socket is up.\n"
    "  -putenv value\n"
    "    \tUpdate environ of a ContainerPilot process through its control socket.\n"
    "    \t\tPass environment in the format: 'key=value'\n"
    "  -putmetric value\n"
    "    \tUpdate metrics of a ContainerPilot process through its control socket.\n"
    "    \t\tPass metrics in the format: 'key=value'\n"
    "  -reload\n"
    "    \tReload a ContainerPilot process through its control socket.\n"
    "  -socket string\n"
    "    \tControl socket for the client commands (-reload, -ping, status, job, ...).\n"
    "    \t\tDefaults to PYPILOT_SOCKET, else control.socket of the config.\n"
    "  -template\n"
    "    \tRender template and quit.\n"
    "  -upgrade string\n"
    "    \tUpgrade the running pypilot in place: PID 1 checks the pypilot at this\n"
    "    \t\tpath, then continues as it (exec), every job kept running.\n"
    "    \t\tExits 1 if it was refused or rolled back.\n"
    "  -validate\n"
    "    \tCheck the configuration file, print every error and quit (exit 1 if any).\n"
    "  -version\n"
    "    \tShow version identifier and quit.\n"
)


def usage_error(argv: list[str]) -> UsageError:
    with pytest.raises(UsageError) as e:
        parse_args(argv)
    return e.value


@pytest.mark.parametrize("argv", [["-config", "/x"], ["--config", "/x"], ["-config=/x"], ["--config=/x"]])
def test_value_forms(argv: list[str]) -> None:
    assert parse_args(argv).config == "/x"


def test_bools_and_precedence() -> None:
    o = parse_args(["-ping", "-reload", "-version=false", "--template=true"])
    assert (o.ping, o.reload, o.version, o.template) == (True, True, False, True)
    assert o.command == "template"
    assert parse_args([]).command == "run"
    assert parse_args(["-validate", "-config", "x"]).command == "validate"


def test_repeatable_pairs_last_wins() -> None:
    o = parse_args(["-putenv", "A=1", "-putenv=B=x=y", "--putenv", "A=2", "-putmetric", "m=3"])
    assert o.putenv == [("A", "2"), ("B", "x=y")]
    assert o.putmetric == [("m", "3")]
    assert o.command == "putenv"
    assert o.failure_prefix == "-putenv: failed to run subcommand: "
    assert parse_args(["-putmetric", "m=1"]).failure_prefix == "-putmetric: failed to run subcommand: "
    assert parse_args(["-ping"]).failure_prefix == "-ping: failed: "


@pytest.mark.parametrize("value", ["enable", "disable"])
def test_maintenance_value(value: str) -> None:
    o = parse_args(["-maintenance", value])
    assert (o.maintenance, o.command) == (value, "maintenance")


def test_maintenance_other_value_is_usage_error_21() -> None:
    """CP disabled maintenance on any other word (a typo of `enable` did the opposite): exit 2."""
    e = usage_error(["-maintenance", "bogus"])
    assert e.message == "invalid value \"bogus\" for flag -maintenance: must be 'enable' or 'disable'"
    assert e.code == 2 and e.text.startswith(e.message + "\nUsage of pypilot:\n")


def test_missing_value_before_another_flag_says_so_21() -> None:
    """`-maintenance -config a.json5`: Go took `-config` as the value; say the value is missing."""
    e = usage_error(["-maintenance", "-config", "a.json5"])
    assert e.message == ("flag needs an argument: -maintenance (the next word, -config, is a flag: "
                         "write -maintenance enable|disable -config ...)")
    assert usage_error(["-config", "--ping"]).message.startswith("flag needs an argument: -config (the next word, --ping,")
    assert parse_args(["-out", "-"]).out == "-"  # a lone "-" is stdout, not a flag


@pytest.mark.parametrize("word", ["stats", "run", "a.json5", "STATUS", "jobs"])
def test_unknown_positional_word_is_usage_error_21(word: str) -> None:
    """`pypilot -config f stats` (a typo) must not start a second supervisor."""
    e = usage_error(["-config", "c", word])
    assert e.message == f'unknown subcommand "{word}": the subcommands are status, job, logs (anything else is a flag)'
    assert e.code == 2
    assert parse_args(["--", word]).exec_argv == [word]  # after --, a word is tini mode's command (#16)


def test_unknown_word_exits_2_without_starting_anything(tmp_path) -> None:
    marker = tmp_path / "ran"
    cfg = tmp_path / "c.json5"
    cfg.write_text(f'{{consul: "127.0.0.1:1", control: {{socket: "{tmp_path / "s.sock"}"}}, '
                   f'jobs: [{{name: "a", exec: ["touch", "{marker}"]}}]}}')
    proc = subprocess.run([sys.executable, "-m", "pypilot", "-config", str(cfg), "stats"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith('unknown subcommand "stats"')
    assert proc.stdout == "" and not marker.exists() and not (tmp_path / "s.sock").exists()


def test_subcommands_parse() -> None:
    o = parse_args(["-config", "c", "status", "-json"])
    assert (o.subcommand, o.command, o.json, o.config, o.args) == ("status", "status", True, "c", ["status", "-json"])
    o = parse_args(["status", "--json", "-config", "f"])  # -config after the subcommand works too
    assert (o.json, o.config) == (True, "f")
    o = parse_args(["job", "web", "signal", "HUP", "-socket=/s"])
    assert (o.command, o.job_name, o.job_action, o.job_signal, o.socket) == ("job", "web", "signal", "HUP", "/s")
    o = parse_args(["-socket", "/run/p.sock", "job", "web", "restart"])
    assert (o.job_action, o.socket, o.job_signal) == ("restart", "/run/p.sock", "")


@pytest.mark.parametrize(("argv", "msg"), [
    (["status", "-bogus"], "status: flag provided but not defined: -bogus"),
    (["status", "extra"], "status: unexpected argument 'extra'"),
    (["status", "-config"], "status: flag needs an argument: -config"),
    (["job"], "job: the job's NAME and an action are missing"),
    (["job", "web"], "job: the action is missing: one of signal, stop, start, restart"),
    (["job", "web", "kill"], "job: unknown action 'kill': one of signal, stop, start, restart"),
    (["job", "web", "signal"], "job: signal takes one SIGNAL (a name such as SIGHUP, or a number)"),
    (["job", "web", "stop", "now"], "job: stop takes no more arguments (got 'now')"),
    (["-ping", "status"], "-ping and the status subcommand cannot be used together"),
])
def test_subcommand_usage_errors(argv: list[str], msg: str) -> None:
    e = usage_error(argv)
    assert e.message == msg and e.code == 2


@pytest.mark.parametrize("sub", ["status", "job"])
@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_subcommand_help_is_its_own_21(sub: str, flag: str) -> None:
    """`pypilot status -h` printed `-config flag is required`; now the subcommand's help, exit 0."""
    e = usage_error([sub, flag])
    assert (e.message, e.code, e.to_stdout) == ("", 0, True)
    assert e.text.startswith(f"Usage: pypilot {sub} ")
    assert "-socket PATH" in e.text and "$PYPILOT_SOCKET" in e.text and "-config flag is required" not in e.text


def test_status_help_through_the_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "pypilot", "status", "-h"], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: pypilot status [-json] [-config FILE | -socket PATH]\n")
    assert "  -json\n    \tPrint the whole status document as JSON instead of the table.\n" in proc.stdout


def test_job_help_lists_the_actions() -> None:
    text = subcommand_usage("job")
    assert text.startswith("Usage: pypilot job NAME signal SIGNAL|stop|start|restart [-config FILE | -socket PATH]\n")
    for action in ("  signal SIGNAL\t", "  stop\t\t", "  start\t\t", "  restart\t"):
        assert action in text


@pytest.mark.parametrize(("argv", "msg"), [
    (["-x"], "flag provided but not defined: -x"),
    (["--nope=1"], "flag provided but not defined: -nope"),
    (["-config"], "flag needs an argument: -config"),
    (["-putenv", "A"], "invalid value \"A\" for flag -putenv: flag value 'A' was not in the format 'key=val'"),
    (["-ping=maybe"], 'invalid boolean value "maybe" for -ping: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["---x"], "bad flag syntax: ---x"),
    (["-=x"], "bad flag syntax: -=x"),
])
def test_usage_errors(argv: list[str], msg: str) -> None:
    e = usage_error(argv)
    assert e.message == msg and e.code == 2
    assert e.text.startswith(msg + "\nUsage of pypilot:\n" + CP_LISTING)


@pytest.mark.parametrize("argv", [["-h"], ["-help"], ["--help"], ["help"], ["-config", "x", "help"]])
def test_help_lists_flags_and_subcommands_21(argv: list[str]) -> None:
    e = usage_error(argv)
    assert e.message == "" and e.code == 2  # Go 1.9's flag: -h exits 2, as CP did
    assert e.text.startswith("Usage of pypilot:\n" + CP_LISTING + "\n")
    assert ("Subcommands (pypilot SUBCOMMAND -h for each one's help):\n"
            "  status [-json] [-config FILE | -socket PATH]\n"
            "    \tShow every job's state, PID, runs, last exit and backoff (GET /v3/status).\n"
            "  job NAME signal SIGNAL|stop|start|restart [-config FILE | -socket PATH]\n") in e.text
    assert "$PYPILOT_SOCKET" in e.text and "$CONTAINERPILOT" in e.text


def test_usage_listing_program_name() -> None:
    assert usage("containerpilot").startswith("Usage of containerpilot:\n" + CP_LISTING)


def test_version_text() -> None:
    assert VERSION_TEXT.startswith("Version: ")
    assert "\nGitHash: " in VERSION_TEXT and VERSION_TEXT.endswith("\n")


def test_options_defaults() -> None:
    o = parse_args([])
    assert vars(o) == {
        "config": "", "version": False, "template": False, "out": "", "reload": False, "upgrade": "",
        "maintenance": "",
        "putenv": [], "putmetric": [], "ping": False, "validate": False, "socket": "", "help": False,
        "args": [], "subcommand": "", "json": False, "job_name": "", "job_action": "", "job_signal": "",
        "exec_argv": [],
        "logs_lines": None, "logs_follow": False,
    }
    assert o.command == "run"


def test_logs_subcommand_takes_a_name_lines_and_follow_16() -> None:
    o = parse_args(["logs", "web", "-n", "5", "-f", "-socket", "/s"])
    assert (o.command, o.job_name, o.logs_lines, o.logs_follow, o.socket) == ("logs", "web", 5, True, "/s")
    o = parse_args(["logs", "-n=0", "-follow", "web"])
    assert (o.job_name, o.logs_lines, o.logs_follow) == ("web", 0, True)
    o = parse_args(["logs", "web"])
    assert (o.logs_lines, o.logs_follow) == (None, False)
    for argv, why in ((["logs"], "logs: the job's NAME is missing"),
                      (["logs", "a", "b"], "logs: unexpected argument 'b'"),
                      (["logs", "a", "-n", "x"], "logs: -n takes a whole number of lines, not 'x'"),
                      (["logs", "a", "-n"], "logs: flag needs an argument: -n"),
                      (["logs", "a", "-json"], "logs: flag provided but not defined: -json")):
        e = usage_error(argv)
        assert (e.message, e.code) == (why, 2), argv
    e = usage_error(["logs", "-h"])
    assert e.code == 0 and e.usage.startswith("Usage: pypilot logs NAME [-n N] [-f]") and "-follow" in e.usage
