"""The control worker serves without asyncio, ssl, http.cookiejar, xml.etree (pyexpat), calendar, getopt,
uuid, mimetypes, logging, traceback, concurrent.futures, ast, typing, dis, weakref or Falcon's Cython
modules loaded, and with ``datetime`` as the C module it ends up as (issue #15): Falcon and waitress import
them for what this app never does; ``pypilot.lean_imports`` stands in for them, and a name nobody foresaw
still reaches the real module."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import orjson

from tests.control.harness import ControlPilot


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


UNUSED = ("asyncio", "ssl", "_ssl", "http.client", "http.cookiejar", "urllib.request", "email.message",
          "xml.etree.ElementTree", "pyexpat", "calendar", "locale", "getopt", "gettext", "uuid", "platform",
          "mimetypes", "logging", "traceback", "concurrent.futures", "concurrent.futures.thread",
          "ast", "typing", "dis", "opcode", "weakref", "encodings.idna", "stringprep", "unicodedata",
          "falcon.cyutil.reader", "falcon.cyutil.uri", "falcon.cyutil.misc")


def test_the_control_app_and_server_import_and_build_without_the_modules_they_do_not_use() -> None:
    code = ("import sys, types, socket; from pypilot import lean_imports; print(lean_imports.install()); "
            "from pypilot.control import worker; worker.import_server(); "
            "import pypilot.control.app, pypilot.control.server; "
            "app = pypilot.control.app.make_app(None, {}); "
            "listener = socket.socket(socket.AF_UNIX); listener.bind(''); listener.listen(); "
            "pypilot.control.server.make_server(app, listener, lambda code, path: None); "
            f"print([m for m in {UNUSED!r} if type(sys.modules.get(m)) is types.ModuleType]); "
            "print(hasattr(sys.modules['datetime'], '_ymd2ord'))")  # the pure-Python datetime, never built
    assert run(code).splitlines() == [
        "['asyncio', 'http.cookiejar', 'xml.etree.ElementTree', 'calendar', 'getopt', 'uuid', 'mimetypes', "
        "'platform', 'datetime']", "[]", "False"]


def test_the_deferred_modules_are_the_real_ones_when_used() -> None:
    code = textwrap.dedent("""
        import sys, types; from pypilot.control import worker; worker.import_server()
        import falcon.util.sync as sync, waitress.utilities as wu, waitress.channel as wc
        from falcon.util import uri, misc
        print(uri.decode('a%20b+c', unquote_plus=True), misc._encode_items_to_latin1({'a': 'b'}))
        print(type(sys.modules.get('logging')).__name__, wu.logger.level, wu.queue_logger.getEffectiveLevel())
        import logging; print(logging.getLogger('waitress').level, wu.logger.name)
        try:
            1 / 0
        except ZeroDivisionError:
            print(wc.traceback.format_exc().splitlines()[-1])
        print(sync._one_thread_to_rule_them_all.submit(sum, [1, 2]).result())
        print([m for m in ('logging', 'traceback', 'concurrent.futures')
               if type(sys.modules.get(m)) is types.ModuleType])
    """)
    assert run(code).splitlines() == [
        "a b c [(b'a', b'b')]", "NoneType 40 40", "40 waitress", "ZeroDivisionError: division by zero", "3",
        "['logging', 'traceback', 'concurrent.futures']"]


def test_waitress_messages_under_its_level_do_not_import_logging_and_the_rest_are_logged() -> None:
    code = textwrap.dedent("""
        import sys; from pypilot.control import worker; worker.import_server()
        import waitress.utilities as wu, waitress.task as wt
        wu.queue_logger.warning('Task queue depth is %d', 1)
        wu.logger.info('Client disconnected'); wu.logger.debug('')
        print('logging' in sys.modules, wt.ThreadedTaskDispatcher.queue_logger.name)
        sys.stderr = sys.stdout
        wu.logger.error('an error: %s', 'logged')
        wu.logger.warning('a warning, not logged: the level is ERROR')
        print('logging' in sys.modules, wu.logger.level, wu.queue_logger.getEffectiveLevel())
    """)
    assert run(code).splitlines() == ["False waitress.queue", "an error: logged", "True 40 40"]


def test_the_dis_stand_in_s_flags_are_the_real_ones_and_copy_still_copies_weak_references() -> None:
    code = textwrap.dedent("""
        import sys, types; from pypilot.control import worker; worker.import_server()
        import copy, inspect, weakref
        async def coroutine(): pass
        class Referred: pass
        referred = Referred(); ref = weakref.ref(referred)
        print(inspect.iscoroutinefunction(coroutine), copy.copy(ref) is ref, copy.deepcopy([ref])[0] is ref)
        import dis; from pypilot import lean_imports
        flags = lean_imports.lazy_dis()
        print(flags is None or flags["COMPILER_FLAG_NAMES"] == dis.COMPILER_FLAG_NAMES)
        print(all(getattr(inspect, "CO_" + name) == flag for flag, name in dis.COMPILER_FLAG_NAMES.items()))
    """)
    assert run(code).splitlines() == ["True True True", "True", "True"]


def test_inspect_finds_a_class_s_source_through_the_ast_stand_in() -> None:
    code = textwrap.dedent("""
        import sys, types; from pypilot.control import worker; worker.import_server()
        import pypilot.control.app, inspect
        print(type(sys.modules.get('ast')).__name__, inspect.signature(pypilot.control.app.text))
        print(inspect.getsource(pypilot.control.app.Slots).splitlines()[0], type(sys.modules['ast']).__name__)
    """)
    assert run(code).splitlines() == [
        "NoneType (resp: 'falcon.Response', status: 'int', body: 'str', why: 'str' = '') -> 'None'",
        "class Slots: module"]


def test_typing_deferred_answers_annotations_aliases_and_protocols_and_loads_for_anything_else() -> None:
    code = textwrap.dedent("""
        import sys, types, dataclasses; from pypilot import lean_imports
        with lean_imports.deferring({'typing': lean_imports.lazy_typing()}):
            from typing import Any, Callable, ClassVar, Generic, Optional, Protocol, TypeVar, Union
            from typing import cast, overload
            T = TypeVar('T', bound=int)
            Alias = Union[Callable[[str], None], Optional[dict[str, Any]]] | None
            class P(Protocol[T]):
                def __call__(self, x: T) -> None: ...
            class G(Generic[T]):
                __slots__ = ('v',)
                def __init__(self, v: int) -> None: self.v = v
            @dataclasses.dataclass
            class D:
                a: Any
                b: ClassVar[int] = 1
            @overload
            def f(x: int) -> int: ...
            def f(x): return x + 1
            print(type(sys.modules['typing']).__name__, P[int] is P, G[int](2).v, cast(str, 3), f(1))
            print([x.name for x in dataclasses.fields(D)], D(5).a, D.b)
            import typing; print(typing.get_type_hints is not None, type(sys.modules['typing']).__name__)
        import typing; print(type(typing).__name__, typing.Any is not Any)
    """)
    assert run(code).splitlines() == ["StandIn True 2 3 2", "['a'] 5 1", "True module", "module True"]


def test_an_absent_module_is_not_found_in_the_block_and_found_after_it() -> None:
    code = textwrap.dedent("""
        import sys; from pypilot import lean_imports
        with lean_imports.absent('colorsys', 'sys') as placed:
            try:
                import colorsys
            except ModuleNotFoundError:
                print(placed, 'absent')
        import colorsys; print(colorsys.rgb_to_hsv(1, 0, 0), 'colorsys' in sys.modules)
    """)
    assert run(code).splitlines() == ["['colorsys'] absent", "(0.0, 1.0, 1) True"]


def test_datetime_is_the_same_names_and_objects_as_the_stdlib_one() -> None:
    code = ("import sys; from pypilot import lean_imports; lean_imports.install(); import datetime as lean; "
            "del sys.modules['datetime']; import datetime as real; "
            "public = lambda m: {k for k in vars(m) if not k.startswith('__') or k == '__all__'}; "
            "same = all(getattr(lean, k) is getattr(real, k) for k in real.__all__); "
            "print(public(lean) == public(real), same, lean.__all__ == real.__all__, "
            "lean.__doc__ == real.__doc__); "
            "import pickle; sys.modules['datetime'] = lean; "
            "d = lean.datetime(2026, 12, 2, tzinfo=lean.UTC); print(pickle.loads(pickle.dumps(d)) == d)")
    assert run(code).splitlines() == ["True True True True", "True"]


def test_a_use_the_stand_ins_did_not_foresee_gets_the_real_module() -> None:
    code = ("import sys, types; from pypilot import lean_imports; lean_imports.install(); "
            "import mimetypes, uuid, calendar, xml.etree.ElementTree as et; "
            "print(mimetypes.guess_type('a.json')[0], type(sys.modules['mimetypes']) is types.ModuleType); "
            "print(str(uuid.UUID(int=1))[-4:], isinstance(uuid.UUID(int=1), sys.modules['uuid'].UUID)); "
            "print(calendar.timegm((1970, 1, 2, 0, 0, 0)), et.tostring(et.Element('e'))); "
            "import platform; system = platform.system(); del sys.modules['platform']; import platform; "
            "print(system == platform.system(), platform.machine() == platform.uname().machine)")
    assert run(code).splitlines() == ["application/json True", "0001 True", "86400 b'<e />'", "True True"]


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


def test_the_running_control_worker_has_no_ssl_asyncio_or_cython_falcon_mapped_after_serving() -> None:
    with ControlPilot() as p:
        for path in ("/v3/ping", "/v3/status", "/v3/openapi.json"):
            code, _, _ = p.http("GET", path)
            assert code in (200, 404)
        code, _, _ = p.http("POST", "/v3/environ", orjson.dumps({"LEAN": "1"}))
        assert code == 200
        pid = p.status()["control"]["workerPid"]
        maps = open(f"/proc/{pid}/maps").read()
    assert "orjson" in maps  # it is the control worker, and it has served
    assert "_ssl." not in maps and "_asyncio." not in maps and "libssl" not in maps and "pyexpat" not in maps
    assert "falcon/cyutil" not in maps
