"""What PID 1 imports before its first spawn (issue #15: start-up is user-visible): none of the modules
that cost milliseconds and that it does not need then. Measured as the modules pypilot's own imports add,
in a fresh interpreter (the interpreter's and site's own imports are not pypilot's)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

# each of these cost PID 1 2-13 ms of its start (python -X importtime); none is needed to spawn
HEAVY = ("typing", "dataclasses", "inspect", "re", "json", "psutil", "ssl", "asyncio", "threading",
         "email", "http.client", "urllib.request", "falcon", "waitress", "consul", "prometheus_client",
         "requests", "pyjson5", "orjson")


def test_pid1s_start_up_modules_import_none_of_the_heavy_ones() -> None:
    code = ("import sys; before = set(sys.modules); "
            "import pypilot.__main__, pypilot.cli, pypilot.supervisor, pypilot.control.plane, "
            "pypilot.control.socketfile, pypilot.config, pypilot.config.decode; "
            f"print(sorted(m for m in {HEAVY!r} if m in set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_loading_a_plain_config_prints_no_value_so_loads_no_template_engine(tmp_path) -> None:
    """An exec array and ``restarts`` are read without Go's ``%v`` formatting (the template engine):
    it is needed only to print a value (an error) or to render a config with ``{{``."""
    path = tmp_path / "c.json"
    path.write_text('{"consul": "localhost:8500", "jobs": ['
                    '{"name": "app", "exec": ["/bin/true", "-x"], "restarts": "unlimited"},'
                    '{"name": "once", "exec": ["/bin/true"], "restarts": "never"},'
                    '{"name": "three", "exec": "/bin/true", "restarts": 3}]}')
    code = ("import sys; from pypilot.config import load; c = load(sys.argv[1], {}); "
            "print([j.exec for j in c.jobs], "
            "[m for m in ('pypilot.config.template', 'pypilot.gofmt') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[('/bin/true', '-x'), ('/bin/true',), ('/bin/true',)] []"


# what PID 1 imports only once its first job runs: the control socket's side, the workers, reload/upgrade
AFTER_THE_FIRST_SPAWN = ("socket", "selectors", "struct", "array", "pypilot.channel", "pypilot.workers",
                         "pypilot.control", "pypilot.control.plane", "pypilot.control.socketfile",
                         "pypilot.discovery", "pypilot.upgrade", "pypilot.handover", "pypilot.reload",
                         "pypilot.gofmt", "pypilot.config.template", "pypilot.lean_imports")

# what no config's first spawn needs (issue #15: ~25 M instructions before the first exec): signal.py builds
# IntEnums (the C _signal has the numbers), collections (with keyword, reprlib, operator) is _collections'
# classes and collections.abc's names for annotations; heapq is _heapq's functions, math two float tests
NEVER_BEFORE_THE_FIRST_SPAWN = ("enum", "functools", "signal", "collections", "collections.abc", "types",
                                "heapq", "itertools", "operator", "keyword", "reprlib", "math")
# ... and what a plain config (no health check, no process keys, an exec of strings) does not need either
NOT_FOR_A_PLAIN_CONFIG = ("pypilot.health", "pypilot.config.process", "pypilot.config.interfaces")

FIRST_SPAWN = """
import sys
before = set(sys.modules)  # the interpreter's own (no site: -S); all the rest is pypilot's doing
out, config, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.extend(paths)  # where the tests' pypilot is, and its dependencies (cffi)
from pypilot import reaper
real = reaper.spawn
def spawn(*args, **kwargs):
    if reaper.spawn is spawn:
        reaper.spawn = real
        with open(out, "w") as f:
            f.write("\\n".join(sorted(set(sys.modules) - before)))
    return real(*args, **kwargs)
reaper.spawn = spawn
from pypilot.__main__ import main
sys.exit(main(["-config", config]))
"""


def modules_at_first_spawn(tmp_path: Any, config: Any) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """What PID 1 has imported when it first spawns, on the real start-up path without ``site``."""
    import site
    from pathlib import Path

    import pypilot

    out = tmp_path / "modules"
    paths = [str(Path(pypilot.__file__).parent.parent), *site.getsitepackages()]
    res = subprocess.run([sys.executable, "-I", "-S", "-c", FIRST_SPAWN, str(out), str(config), *paths],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return set(out.read_text().split()), res


def test_pid1_spawns_its_first_job_before_importing_the_control_plane_or_anything_heavy(tmp_path) -> None:
    """The real start-up path, up to the moment of the first spawn (issue #15): the modules PID 1 has
    imported by then, in an interpreter without ``site`` (whose own imports would hide some)."""
    import json


    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        "consul": "localhost:8500", "control": {"socket": str(tmp_path / "c.sock")},
        "jobs": [{"name": "app", "exec": ["/bin/true"], "restarts": "never"}]}))
    imported, res = modules_at_first_spawn(tmp_path, config)
    assert {"pypilot.supervisor", "pypilot.jobs", "pypilot.reaper"} <= imported  # it did get that far
    assert sorted(imported & {*HEAVY, *AFTER_THE_FIRST_SPAWN}) == []
    assert sorted(imported & {*NEVER_BEFORE_THE_FIRST_SPAWN, *NOT_FOR_A_PLAIN_CONFIG}) == []
    # the control plane did start, after the spawn
    assert "control: serving at" in res.stderr + res.stdout


# a service's IP is read with _socket's inet_pton and netlink: ipaddress (functools, collections), the ioctl's
# array (collections.abc) and fcntl, and the regex of interface names cost ~28 M instructions before the spawn
NOT_FOR_A_SERVICE = ("ipaddress", "array", "fcntl", "encodings.ascii")


@pytest.mark.parametrize("interfaces", [["static:127.0.0.1"], ["lo"], ["127.0.0.0/8"], ["lo[0]"],
                                        ["eth0:inet", "inet", "lo"], ["static:::ffff:127.0.0.1"]])
def test_a_service_config_spawns_its_first_job_before_importing_socket(tmp_path, interfaces) -> None:
    """A job with a Consul service and a health check builds the I/O worker's handle before the first
    spawn; the worker's socketpair, and with it ``socket`` (~15 M instructions), come after it. Its IP,
    from the host's addresses or a static one, takes none of the modules no first spawn needs."""
    import json

    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        "consul": "localhost:8500", "control": {"socket": str(tmp_path / "c.sock")},
        "jobs": [{"name": "app", "exec": ["/bin/true"], "restarts": "never", "port": 8080,
                  "interfaces": interfaces, "health": {"exec": "true", "interval": 1, "ttl": 5}}]}))
    imported, _ = modules_at_first_spawn(tmp_path, config)
    assert {"pypilot.supervisor", "pypilot.health", "pypilot.workers", "pypilot.config.ifaddrs"} <= imported
    assert sorted(imported & {"socket", "selectors", *HEAVY, *NEVER_BEFORE_THE_FIRST_SPAWN,
                              *NOT_FOR_A_SERVICE}) == []


def test_a_health_check_config_spawns_its_first_job_before_importing_signal_or_collections(tmp_path) -> None:
    """A health check (no service: no IP to resolve) builds the I/O worker's handle before the first spawn,
    with none of the modules no first spawn needs."""
    import json

    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        "consul": "localhost:8500", "control": {"socket": str(tmp_path / "c.sock")},
        "jobs": [{"name": "app", "exec": ["/bin/true"], "restarts": "never",
                  "health": {"exec": "true", "interval": 1, "ttl": 5}}]}))
    imported, _ = modules_at_first_spawn(tmp_path, config)
    assert {"pypilot.supervisor", "pypilot.health", "pypilot.workers"} <= imported  # it built the handle
    assert sorted(imported & {"socket", "selectors", *HEAVY, *NEVER_BEFORE_THE_FIRST_SPAWN}) == []


def test_a_job_with_process_keys_and_a_stop_signal_spawns_before_importing_signal_or_enum(tmp_path) -> None:
    """A job's process keys load config.process, and a stopSignal by name is read from the C ``_signal``:
    still no ``signal`` (its IntEnums), ``enum`` or ``collections`` before the first spawn."""
    import json

    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        "consul": "localhost:8500", "control": {"socket": str(tmp_path / "c.sock")},
        "jobs": [{"name": "app", "exec": ["/bin/true"], "restarts": "never", "stopSignal": "SIGINT",
                  "workdir": "/", "umask": "022"}]}))
    imported, _ = modules_at_first_spawn(tmp_path, config)
    assert {"pypilot.supervisor", "pypilot.config.process"} <= imported  # its process keys were decoded
    assert sorted(imported & {*HEAVY, *AFTER_THE_FIRST_SPAWN, *NEVER_BEFORE_THE_FIRST_SPAWN}) == []


def test_decode_checks_for_exactly_the_process_modules_keys() -> None:
    """decode imports config.process only for a job with one of its keys: the two lists must agree."""
    from pypilot.config import decode, process

    assert decode.PROCESS_KEYS == process.KEYS
    assert set(process.KEYS) <= {key for key, _ in decode._JOB}


def test_a_stop_signal_by_name_is_what_signal_signals_gives() -> None:
    """``stopSignal: "TERM"`` is read from the C ``_signal`` (no IntEnum): the same names and numbers."""
    import signal

    from pypilot.config.decode import _signal_num

    for name, sig in signal.Signals.__members__.items():
        assert _signal_num(name) == sig and _signal_num(name[3:].lower()) == sig
    assert _signal_num("SIG_DFL") is None and _signal_num("NSIG") is None and _signal_num("BOGUS") is None
