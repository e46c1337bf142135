"""Security: the telemetry server listens on the configured address only; values set through
``/v3/environ`` (``pypilot -putenv``) reach jobs as plain strings, byte for byte: no template
expansion, no shell, no argument splitting, also after a reload re-renders the config template. Rendered
into the config they are pasted raw, as Go's text/template did in CP (#14); a render that does not parse
is a rejected reload.

The control socket's 0600 mode is tested in tests/control/test_socket.py. A ``control.allowUids``
(refuse peers by SO_PEERCRED) does not exist: with 0600 only the owner (and root) can connect."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from tests.control.harness import http
from tests.discovery.harness import free_port
from tests.pid1 import Pilot, wait_for
from tests.reliability.harness import cli

DUMP = ("import os, json, sys; "
        "print('envdump', json.dumps([sys.argv[1:], {k: os.environ.get(k) for k in sys.argv[1:]}]))")
RENDERED = "import json, sys; print('rendered', json.dumps(sys.argv[1:]))"
HOSTILE = {
    "INJ_TEMPLATE": "{{ .INJ_SECRET }}",
    "INJ_ENV_FN": "{{ env `INJ_SECRET` }}",
    "INJ_SPACES": "a b  c\td",
    "INJ_QUOTE1": "it's",
    "INJ_SHELL": "$(touch /tmp/pypilot-injected) `id` ; rm -rf / && echo $HOME | cat",
    "INJ_UNICODE": "héllo ☃",
}


def listening(pids: list[int]) -> set[tuple[str, int]]:
    out = set()
    for pid in pids:
        try:
            for c in psutil.Process(pid).net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.add((c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
    return out


def test_telemetry_listens_on_the_configured_address_only() -> None:
    port = free_port()
    cfg = {"consul": "127.0.0.1:1", "jobs": [{"name": "keeper", "exec": "sleep 1000"}],
           "telemetry": {"port": port, "interfaces": ["static:127.0.0.2"]}}
    with Pilot(cfg) as p:
        pids = lambda: [p.host_pid, *(d.pid for d in p.descendants())]  # noqa: E731
        found = wait_for(lambda: listening(pids()), 15, "the telemetry server to listen")
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5) as resp:
            assert resp.status == 200
        refused = []
        for host in ("127.0.0.1", "localhost"):
            with socket.socket() as s, pytest.raises(ConnectionRefusedError):
                s.settimeout(2)
                s.connect((host, port))
            refused.append(host)
        print(f"\ntelemetry listens on {sorted(found)}; refused on {refused}")
        assert found == {("127.0.0.2", port)}


def env_config(sock: str, names: list[str], variant: int) -> str:
    """A config template that renders putenv values into a job's exec arguments (as CP configs do);
    ``envdump`` prints the environment values themselves."""
    py = orjson.dumps(sys.executable).decode()
    args = ", ".join(f'"{{{{ .{n} }}}}"' for n in names)
    hook = '"when": {"source": "never-fires", "once": "healthy"}'
    return (
        f'{{"consul": "localhost:8500", "control": {{"socket": "{sock}"}}, "jobs": ['
        f'{{"name": "keeper", "exec": ["sleep", "{1000 + variant}"]}},'
        f'{{"name": "envdump", "exec": [{py}, "-c", {orjson.dumps(DUMP).decode()}, '
        f'{", ".join(orjson.dumps(n).decode() for n in names)}], {hook}}},'
        f'{{"name": "rendered", "exec": [{py}, "-c", {orjson.dumps(RENDERED).decode()}, {args}], {hook}}}'
        "]}"
    )


def start_job(p: Pilot, sock: str, name: str, count: int) -> Any:
    code, _, data = http(sock, "POST", f"/v3/jobs/{name}/start")
    assert code == 200, data
    line = p.wait_log(rf"{name} {name} ", count=count)[-1]
    return orjson.loads(line.split(f" {name} {name} ", 1)[1])


def putenv_and_reload(p: Pilot, sock: str, values: dict[str, str], rounds: int) -> list[Any]:
    names = list(values)
    for k, v in values.items():  # one -putenv per value, through the real command line
        r = cli(p, "-putenv", f"{k}={v}")
        assert r.returncode == 0, (k, r.stderr)
    seen = []
    for round_ in range(1, rounds + 1):  # each reload renders the template again, with the new values
        p.config_path.write_text(env_config(sock, names, round_))
        r = cli(p, "-reload")
        assert r.returncode == 0, r.stderr
        argv, env = start_job(p, sock, "envdump", round_)
        assert argv == names
        assert env == values, env  # the environment: byte for byte
        seen.append(start_job(p, sock, "rendered", round_))
    return seen


def test_putenv_values_reach_jobs_as_plain_strings_across_reloads(tmp_path: Path) -> None:
    sock = str(tmp_path / "control.sock")
    with Pilot(env_config(sock, list(HOSTILE), 0), env={"INJ_SECRET": "s3cr3t"}) as p:
        wait_for(lambda: os.path.exists(sock), 10, "the control socket")
        rendered = putenv_and_reload(p, sock, HOSTILE, 2)
        for argv in rendered:  # rendered into exec arguments: one template pass, one argument each
            assert argv == list(HOSTILE.values()), argv
        assert not os.path.exists("/tmp/pypilot-injected")
        assert not p.lines("s3cr3t")  # a value that looks like a template is never executed as one
        print(f"\n{len(HOSTILE)} hostile putenv values, 2 reloads rendering them into exec arguments: "
              "every one reached the job verbatim, as one argument")


def test_putenv_value_is_pasted_raw_into_the_rendered_config_as_cp_did(tmp_path: Path) -> None:
    """#14: Go's text/template does not escape, so neither may we: a value's quote ends the JSON5 string it
    is rendered into (consul-lb's `join "\\", \\""` relies on it) and a backslash is read as an escape.
    The environment itself is not templated: jobs still see the values byte for byte."""
    sock = str(tmp_path / "control.sock")
    values = {"INJ_QUOTES": 'x", "--added', "INJ_BACKSLASH": "a\\nb"}
    with Pilot(env_config(sock, list(values), 0)) as p:
        wait_for(lambda: os.path.exists(sock), 10, "the control socket")
        assert putenv_and_reload(p, sock, values, 1) == [["x", "--added", "a\nb"]]


def test_reload_whose_rendered_config_does_not_parse_is_rejected_old_config_kept(tmp_path: Path) -> None:
    """What answers the risk of the raw paste: a value with a newline renders a JSON5 string that does not
    parse; the reload fails, nothing that runs is touched, and a later good value reloads fine."""
    sock = str(tmp_path / "control.sock")
    with Pilot(env_config(sock, ["INJ_NEWLINE"], 0)) as p:
        wait_for(lambda: os.path.exists(sock), 10, "the control socket")
        keeper = wait_for(lambda: [d for d in p.descendants() if d.cmdline() == ["sleep", "1000"]], 10,
                          "the keeper job")[0]
        assert cli(p, "-putenv", "INJ_NEWLINE=line1\nline2").returncode == 0
        p.config_path.write_text(env_config(sock, ["INJ_NEWLINE"], 1))
        r = cli(p, "-reload")
        assert r.returncode == 1 and "reload failed" in r.stderr, (r.returncode, r.stderr)
        # the old config runs on: its keeper, not the new file's `sleep 1001`
        assert [d.pid for d in p.descendants() if d.cmdline()[:1] == ["sleep"]] == [keeper.pid]
        assert start_job(p, sock, "rendered", 1) == [""]  # the old render: the value was unset then
        assert cli(p, "-putenv", "INJ_NEWLINE=one line").returncode == 0
        assert cli(p, "-reload").returncode == 0
        assert start_job(p, sock, "rendered", 2) == ["one line"]
