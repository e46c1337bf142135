"""What PID 1 imports before its first spawn (issue #15: start-up is user-visible): none of the modules
that cost milliseconds and that it does not need then. Measured as the modules pypilot's own imports add,
in a fresh interpreter (the interpreter's and site's own imports are not pypilot's)."""

from __future__ import annotations

import subprocess
import sys

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
