"""The CLI subcommands: CP's flags, messages, precedence and exit codes (§8.2, §12), and pypilot's
``status`` and ``job`` forms."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pypilot.cli import parse_args
from pypilot.control.client import run_subcommand, wants_control
from tests.control.harness import ROOT, ControlPilot, wait_for

FATAL = 'level=fatal msg="'


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_subcommand(parse_args(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


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
    assert run("-config", cfg, "-putmetric", "m=1.5") == (0, "", "")
    assert run("-config", cfg, "-maintenance", "enable") == (0, "", "")
    assert pilot.status()["maintenance"] is True
    assert run("-config", cfg, "-maintenance", "anything-else-disables") == (0, "", "")
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
            ["-maintenance", "off"],
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
    assert out.startswith("keeper: restart done")
    wait_for(lambda: pilot.job("keeper")["pid"] not in (None, pid), 10, "keeper restarted")
    code, _, err = run("-config", cfg, "job", "nope", "stop")
    assert code == 1 and "no job named 'nope'" in msg_of(err)
    code, _, err = run("-config", cfg, "job", "keeper", "signal", "SIGBOGUS")
    assert code == 1 and "invalid signal" in msg_of(err)
    assert run("-config", cfg, "job", "keeper")[0] == 2
    assert run("-config", cfg, "job", "keeper", "signal")[0] == 2


def test_reload_cli(tmp_path: Path) -> None:
    with ControlPilot() as p:
        proc = p.cli("-reload")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
        # the server's file turns invalid; the CLI finds the socket through a config of its own
        p.config_path.write_text("{ jobs: [ {name: 'x'} ] }")
        cli_cfg = config_for(tmp_path, p.socket)
        code, _, err = run("-config", cli_cfg, "-reload")
        assert code == 1
        msg = msg_of(err)
        assert msg.startswith("-reload: failed to run subcommand: reload failed: "), msg
        assert p.job("keeper")["state"] == "running"  # the running config is untouched
        assert run("-config", cli_cfg, "-ping")[0] == 0


def test_reload_rolled_back_is_200_json_for_the_api_and_exit_1_for_the_cli() -> None:
    with ControlPilot() as p:
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
