"""The CLI subcommands: CP's flags, messages, precedence and exit codes (§8.2, §12), and pypilot's
``status`` and ``job`` forms."""
# ruff: noqa: E501 (table rows and literal messages read best on one line each)

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pypilot.cli import parse_args
from pypilot.control.client import run_subcommand, wants_control
from tests.control.harness import ROOT, ControlPilot

FATAL = 'level=fatal msg="'


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_subcommand(parse_args(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


def pypilot(p: ControlPilot, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real entry point (``python -m pypilot``) with ``-config`` of ``p``'s file."""
    return subprocess.run([sys.executable, "-m", "pypilot", "-config", str(p.config_path), *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)


def msg_of(err: str) -> str:
    assert FATAL in err, err
    return err.split(FATAL, 1)[1].rstrip().removesuffix('"').replace('\\"', '"')


def config_for(tmp_path: Path, sock: str) -> str:
    path = tmp_path / "cli.json5"
    path.write_text(
        orjson.dumps({"consul": "localhost:8500", "control": {"socket": sock}, "jobs": []}).decode()
    )
    return str(path)


def test_ping_prints_ok_exit_0(pilot: ControlPilot) -> None:
    proc = pilot.cli("-ping")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_putenv_putmetric_maintenance_succeed_silently(pilot: ControlPilot) -> None:
    cfg = str(pilot.config_path)
    assert run("-config", cfg, "-putenv", "CTL_X=a=b", "-putenv", "CTL_Y=1") == (0, "", "")
    assert run("-config", cfg, "-maintenance", "enable") == (0, "", "")
    assert pilot.status()["maintenance"] is True
    assert run("-config", cfg, "-maintenance", "disable") == (0, "", "")
    assert pilot.status()["maintenance"] is False


@pytest.mark.parametrize(
    ("flags", "prefix", "method", "path"),
    [
        (["-reload"], "-reload: failed to run subcommand: ", "Post", "/v3/reload"),
        (
            ["-maintenance", "enable"],
            "-maintenance: failed to run subcommand: ",
            "Post",
            "/v3/maintenance/enable",
        ),
        (
            ["-maintenance", "disable"],
            "-maintenance: failed to run subcommand: ",
            "Post",
            "/v3/maintenance/disable",
        ),
        (["-putenv", "A=b"], "-putenv: failed to run subcommand: ", "Post", "/v3/environ"),  # CP said -reload
        (
            ["-putmetric", "a=1"],
            "-putmetric: failed to run subcommand: ",
            "Post",
            "/v3/metric",
        ),  # CP said -reload
        (["-ping"], "-ping: failed: ", "Get", "/v3/ping"),
    ],
)
def test_no_server_fails_with_cp_messages_exit_1(
    tmp_path: Path, flags: list[str], prefix: str, method: str, path: str
) -> None:
    sock = str(tmp_path / "absent.socket")
    code, out, err = run("-config", config_for(tmp_path, sock), *flags)
    assert (code, out) == (1, "")
    assert msg_of(err) == (
        f"{prefix}{method} http://control{path}: dial unix {sock}: connect: no such file or directory"
    )


def test_precedence_reload_over_maintenance_over_putenv_over_ping(tmp_path: Path) -> None:
    cfg = config_for(tmp_path, str(tmp_path / "absent.socket"))
    assert msg_of(
        run("-config", cfg, "-ping", "-putenv", "A=b", "-maintenance", "enable", "-reload")[2]
    ).startswith("-reload:")
    assert msg_of(run("-config", cfg, "-ping", "-putmetric", "a=1", "-maintenance", "enable")[2]).startswith(
        "-maintenance:"
    )
    assert msg_of(run("-config", cfg, "-ping", "-putmetric", "a=1", "-putenv", "A=b")[2]).startswith(
        "-putenv:"
    )
    assert msg_of(run("-config", cfg, "-ping", "-putmetric", "a=1")[2]).startswith("-putmetric:")


def test_422_is_unprocessable_entity_message(pilot: ControlPilot) -> None:
    code, _, err = run("-config", str(pilot.config_path), "-putenv", "=v")
    assert code == 1
    assert msg_of(err).startswith(
        "-putenv: failed to run subcommand: unprocessable entity received by control server"
    )


def test_bad_config_is_fatal_exit_1(tmp_path: Path) -> None:
    code, _, err = run("-config", str(tmp_path / "missing.json5"), "-ping")
    assert code == 1 and "could not read config file" in msg_of(err)


def test_malformed_pair_is_usage_exit_2() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pypilot.cli import parse_args, UsageError\n"
            "try: parse_args(sys.argv[1:])\nexcept UsageError as e: print(e.text, file=sys.stderr); "
            "sys.exit(2)",
            "-putenv",
            "X",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "flag value 'X' was not in the format 'key=val'" in proc.stderr


def test_wants_control() -> None:
    assert wants_control(parse_args(["-ping"]))
    assert wants_control(parse_args(["-config", "x", "status"]))
    assert wants_control(parse_args(["job", "a", "stop"]))
    assert not wants_control(parse_args(["-config", "x"]))
    assert not wants_control(parse_args(["-version", "-ping"]))


def test_status_table_and_json(pilot: ControlPilot) -> None:
    cfg = str(pilot.config_path)
    code, out, err = run("-config", cfg, "status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATE",
        "STATUS",
        "PID",
        "RUNS",
        "RESTARTS",
        "LAST",
        "EXIT",
        "BACKOFF",
    ]
    keeper = next(ln for ln in lines if ln.startswith("keeper "))
    assert " running " in keeper and str(pilot.job("keeper")["pid"]) in keeper
    assert any(ln.startswith("maintenance: ") for ln in lines)
    code, out, _ = run("status", "--json", "-config", cfg)  # -config after the subcommand works too
    assert code == 0 and orjson.loads(out)["jobs"][0]["name"] == "keeper"


def test_job_subcommand(pilot: ControlPilot) -> None:
    cfg = str(pilot.config_path)
    pid = pilot.job("keeper")["pid"]
    code, out, err = run("-config", cfg, "job", "keeper", "restart")
    assert code == 0, err
    # the state after the restart (#21: it printed the old pid): the new process, running
    new_pid = pilot.job("keeper")["pid"]
    assert new_pid not in (None, pid)
    assert out == f"keeper: restart done; state running, pid {new_pid}\n"
    code, _, err = run("-config", cfg, "job", "nope", "stop")
    assert code == 1 and "no job named 'nope'" in msg_of(err)
    code, _, err = run("-config", cfg, "job", "keeper", "signal", "SIGBOGUS")
    assert code == 1 and "invalid signal" in msg_of(err)
    assert pypilot(pilot, "job", "keeper").returncode == 2
    proc = pypilot(pilot, "job", "keeper", "signal")
    assert proc.returncode == 2 and proc.stderr.startswith("job: signal takes one SIGNAL")


def test_job_stop_and_start_print_the_state_after_the_action_21() -> None:
    with ControlPilot() as p:
        pid = p.job("keeper")["pid"]
        proc = p.cli("job", "keeper", "stop")
        assert (proc.returncode, proc.stdout) == (0, "keeper: stop done; state held, pid -\n"), proc.stderr
        assert p.job("keeper")["pid"] is None
        proc = p.cli("job", "keeper", "start")
        new_pid = p.job("keeper")["pid"]
        assert new_pid not in (None, pid)
        assert (proc.returncode, proc.stdout) == (0, f"keeper: start done; state running, pid {new_pid}\n")


def test_4xx_exits_1_with_the_servers_reason_21(pilot: ControlPilot) -> None:
    """A refused action (409: the job is already running) is a failure that says why."""
    proc = pilot.cli("job", "keeper", "start")
    assert (proc.returncode, proc.stdout) == (1, "")
    msg = msg_of(proc.stderr)
    assert msg.startswith("job keeper start: failed: control server answered 409: job 'keeper' ")
    assert "running" in msg


@pytest.mark.parametrize(
    ("status", "headers", "body", "want"),
    [
        (400, {"X-Pypilot-Error": "metric 'x' is not declared"}, b"Bad Request\n",
         "control server answered 400: metric 'x' is not declared"),
        (404, {}, b'{"error": "no job named \'a\'"}', "control server answered 404: no job named 'a'"),
        (413, {}, b"too big\n", "control server answered 413: too big"),
        (422, {}, b"Unprocessable Entity\n",
         "unprocessable entity received by control server: Unprocessable Entity"),
        (500, {}, b"", "control server answered 500"),
    ],
)
def test_check_reports_the_reason_of_a_non_2xx(status: int, headers: dict[str, str], body: bytes, want: str) -> None:
    import email.message

    from pypilot.control.client import Failed, Response, check

    msg = email.message.Message()
    for k, v in headers.items():
        msg[k] = v
    with pytest.raises(Failed) as e:
        check(Response(status, msg, body))  # type: ignore[arg-type]
    assert str(e.value) == want


def test_client_commands_reach_the_server_while_its_config_is_broken_21() -> None:
    """The config being edited (a syntax error, or one that fails validation) must not cut the client off:
    the socket comes from a lenient read of control.socket, and -reload gets the server's own error."""
    with ControlPilot() as p:
        pid = p.job("keeper")["pid"]
        text = p.config_path.read_text()
        for broken in (text[:-10], text.replace('"jobs"', '"jobz"'), text.replace('"unlimited"', '"bogus"')):
            p.config_path.write_text(broken)
            proc = p.cli("-ping")
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", ""), broken
            proc = p.cli("status")
            assert proc.returncode == 0 and "keeper" in proc.stdout, proc.stderr
            proc = p.cli("-reload")
            assert (proc.returncode, proc.stdout) == (1, ""), broken
            assert msg_of(proc.stderr).startswith("-reload: failed to run subcommand: reload failed: ")
        assert p.job("keeper")["pid"] == pid  # the running config is untouched


def test_socket_flag_and_environment_need_no_config_21(tmp_path: Path) -> None:
    with ControlPilot() as p:
        code, out, err = run("-socket", p.socket, "-ping")
        assert (code, out, err) == (0, "ok\n", "")
        code, out, err = run("status", "-socket", p.socket, "-json")
        assert code == 0 and orjson.loads(out)["jobs"][0]["name"] == "keeper"
        env = {"PATH": "/usr/bin:/bin", "PYPILOT_SOCKET": p.socket}
        proc = subprocess.run([sys.executable, "-m", "pypilot", "-ping"], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=30)
        assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr
        # -socket wins over $PYPILOT_SOCKET, which wins over the config
        env["PYPILOT_SOCKET"] = str(tmp_path / "nowhere.sock")
        proc = subprocess.run([sys.executable, "-m", "pypilot", "-socket", p.socket, "-ping"], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=30)
        assert proc.returncode == 0, proc.stderr
        proc = subprocess.run([sys.executable, "-m", "pypilot", "-config", str(p.config_path), "-ping"],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
        assert proc.returncode == 1 and "nowhere.sock" in proc.stderr


def test_unparseable_config_without_socket_says_the_default_was_used(tmp_path: Path) -> None:
    if Path("/var/run/containerpilot.socket").exists():
        pytest.skip("a supervisor serves the default socket on this machine")
    cfg = tmp_path / "half.json5"
    cfg.write_text("{ jobs: [ {name: ")
    code, _, err = run("-config", str(cfg), "-ping")
    assert code == 1
    msg = msg_of(err)
    assert msg == ("-ping: failed: Get http://control/v3/ping: dial unix /var/run/containerpilot.socket: connect: "
                   "no such file or directory (socket: the default socket: the config did not parse (parse error "
                   "at line:col [1:18]: Unclosed object starting))")


def test_no_config_at_all_uses_the_default_socket_and_says_so() -> None:
    proc = subprocess.run([sys.executable, "-m", "pypilot", "status"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, cwd=ROOT, timeout=30)
    if Path("/var/run/containerpilot.socket").exists():
        pytest.skip("a supervisor serves the default socket on this machine")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert msg_of(proc.stderr) == (
        "status: failed: Get http://control/v3/status: dial unix /var/run/containerpilot.socket: connect: no such "
        "file or directory (socket: the default socket: no -config, -socket, $PYPILOT_SOCKET or $CONTAINERPILOT)")


def test_lenient_read_of_the_socket(tmp_path: Path) -> None:
    from pypilot.config import read_control

    cases = {
        '{control: {socket: "/a.sock"}, jobs: [{name: "x", restarts: "bogus"}]}': ({"socket": "/a.sock"}, ""),
        '{control: {SOCKET: "/b.sock", reloadGrace: "5s"}, bogus: 1}': ({"SOCKET": "/b.sock", "reloadGrace": "5s"}, ""),
        "{'control': {'socket': '/c.sock'}, jobs: [ {name: ": ({"socket": "/c.sock"}, "parse error at line:col [1:51]: Unclosed object starting"),
        '{ control: {socket: "{{ .S }}"}, consul: "{{ nope }}" }': ({}, 'could not apply template to config: template: :1: function "nope" not defined'),
        '{ control: {socket: "/{{ .S }}.sock"} }': ({"socket": "/x.sock"}, ""),
        '{ control: {reload: "diff"}, jobs: [{socket: "/not-this"}, ': ({}, "parse error at line:col [1:60]: Unclosed array starting"),
    }
    for i, (text, want) in enumerate(cases.items()):
        path = tmp_path / f"{i}.json5"
        path.write_text(text)
        assert read_control(str(path), {"S": "x"}) == want, text


def test_reload_cli(tmp_path: Path) -> None:
    with ControlPilot() as p:
        proc = p.cli("-reload")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
        # the server's file turns invalid (no consul); the CLI still reaches it through that same file
        p.config_path.write_text(orjson.dumps({"control": {"socket": p.socket}, "jobs": [{"name": "x"}]}).decode())
        code, _, err = run("-config", str(p.config_path), "-reload")
        assert code == 1
        msg = msg_of(err)
        assert msg == "-reload: failed to run subcommand: reload failed: invalid config: no discovery backend defined", msg
        assert p.job("keeper")["state"] == "running"  # the running config is untouched
        cli_cfg = config_for(tmp_path, p.socket)  # a config of its own works too
        assert run("-config", cli_cfg, "-ping")[0] == 0


def test_reload_rolled_back_is_200_json_for_the_api_and_exit_1_for_the_cli() -> None:
    with ControlPilot(control={"reload": "diff"}) as p:  # the diff reload keeps the unchanged job
        pid = p.job("keeper")["pid"]
        p.write_config(
            {**p.config, "jobs": [p.config["jobs"][0], {"name": "bad", "exec": ["/nonexistent/x"]}]}
        )
        code, headers, body = p.http("POST", "/v3/reload", headers={"Accept": "application/json"}, timeout=60)
        result = orjson.loads(body)
        assert code == 200 and result["reloaded"] is False and "bad" in result["error"]
        assert headers["x-pypilot-error"]
        code, _, body = p.http("POST", "/v3/reload", timeout=60)  # a CP client: 200, the outcome in JSON
        assert code == 200 and orjson.loads(body)["reloaded"] is False
        proc = p.cli("-reload")
        assert proc.returncode == 1 and proc.stdout == ""
        assert msg_of(proc.stderr).startswith("-reload: failed to run subcommand: reload failed: ")
        assert [j["name"] for j in p.status()["jobs"]] == ["keeper"] and p.job("keeper")["pid"] == pid
