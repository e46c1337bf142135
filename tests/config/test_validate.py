"""What ``-validate`` must catch and say (#21), and ContainerPilot 3.8's decoding of odd values (#14).

Every "as ContainerPilot does" here was observed with ContainerPilot 3.8.0 itself (``containerpilot -config
F`` as PID 1 of a PID namespace): the outcome is pinned literally, not derived from pypilot's code.
"""
# ruff: noqa: E501 (literal messages read best on one line each)

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pypilot.config import ConfigError, check, load, validate_all
from pypilot.config.model import UNLIMITED

from .conftest import ADDRS

C = 'consul: "c:8500"'
J = "unable to parse jobs: "
MIN_INT64 = -(1 << 63)


def one_error(write, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(write(text), {}, addresses=ADDRS)
    return str(e.value)


def validate_cli(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypilot", "-validate", "-config", path], capture_output=True,
                          text=True, timeout=30)


# --- duplicates (CP ran both jobs, and `job a stop` stopped both) ---------------------------------------


def test_duplicate_job_names_are_an_error_naming_them(write) -> None:
    text = f'{{{C}, jobs: [{{name: "a", exec: "x"}}, {{name: "b", exec: "y"}}, {{name: "a", exec: "z"}}]}}'
    assert one_error(write, text) == J + "job[a] is defined 2 times, at jobs[0], jobs[2]: job names must be unique"


def test_two_main_jobs_are_an_error_naming_them(write) -> None:
    text = f'{{{C}, jobs: [{{name: "a", exec: "x", main: true}}, {{name: "b", exec: "y", main: "true"}}, {{name: "c", exec: "z", main: false}}]}}'
    assert one_error(write, text) == J + "only one job can have 'main: true'; 2 have it: \"a\" (jobs[0]), \"b\" (jobs[1])"


def test_user_job_named_like_the_telemetry_job(write) -> None:
    text = f'{{{C}, telemetry: {{port: 9090, interfaces: ["lo"]}}, jobs: [{{name: "containerpilot", exec: "x"}}]}}'
    assert one_error(write, text) == J + "job[containerpilot] clashes with the job that telemetry adds under that name: rename it"
    assert [j.name for j in load(write(f'{{{C}, jobs: [{{name: "containerpilot", exec: "x"}}]}}'), {}).jobs] == ["containerpilot"]


def test_validate_cli_reports_duplicates_exit_1(write) -> None:
    proc = validate_cli(write(f'{{{C}, jobs: [{{name: "a", exec: "x", main: true}}, {{name: "a", exec: "y", main: true}}]}}'))
    assert proc.returncode == 1
    assert proc.stdout == (J + "job[a] is defined 2 times, at jobs[0], jobs[1]: job names must be unique\n"
                           + J + "only one job can have 'main: true'; 2 have it: \"a\" (jobs[0]), \"a\" (jobs[1])\n")


# --- -validate goes on past a decode error ---------------------------------------------------------------


def test_validate_shows_every_typo_at_once_21(write) -> None:
    """`backoff.intial` used to show only after the other typos were fixed (the job with a decode error
    was not checked further)."""
    path = write(f'{{{C}, control: {{sockt: "/s", socketMode: 438}}, '
                 'jobs: [{name: "web", exec: "x", restrats: 2, backoff: {intial: "1s"}, when: {interval: "x"}}], '
                 'watches: [{name: "db", intervl: 3}], logging: {levle: "debug"}}')
    assert validate_all(path, {}, addresses=ADDRS) == [
        "1 error(s) decoding:\n\n* '' has invalid keys: levle (in logging)",
        "unable to parse control: control config parsing error: 1 error(s) decoding:\n\n* '' has invalid keys: sockt (in control)",
        "unable to parse control: control.socketMode '438' invalid: must be an octal mode such as \"0600\" (a number is read as octal digits, as chmod reads them)",
        J + "job configuration error: 1 error(s) decoding:\n\n* '[0]' has invalid keys: restrats (in jobs[0], job \"web\")",
        J + "unable to parse job[web].when.interval 'x': time: invalid duration x",
        J + "job[web].backoff: 1 error(s) decoding:\n\n* '[web].backoff' has invalid keys: intial (in jobs[0].backoff)",
        "unable to parse watches: Watch configuration error: 1 error(s) decoding:\n\n* '[0]' has invalid keys: intervl (in watches[0], watch \"db\")",
        "unable to parse watches: watch[db].interval must be > 0",
    ]
    # load still raises the first, as ContainerPilot did
    assert one_error(write, Path(path).read_text()) == "1 error(s) decoding:\n\n* '' has invalid keys: levle (in logging)"


def test_validate_skips_a_job_whose_name_did_not_decode(write) -> None:
    path = write(f'{{{C}, jobs: [{{name: ["x"], port: 80}}]}}')
    assert validate_all(path, {}, addresses=ADDRS) == [
        J + "job configuration error: 1 error(s) decoding:\n\n* '[0].name' expected type 'string', got unconvertible type '[]interface {}' (in jobs[0].name)",
    ]


# --- keys in the wrong case: accepted (CP's mapstructure matched case-insensitively), but warned -------


def test_wrong_case_keys_are_applied_and_warned_21(write) -> None:
    path = write(f'{{{C}, control: {{SOCKET: "/s.sock"}}, logging: {{LEVEL: "debug", format: "text"}}, '
                 'jobs: [{name: "a", exec: "x", MAIN: true, stopsignal: "SIGINT", exitcodemap: {"143": 0}, '
                 'Health: {exec: "h", interval: 1, TTL: 3}}]}')
    cfg = load(path, {}, addresses=ADDRS)
    job = cfg.jobs[0]
    assert (job.main, job.stop_signal, job.exit_code_map) == (True, 2, ((143, 0),))
    assert job.health is not None and job.health.ttl == 3
    assert (cfg.control.socket, cfg.logging.level, cfg.logging.format) == ("/s.sock", "DEBUG", "text")
    errors, warnings = check(path, {}, addresses=ADDRS)
    assert errors == []
    assert warnings == [
        "logging.LEVEL: the key is 'level'; 'LEVEL' is accepted because ContainerPilot matched keys case-insensitively",
        "control.SOCKET: the key is 'socket'; 'SOCKET' is accepted because ContainerPilot matched keys case-insensitively",
        "jobs[0].Health, job \"a\": the key is 'health'; 'Health' is accepted because ContainerPilot matched keys case-insensitively",
        "jobs[0].Health.TTL, job \"a\": the key is 'ttl'; 'TTL' is accepted because ContainerPilot matched keys case-insensitively",
        "jobs[0].stopsignal, job \"a\": the key is 'stopSignal'; 'stopsignal' is accepted because ContainerPilot matched keys case-insensitively",
        "jobs[0].MAIN, job \"a\": the key is 'main'; 'MAIN' is accepted because ContainerPilot matched keys case-insensitively",
        "jobs[0].exitcodemap, job \"a\": the key is 'exitCodeMap'; 'exitcodemap' is accepted because ContainerPilot matched keys case-insensitively",
    ]


def test_validate_cli_prints_warnings_and_stays_valid(write) -> None:
    proc = validate_cli(write(f'{{{C}, jobs: [{{name: "a", EXEC: "x"}}]}}'))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == ("warning: jobs[0].EXEC, job \"a\": the key is 'exec'; 'EXEC' is accepted because "
                           "ContainerPilot matched keys case-insensitively\nconfig is valid\n")


def test_documented_lower_case_logging_keys_do_not_warn(write) -> None:
    assert check(write(f'{{{C}, logging: {{level: "info", format: "json", output: "stdout"}}}}'), {}) == ([], [])
    assert check(write(f'{{{C}, logging: {{Level: "info"}}}}'), {}) == ([], [])  # CP's Go field name


# --- socketMode as a number ----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "want"), [("600", 0o600), ("660", 0o660), ("666", 0o666), ("0", 0),
                                            ('"0600"', 0o600), ('"660"', 0o660)])
def test_socket_mode_number_is_read_as_octal_digits_21(write, mode: str, want: int) -> None:
    cfg = load(write(f"{{{C}, control: {{socketMode: {mode}}}}}"), {})
    assert cfg.control.socket_mode == want


@pytest.mark.parametrize("mode", ["438", "384", "0x180", "6.5", "-600", "1000"])
def test_socket_mode_number_that_is_not_octal_is_refused_with_the_fix(write, mode: str) -> None:
    msg = one_error(write, f"{{{C}, control: {{socketMode: {mode}}}}}")
    assert msg.startswith("unable to parse control: control.socketMode '")
    assert msg.endswith("' invalid: must be an octal mode such as \"0600\" (a number is read as octal digits, as chmod reads them)")


# --- exec splitting: ContainerPilot's strings.Split(strings.TrimSpace(s), " ") ----------------------------


def test_exec_runs_of_spaces_give_empty_arguments_as_cp_21(write) -> None:
    """CP 3.8 ran `"/tmp/args.sh  a  b "` with four arguments: "", "a", "", "b"."""
    path = write(f'{{{C}, jobs: [{{name: "p", exec: "printf [%s]  a  b "}}]}}')
    assert load(path, {}).jobs[0].exec == ("printf", "[%s]", "", "a", "", "b")
    assert check(path, {}) == ([], [
        'job[p].exec: "printf [%s]  a  b " has 2 empty arguments: the string is split on each single space, as '
        "ContainerPilot did; use single spaces, or an array"])


def test_exec_trims_go_whitespace_only(write) -> None:
    assert load(write(f'{{{C}, jobs: [{{name: "p", exec: "\\t x y\\n"}}]}}'), {}).jobs[0].exec == ("x", "y")
    # \x1c is whitespace to Python's str.strip but not to Go's TrimSpace
    assert load(write(f'{{{C}, jobs: [{{name: "p", exec: "x\\u001c"}}]}}'), {}).jobs[0].exec == ("x\x1c",)


@pytest.mark.parametrize("exe", ['"   "', '[""]'])
def test_exec_of_spaces_is_one_empty_argument_as_cp_14(write, exe: str) -> None:
    """CP 3.8 accepted both and logged `unable to start p: exec: no command` at each start."""
    path = write(f'{{{C}, jobs: [{{name: "p", exec: {exe}, health: {{exec: {exe}, interval: 1, ttl: 2}}}}]}}')
    job = load(path, {}).jobs[0]
    assert job.exec == ("",) and job.health is not None and job.health.exec == ("",)
    assert check(path, {})[1] == [
        "job[p].health.exec: the program is empty, so every start fails with 'exec: no command' (accepted, as ContainerPilot did)",
        "job[p].exec: the program is empty, so every start fails with 'exec: no command' (accepted, as ContainerPilot did)",
    ]


@pytest.mark.timeout(60)
def test_exec_of_spaces_fails_at_each_start_and_counts_restarts(tmp_path: Path) -> None:
    from tests.pid1 import Pilot, wait_for

    flag = tmp_path / "second-ran"
    with Pilot({"stopTimeout": 1, "jobs": [
        {"name": "p", "exec": "   ", "restarts": 1},
        {"name": "q", "exec": ["touch", str(flag)], "when": {"source": "p", "once": "exitFailed"}},
    ]}) as p:
        p.wait_log(r"p failed and has no restarts left")
        wait_for(flag.exists, 10, "the exitFailed-triggered job to run")
        p.wait_exit()  # nothing is left to run
        assert len(p.lines(r"unable to start p: ")) == 2  # the first start and its one restart


# --- Infinity / NaN in integer fields: mapstructure's int64(float64) on amd64 ------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ('jobs: [{name: "p", exec: "x", health: {exec: "h", interval: NaN, ttl: 5}}]', J + "job[p].health.interval must be > 0"),
    ('jobs: [{name: "p", exec: "x", health: {exec: "h", interval: Infinity, ttl: 5}}]', J + "job[p].health.interval must be > 0"),
    ('jobs: [{name: "p", exec: "x", health: {exec: "h", interval: 2, ttl: -Infinity}}]', J + "job[p].health.ttl must be > 0"),
    ('watches: [{name: "ww", interval: NaN}]', "unable to parse watches: watch[ww].interval must be > 0"),
    ('jobs: [{name: "p", exec: "x", port: NaN}]', J + "job[p].health must be set if 'port' is set"),
    ('jobs: [{name: "p", exec: "x", restarts: NaN}]', J + "job[p].restarts field 'NaN' invalid: number must be positive integer"),
    ('jobs: [{name: "p", exec: "x", restarts: -Infinity}]', J + "job[p].restarts field '-Inf' invalid: number must be positive integer"),
    ('jobs: [{name: "p", exec: "x", timeout: Infinity}]', J + "unable to parse job[p].timeout '+Inf': time: invalid duration +Inf"),
])
def test_nan_and_infinity_fail_as_in_cp_14(write, text: str, message: str) -> None:
    assert one_error(write, f"{{{C}, {text}}}") == message


def test_nan_and_infinity_accepted_as_in_cp_14(write) -> None:
    """CP accepted these: a global stopTimeout of NaN, a job name NaN, `restarts: Infinity` (no restarts:
    Go's int64(+Inf) is negative), a raw-logging flag NaN (NaN != 0 is true)."""
    path = write(f'{{{C}, stopTimeout: NaN, jobs: [{{name: NaN, exec: "x", restarts: Infinity, logging: {{raw: NaN}}}}, '
                 '{name: "big", exec: "x", restarts: 1e300}]}')
    cfg = load(path, {})
    assert cfg.stop_timeout == MIN_INT64
    assert [(j.name, j.restarts, j.raw_logging) for j in cfg.jobs] == [("NaN", 0, True), ("big", 0, False)]
    assert check(path, {})[1] == [
        'job[NaN].restarts +Inf means no restarts, as in ContainerPilot: for restarts without limit write "unlimited"',
        'job[big].restarts 1e+300 means no restarts, as in ContainerPilot: for restarts without limit write "unlimited"',
    ]
    assert load(write(f'{{{C}, jobs: [{{name: "u", exec: "x", restarts: "unlimited"}}]}}'), {}).jobs[0].restarts == UNLIMITED


def test_int_field_from_huge_or_infinite_number_is_smallest_int64(write) -> None:
    for value in ("Infinity", "-Infinity", "NaN", "1e300", "99999999999999999999"):
        job = load(write(f'{{{C}, jobs: [{{name: "pp", exec: "x", port: {value}, health: {{exec: "h", interval: 1, ttl: 1}}}}]}}'),
                   {}, addresses=ADDRS).jobs[0]
        assert job.port == MIN_INT64, value
    assert load(write(f'{{{C}, jobs: [{{name: "pp", port: 80.9, health: {{interval: 1, ttl: 1}}}}]}}'), {},
                addresses=ADDRS).jobs[0].port == 80


# --- an unclosed comment after the final } -------------------------------------------------------------


@pytest.mark.parametrize("tail", [" /* unclosed", " /", "\n/* a\nb", " /* a */ /* b", " /* a *", " /*/", " /* x /* y"])
def test_unclosed_comment_after_the_last_brace_is_ignored_as_cp_14(write, tail: str) -> None:
    path = write(f'{{{C}, jobs: [{{name: "p", exec: "x"}}]}}{tail}')
    assert [j.name for j in load(path, {}).jobs] == ["p"]
    assert check(path, {}) == ([], ["the unclosed comment after the config's closing brace is ignored (as "
                                    "ContainerPilot did): close it with */"])


@pytest.mark.parametrize("tail", [" /* a */ y", " junk", " /x", " / ", " }"])
def test_other_text_after_the_last_brace_is_still_an_error(write, tail: str) -> None:
    msg = one_error(write, f'{{{C}, jobs: [{{name: "p", exec: "x"}}]}}{tail}')
    assert msg.startswith("parse error at line:col [1:")


def test_unclosed_comment_inside_the_object_is_still_an_error(write) -> None:
    msg = one_error(write, f'{{{C}, jobs: [{{name: "p", exec: "x"}}] /* unclosed')
    assert msg.startswith("parse error at line:col [1:")
