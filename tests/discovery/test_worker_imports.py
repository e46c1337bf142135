"""The I/O worker loads py-consul and prometheus-client without modules they import but it never uses
(issue #15): ``logging`` and py-consul's endpoint modules, prometheus-client's ``decorator`` (with
``inspect``), ``base64``, ``mmap`` and ``timeit``, stood in for while they import
(``lean_imports.deferring``). Each runs in a fresh interpreter, as the worker's first import does; a use
nobody foresaw gets the real module."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.consul_standin import ConsulStandin


def run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_deferred_module_leaves_sys_modules_after_the_block_and_what_kept_it_reaches_the_real_one() -> None:
    code = """
        import sys, types
        from pypilot import lean_imports
        with lean_imports.deferring({'json': {'marker': 1}, 'sys': {}}) as placed:
            import json as held
            print(placed, held.marker, type(held).__name__, 'json.decoder' in sys.modules)
        print('json' in sys.modules, sys.modules['sys'] is sys)
        print(held.dumps([1]), type(sys.modules['json']) is types.ModuleType)
        import json
        print(json is sys.modules['json'] and json is not held)
    """
    assert run(code) == ["['json'] 1 StandIn False", "False True", "[1] True", "True"]


def test_a_lazy_logger_is_the_real_logger_once_used() -> None:
    code = """
        import sys
        from pypilot import lean_imports
        with lean_imports.deferring({'logging': lean_imports.lazy_logging()}):
            import logging as held
            log = held.getLogger('lib')
        print('logging' in sys.modules)
        import logging
        logging.getLogger('lib').addHandler(logging.StreamHandler(sys.stdout))
        log.warning('from the library')
        log.propagate = False
        print(logging.getLogger('lib').propagate, held.getLogger('lib') is logging.getLogger('lib'))
    """
    assert run(code) == ["False", "from the library", "False True"]


def test_the_worker_client_loads_neither_logging_nor_the_endpoint_modules_until_one_is_used() -> None:
    with ConsulStandin() as standin:
        code = f"""
            import sys
            from pypilot.consul import make_client
            c = make_client({{'address': '{standin.address}'}})
            print([m for m in sys.modules if m.startswith(('logging', 'consul.api', 'consul.callback'))])
            print(c.agent.self() is not None, c.health.service('x')[1], 'consul.api.health' in sys.modules)
            print(type(c.agent.service).__module__, type(c.agent).__module__)
        """
        assert run(code) == ["[]", "True [] True", "consul.api.agent pypilot.consul_http"]


def test_pyconsul_logs_through_the_real_logging_when_it_logs() -> None:
    code = """
        import sys
        from pypilot.consul import make_client
        make_client({})
        print('logging' in sys.modules)
        import logging
        logging.basicConfig(stream=sys.stdout, format='%(name)s %(message)s')
        import consul
        consul.Check._compat(ttl='10s')  # py-consul's own deprecation warning
        print(type(sys.modules['logging']).__name__)
    """
    warning = "consul.check DEPRECATED: use consul.Check.script/http/ttl to specify check"
    assert run(code) == ["False", warning, "module"]

def test_telemetry_renders_its_page_without_inspect_and_a_timer_decorator_still_works() -> None:
    code = """
        import sys
        from pypilot.consul import _import_telemetry
        Telemetry = _import_telemetry()
        unused = ('inspect', 'gzip', 'zlib', 'prometheus_client.decorator', 'base64', 'mmap', 'timeit',
                  'socketserver')
        print([m for m in unused if m in sys.modules])
        t = Telemetry({'metrics': [{'name': 'hits', 'help': 'h', 'type': 'counter'}]}, '1', dict)
        t.record('hits|2')
        print([line for line in t.metrics_text().decode().splitlines() if line.startswith('hits')])
        from prometheus_client import CollectorRegistry, Summary, exposition
        s = Summary('t', 'h', registry=CollectorRegistry())
        @s.time()
        def f(a, b=2):
            return a + b
        print(f(1), 'inspect' in sys.modules, exposition.base64.b64encode(b'u:p'))
        print(type(sys.modules['timeit']).__name__)
        import mmap
        print(mmap.PAGESIZE > 0)  # the real module for any other importer
    """
    assert run(code) == ["[]", "['hits 2']", "3 True b'dTpw'", "module", "True"]


def test_the_platform_collector_reads_the_python_version_without_the_real_platform_module() -> None:
    code = """
        import sys
        from pypilot import lean_imports
        lean_imports.install()  # as the I/O worker does before its first Consul message
        from pypilot.consul import _import_telemetry
        _import_telemetry()
        from prometheus_client import PLATFORM_COLLECTOR
        labels = next(iter(PLATFORM_COLLECTOR.collect())).samples[0].labels
        print(type(sys.modules['platform']).__name__)
        del sys.modules['platform']
        import platform
        real = {'version': platform.python_version(), 'implementation': platform.python_implementation()}
        real.update(zip(('major', 'minor', 'patchlevel'), platform.python_version_tuple()))
        print(labels == real, labels['implementation'])
    """
    assert run(code) == ["StandIn", "True CPython"]


def test_a_stand_in_is_made_at_its_first_import_so_one_nothing_imports_loads_nothing() -> None:
    code = """
        import sys
        from pypilot import lean_imports
        registered = lean_imports.install()
        print(len(registered) > 5, [m for m in ('http', 'xml', 'datetime', '_datetime') if m in sys.modules])
        import http.cookiejar
        print(type(http.cookiejar).__name__, sys.modules['http.cookiejar'] is http.cookiejar)
        del sys.modules['http.cookiejar']
        import http.cookiejar as again
        print(type(again).__name__, hasattr(again, 'CookieJar'), lean_imports.install())
    """
    assert run(code) == ["True []", "StandIn True", "module True []"]


def test_telemetry_listens_on_an_ascii_address_without_the_idna_codec() -> None:
    """getaddrinfo given a str encodes it with ``idna`` (``encodings.idna``, ``stringprep``,
    ``unicodedata``: 0.3 MiB of the worker's private pages) even for ``127.0.0.1``."""
    code = """
        import sys
        from pypilot.telemetry import _listen
        sock = _listen('127.0.0.1', 0)
        print(sock.getsockname()[0], [m for m in ('encodings.idna', 'stringprep') if m in sys.modules])
    """
    assert run(code) == ["127.0.0.1 []"]
