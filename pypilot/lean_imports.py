"""Stand-ins for stdlib modules a worker's libraries import but never use here (issue #15).

Falcon imports ``asyncio`` (with it ``ssl``, ``concurrent.futures``' friends, the event loop machinery) and
``http.cookiejar`` (with it ``urllib.request``, ``http.client``, ``email``) at import time, for its ASGI
side and a type alias: ~13 MiB of RSS in the control worker, which serves WSGI on waitress and never
touches either. Falcon and waitress also import, for what this app never does: ``xml.etree`` (and
``pyexpat``: an error answered as XML), ``uuid`` (and ``platform``: a UUID parameter or route converter),
``mimetypes`` (App() reads /etc/mime.types for static routes), ``calendar`` (If-Modified-Since), ``getopt``
(and ``gettext``, ``locale``: waitress' command line), ``platform`` (one "is this Windows?"): ~2.5 MiB of
the worker's RSS. ``install`` registers a stand-in for each before Falcon is imported, made at the module's
first import (``_Finder``: one nothing imports costs nothing); ``_stand_ins`` says what each one answers, and
why that is safe:

- the stand-in answers the few names read at import time (``asyncio.create_task`` and
  ``get_running_loop``, which Falcon wraps in deprecation shims, as functions that call the real ones;
  ``http.cookiejar.Cookie``, used only in a type alias, as a placeholder class; ``uuid.UUID`` as a function
  that calls the real one; ``platform.system`` as what it reads, ``os.uname().sysname``);
- ``asyncio.Runner`` is absent, so Falcon falls back to its own lazy runner instead of building one;
- any other name read from a stand-in imports the real module then and there, puts it in
  ``sys.modules`` and answers from it: a use nobody foresaw costs the import it always cost, nothing more.

``datetime`` is not a stand-in but the module the stdlib's ends up as: ``datetime.py`` builds a whole
pure-Python implementation, then replaces every public name with the C module's; here the module is made
of the C module's names straight away (the same objects, the same ``__all__``).

Not stood in, because they are used while the app is built: ``inspect`` (Falcon's
``add_error_handler`` reads each handler's ``inspect.signature``), ``http.cookies`` (Falcon reads ``Morsel``
at import); ``concurrent.futures`` (Falcon makes an executor at import) and ``logging`` (waitress' loggers)
are only deferred while the control worker imports them (below).

Only for a process of our own that imports a known set of libraries, before any of them is imported: the
control worker, and the I/O worker before its first Consul or telemetry message (py-consul, prometheus-client
and waitress import ``calendar``, ``getopt``, ``platform``, ``datetime`` too: 0.4 MiB of its RSS); never in
PID 1 or a test process.

``unused`` is the narrower tool for one import: while prometheus-client is imported in the discovery
worker, its push-gateway and HTTP-server helpers' modules (``http.server``, ``urllib.request``, ``wsgiref``,
``ssl``: ~8 MiB) answer every name with a placeholder class; they are taken out again straight after, so
any later import gets the real module, and only those helpers, never called here, hold placeholders.

``deferring`` is the same scoped tool for modules a library does use, only not at import or not in our
path: within the block each is a ``StandIn`` (the names given, anything else loads the real module), taken
out of ``sys.modules`` after; what the library kept of it goes on forwarding. The I/O worker imports
py-consul while ``logging`` (its loggers taken at import: ``lazy_logging``) and the endpoint modules are
deferred (``pypilot.consul_http``), and prometheus-client while its ``decorator`` (with ``inspect``) and
``gzip`` are (``pypilot.consul``). Scoped, so safe in any process: a test process gets the real modules.
The control worker imports Falcon and waitress while ``logging`` (their loggers; ``lazy_logging``'s
``levels`` keeps waitress' at ERROR), ``traceback``, ``concurrent.futures`` (Falcon's executor at import:
``ThreadPoolExecutor``, made real at its first use), ``ast`` (``inspect`` subclasses its ``NodeVisitor``
at import, for ``getsource``: ``NodeVisitor``), ``typing`` (Falcon's annotations, aliases and protocols,
evaluated at import: ``lazy_typing``'s ``TypeForm``s), ``dis`` (``inspect`` reads its table of code flags
at import: ``lazy_dis``) and ``weakref`` (``copy`` files ``weakref.ref`` as an atomic type) are deferred,
and while Falcon's Cython modules are ``absent`` (an import in the block is "not found", so Falcon takes
the pure-Python twins it loads anyway; after it, the real module is found again):
``pypilot.control.worker.import_server``.
"""

from __future__ import annotations

import _thread
import contextlib
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

__all__ = ["NodeVisitor", "StandIn", "ThreadPoolExecutor", "TypeForm", "absent", "deferring", "forward",
           "install", "lazy_dis", "lazy_logging", "lazy_typing", "standing_in", "unused"]


class StandIn(types.ModuleType):
    """A module that answers ``names`` itself, hides ``hidden`` and forwards the rest to the real one."""

    def __init__(self, name: str, names: dict[str, Any], hidden: frozenset[str] = frozenset()) -> None:
        super().__init__(name, f"pypilot.lean_imports stand-in for {name} (the real one loads when used)")
        self.__dict__.update(names)
        self.__dict__["_hidden"] = hidden
        self.__dict__["_real"] = None

    def __getattr__(self, attr: str) -> Any:  # only for names not in __dict__
        if attr.startswith("__") or attr in self.__dict__["_hidden"]:
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def _load(self) -> types.ModuleType:
        real = self.__dict__["_real"]
        if real is None:
            import importlib

            name = self.__name__
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)
            self.__dict__["_real"] = real
        return real


def _real(module: str) -> types.ModuleType:
    """The real ``module``: imported now if only a stand-in (or nothing) is there."""
    target = sys.modules.get(module)
    if isinstance(target, StandIn):
        return target._load()
    if target is None:
        import importlib

        return importlib.import_module(module)
    return target


def forward(module: str, attr: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_real(module), attr)(*args, **kwargs)

    call.__name__ = call.__qualname__ = attr
    call.__doc__ = f"{module}.{attr}, imported when first called"
    return call


class Cookie:
    """Stands for ``http.cookiejar.Cookie`` where only its name is used (a type alias)."""


def _datetime() -> types.ModuleType:
    """``datetime`` as the C module ``_datetime`` already is: the stdlib's ``datetime.py`` first defines the
    whole pure-Python implementation (~0.2 MiB of objects), then replaces every public name with
    ``_datetime``'s. The same names, the same objects; only the discarded copy is never built."""
    import _datetime

    module = types.ModuleType("datetime", _datetime.__doc__)
    module.__dict__.update({k: v for k, v in vars(_datetime).items() if not k.startswith("__")})
    module.__dict__.update(__all__=("date", "datetime", "time", "timedelta", "timezone", "tzinfo", "MINYEAR",
                                    "MAXYEAR", "UTC"), sys=sys)
    return module


def _stand_ins() -> dict[str, Callable[[], types.ModuleType]]:
    """What ``install`` registers, and why each is safe (the control worker's libraries, read at import)."""
    return {
        # Falcon's ASGI side and a type alias (see the module docstring)
        "asyncio": lambda: StandIn(
            "asyncio",
            {"create_task": forward("asyncio", "create_task"),
             "get_running_loop": forward("asyncio", "get_running_loop")},
            hidden=frozenset({"Runner"}),
        ),
        "http.cookiejar": lambda: StandIn("http.cookiejar", {"Cookie": Cookie}),
        # Falcon's HTTPError.to_xml (with pyexpat): an error answered as XML, which this app never does
        "xml.etree.ElementTree": lambda: StandIn("xml.etree.ElementTree", {}),
        # waitress: ``calendar`` (and ``locale``) to parse an If-Modified-Since date, ``getopt`` (and
        # ``gettext``, ``locale``) for its command line; neither runs here
        "calendar": lambda: StandIn("calendar", {}),
        "getopt": lambda: StandIn("getopt", {}),
        # Falcon's UUID parameter and route converter (``uuid`` imports ``platform``): not in these routes
        "uuid": lambda: StandIn("uuid", {"UUID": forward("uuid", "UUID")}),
        # Falcon's App() copies ``mimetypes.types_map`` (after reading /etc/mime.types) as the table of its
        # static routes; the control app mounts none, so the table it copies is an empty one
        "mimetypes": lambda: StandIn("mimetypes", {"inited": True, "types_map": {}}),
        # waitress asks ``platform.system()`` once, to know whether it runs on Windows: on a POSIX system
        # that is ``os.uname().sysname`` (what platform.uname() reads); prometheus-client's platform
        # collector (in the I/O worker) reads the Python version and implementation at import
        "platform": lambda: StandIn("platform", {"system": _system, **_python_platform()}),
        "datetime": _datetime,
    }


def _system() -> str:
    import os

    return os.uname().sysname


def _python_platform() -> dict[str, Callable[[], Any]]:
    """``platform.python_version``, ``python_version_tuple`` and ``python_implementation`` on CPython: the
    version at the head of ``sys.version`` (``platform`` parses the same, and makes "3.14" "3.14.0").
    On another implementation, none: the real module answers."""
    if sys.implementation.name != "cpython":
        return {}
    parts = sys.version.split(None, 1)[0].split(".")
    version = ".".join([*parts, "0"] if len(parts) == 2 else parts)
    return {"python_version": lambda: version, "python_version_tuple": lambda: tuple(version.split(".")),
            "python_implementation": lambda: "CPython"}


class _Finder:
    """On ``sys.meta_path``: the first import of a stand-in's name gets the stand-in, made then; any later
    one (after a stand-in loaded its real module, or ``del sys.modules[name]``) the real module. A
    stand-in nothing imports costs nothing: no parent package imported for it (the I/O worker imports
    neither ``http`` nor ``xml``), no ``_datetime`` loaded."""

    def __init__(self) -> None:
        self.pending: dict[str, Callable[[], types.ModuleType]] = {}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.pending:
            return None
        from importlib.machinery import ModuleSpec

        return ModuleSpec(name, self)  # type: ignore[arg-type]  # a loader by protocol (importlib.abc: MiBs)

    def create_module(self, spec: Any) -> types.ModuleType:
        return self.pending.pop(spec.name)()

    def exec_module(self, module: types.ModuleType) -> None:
        pass


_finder = _Finder()


def install() -> list[str]:
    """Register the stand-ins not already shadowed by a real import (each is made at its first import, and
    its package gets it as an attribute as for any submodule); the names registered."""
    makers = _stand_ins()
    done = [name for name in makers if name not in sys.modules and name not in _finder.pending]
    _finder.pending.update({name: makers[name] for name in done})
    if done and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    return done


class _Placeholder(types.ModuleType):
    """A module that answers the names it was given, and any other with a class of that name (for code
    that is defined but never run)."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        cls = type(attr, (), {"__module__": self.__name__})
        setattr(self, attr, cls)
        return cls


@contextlib.contextmanager
def standing_in(modules: dict[str, dict[str, Any]]) -> Iterator[list[str]]:
    """Within the block, each module of ``modules`` not imported yet is a placeholder answering the names
    given for it; taken out again after, so any later import gets the real module (see the docstring)."""
    placed = [name for name in modules if name not in sys.modules]
    for name in placed:
        module = sys.modules[name] = _Placeholder(name, "pypilot.lean_imports placeholder, during one import")
        module.__dict__.update(modules[name])
    try:
        yield placed
    finally:
        for name in placed:
            if isinstance(sys.modules.get(name), _Placeholder):
                del sys.modules[name]
            parent, _, child = name.rpartition(".")
            package = sys.modules.get(parent) if parent else None
            if package is not None and isinstance(getattr(package, child, None), _Placeholder):
                delattr(package, child)


def unused(*names: str) -> contextlib.AbstractContextManager[list[str]]:
    """``standing_in`` for modules whose every name is a placeholder."""
    return standing_in({name: {} for name in names})


@contextlib.contextmanager
def deferring(modules: dict[str, dict[str, Any]]) -> Iterator[list[str]]:
    """Within the block, each module of ``modules`` not imported yet is a ``StandIn`` answering the names
    given for it; taken out of ``sys.modules`` after, so a later import gets the real module, while what
    the block's imports kept of a stand-in goes on forwarding any other name to the real one (imported
    then). Unlike ``standing_in``'s placeholders, a use nobody foresaw is still the real thing: for
    modules the block's libraries do call, only not at import or not in our path."""
    placed = [name for name in modules if name not in sys.modules]
    for name in placed:
        sys.modules[name] = StandIn(name, modules[name])
    try:
        yield placed
    finally:
        for name in placed:
            module = sys.modules.get(name)
            if isinstance(module, StandIn) and module.__dict__["_real"] is None:
                del sys.modules[name]


class _Logger:
    """Stands for ``logging.getLogger(name)`` until it is used: then it is that logger's every name."""

    def __init__(self, name: str | None) -> None:
        self.__dict__["_name"] = name

    def __getattr__(self, attr: str) -> Any:
        below = _BELOW.get(attr)
        if below is not None and "logging" not in sys.modules and below < _level_of(self.__dict__["_name"]):
            return _drop  # a message under the logger's level, before anything could have configured logging
        return getattr(_real_logger(self.__dict__["_name"]), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(_real_logger(self.__dict__["_name"]), attr, value)


_BELOW = {"debug": 10, "info": 20, "warning": 30, "warn": 30}  # logging's levels of these methods
_levels: dict[str, int] = {}  # lazy_logging's levels, set on the real loggers when logging is first used
_known: dict[str, int] = {}  # the same, kept: what a lazy logger drops while logging is not imported
_lock = _thread.allocate_lock()  # the lazy loggers' levels being set, the lazy executor being made


def _level_of(name: str | None) -> int:
    """The level ``lazy_logging`` gave ``name`` or its nearest parent; 0 (log everything) for none."""
    while name:
        if name in _known:
            return _known[name]
        name = name.rpartition(".")[0]
    return 0


def _drop(*args: Any, **kwargs: Any) -> None:
    pass


def _real_logger(name: str | None) -> Any:
    real = _real("logging")
    if _levels:
        with _lock:  # no thread gets a logger whose level another is still setting
            for logger, level in _levels.items():
                real.getLogger(logger).setLevel(level)
            _levels.clear()
    return real.getLogger(name)


def _get_logger(name: str | None = None) -> Any:
    real = sys.modules.get("logging")
    if real is not None and not isinstance(real, StandIn):
        return _real_logger(name)
    return _Logger(name)


def lazy_logging(levels: dict[str, int] | None = None) -> dict[str, Any]:
    """``deferring``'s names for ``logging`` in a library that only takes its loggers at import
    (``log = logging.getLogger(__name__)``): each logger is the real one once something is logged.
    ``levels``: the level of each of these loggers (``logging.ERROR`` is 40), set on the real ones as
    soon as one of the block's loggers is used, before it logs anything; until then (``logging`` not
    imported by anyone, so configured by no one) a ``debug``/``info``/``warning`` under its level (or its
    parent's) is dropped without importing ``logging`` (waitress' "task queue depth" and "client
    disconnected" imported it for nothing: ~0.6 MiB of the control worker)."""
    _levels.update(levels or {})
    _known.update(levels or {})
    return {"getLogger": _get_logger}


class ThreadPoolExecutor:
    """Stands for ``concurrent.futures.ThreadPoolExecutor(...)`` made at import and never used here
    (Falcon's sync-to-async helpers): the real one, made with the same arguments, at its first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.update(_args=args, _kwargs=kwargs, _executor=None)

    def __getattr__(self, attr: str) -> Any:
        if self.__dict__["_executor"] is None:
            real = _real("concurrent.futures").ThreadPoolExecutor
            with _lock:  # one executor, whichever thread comes first
                if self.__dict__["_executor"] is None:
                    self.__dict__["_executor"] = real(*self.__dict__["_args"], **self.__dict__["_kwargs"])
        return getattr(self.__dict__["_executor"], attr)


class NodeVisitor:
    """Stands for ``ast.NodeVisitor`` as the base of a class defined at import and not used here
    (``inspect``'s ``_ClassFinder``, for ``getsource`` of a class): every name it does not define, looked
    up on an instance, is the real class's (its methods bound to the instance), ``ast`` imported then."""

    def __getattr__(self, attr: str) -> Any:
        value = getattr(_real("ast").NodeVisitor, attr)
        bind = getattr(value, "__get__", None)
        return bind(self, type(self)) if bind is not None else value


class TypeForm:
    """Stands for a ``typing`` construct where only annotations and type aliases evaluated at import use
    it (``typing`` deferred while a library imports): any subscript of it is itself, so is a subclass's,
    and as a base (``Generic[T]``, ``Protocol``) it is a plain class with nothing else of its own."""

    __slots__ = ()

    def __class_getitem__(cls, params: Any) -> Any:
        return cls


def _type_form(name: str) -> type[TypeForm]:
    return type(name, (TypeForm,), {"__slots__": (), "__module__": "typing"})


def _cast(typ: Any, val: Any) -> Any:
    return val  # typing.cast at run time


def _overload(func: Any) -> Any:
    return func  # the implementation defined after the overloads replaces it, as with typing's


def _type_var(name: str, *constraints: Any, **kwargs: Any) -> type[TypeForm]:
    return _type_form(name)


def lazy_typing() -> dict[str, Any]:
    """``deferring``'s names for ``typing`` in libraries that use it only in annotations and in aliases
    and protocols evaluated at import (Falcon's, ``wsgiref.types``): each construct is a ``TypeForm`` of
    its own name (``dataclasses`` tells ``ClassVar`` from the rest by identity), ``TypeVar`` makes one,
    ``cast`` and ``overload`` do what they do at run time, ``TYPE_CHECKING`` is False. Any other name is
    the real ``typing``'s, imported then."""
    names: dict[str, Any] = {name: _type_form(name) for name in (
        "Any", "BinaryIO", "Callable", "ClassVar", "Final", "Generic", "IO", "Literal", "NoReturn",
        "Optional", "Protocol", "TextIO", "TypeAlias", "Union", "_GenericAlias")}
    names.update(TYPE_CHECKING=False, TypeVar=_type_var, cast=_cast, overload=_overload)
    return names


def lazy_dis() -> dict[str, Any] | None:
    """``deferring``'s names for ``dis`` where ``inspect`` reads only its table of code flags at import
    (``COMPILER_FLAG_NAMES``, for its ``CO_*`` names): the table as CPython 3.11 to 3.13 have it (the
    flags are C's, in ``Include/cpython/code.h``). None elsewhere: ``dis`` is then not deferred."""
    if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info[:2] <= (3, 13):
        return None
    flags = ("OPTIMIZED", "NEWLOCALS", "VARARGS", "VARKEYWORDS", "NESTED", "GENERATOR", "NOFREE", "COROUTINE",
             "ITERABLE_COROUTINE", "ASYNC_GENERATOR")
    return {"COMPILER_FLAG_NAMES": {1 << i: name for i, name in enumerate(flags)}}


@contextlib.contextmanager
def absent(*names: str) -> Iterator[list[str]]:
    """Within the block, importing any of ``names`` (not imported yet) raises ``ModuleNotFoundError``, as
    for a module not installed (``sys.modules[name] = None``): for a library's optional accelerator whose
    pure-Python twin it has loaded anyway. After the block a later import gets the real module."""
    placed = [name for name in names if name not in sys.modules]
    for name in placed:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not there"
    try:
        yield placed
    finally:
        for name in placed:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
