"""The control worker serves without asyncio, ssl or http.cookiejar loaded (issue #15): Falcon imports
them for its ASGI side; ``pypilot.lean_imports`` stands in for them, and a name nobody foresaw still
reaches the real module."""

from __future__ import annotations

import subprocess
import sys

import orjson

from tests.control.harness import ControlPilot


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_control_app_and_server_import_without_asyncio_ssl_or_http_client() -> None:
    code = ("import sys, types; from pypilot import lean_imports; print(lean_imports.install()); "
            "import pypilot.control.worker, pypilot.control.app, pypilot.control.server; "
            "print([m for m in ('asyncio', 'ssl', '_ssl', 'http.client', 'http.cookiejar', 'urllib.request', "
            "'email.message') if type(sys.modules.get(m)) is types.ModuleType])")
    assert run(code).splitlines() == ["['asyncio', 'http.cookiejar']", "[]"]


def test_a_name_the_stand_in_does_not_know_loads_the_real_module_and_hidden_ones_stay_hidden() -> None:
    code = ("import sys, types; from pypilot import lean_imports; lean_imports.install(); "
            "import asyncio, http.cookiejar; stand_in = asyncio; "
            "print(hasattr(asyncio, 'Runner'), type(sys.modules['asyncio']).__name__); "
            "loop = asyncio.new_event_loop(); "  # not a stand-in name: the real asyncio, now in sys.modules
            "real = sys.modules['asyncio']; print(type(real) is types.ModuleType, real.Runner is not None); "
            "print(loop.run_until_complete(asyncio.sleep(0, 'ran'))); "
            "jar = http.cookiejar.CookieJar(); print(type(jar).__module__); "
            "import asyncio as again; print(again is not stand_in)")
    assert run(code).splitlines() == ["False StandIn", "True True", "ran", "http.cookiejar", "True"]


def test_the_forwarded_functions_are_the_real_ones_when_called() -> None:
    code = ("from pypilot import lean_imports; lean_imports.install(); import asyncio\n"
            "create_task = asyncio.create_task\n"
            "async def main():\n"
            "    t = create_task(asyncio.sleep(0, 7)); return await t\n"
            "print(asyncio.run(main()))")
    assert run(code) == "7"


def test_the_running_control_worker_has_no_ssl_or_asyncio_mapped_after_serving() -> None:
    with ControlPilot() as p:
        for path in ("/v3/ping", "/v3/status", "/v3/openapi.json"):
            code, _, _ = p.http("GET", path)
            assert code in (200, 404)
        code, _, _ = p.http("POST", "/v3/environ", orjson.dumps({"LEAN": "1"}))
        assert code == 200
        pid = p.status()["control"]["workerPid"]
        maps = open(f"/proc/{pid}/maps").read()
    assert "falcon" in maps  # it is the control worker, and it has served
    assert "_ssl." not in maps and "_asyncio." not in maps and "libssl" not in maps
