"""``@record``: frozen, slotted value classes for the config model, without importing ``dataclasses``.

PID 1 loads its config before the first spawn, and ``dataclasses`` (with the ``inspect`` it pulls in
and the code it ``exec``s per class) cost ~13 ms of that start-up (python -X importtime). A record has
what the model needs of a frozen dataclass: keyword/positional ``__init__`` with defaults and
``field(default_factory=...)``, value ``==`` and ``hash``, ``repr``, ``_replace`` and ``_asdict``.
A record is a subclass of ``Record``, made one by its metaclass as its class statement runs (each class is
built once), and marked ``@record``, for which type checkers see it as a frozen dataclass
(``dataclass_transform``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing alone costs ~2 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = self.__class__
    names, defaults, name = cls._fields, cls._field_defaults, cls.__name__
    if len(args) > len(names):
        raise TypeError(f"{name} takes {len(names)} positional arguments")
    values = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError(f"{name} got an unexpected keyword argument '{key}'")
        if key in values:
            raise TypeError(f"{name} got multiple values for argument '{key}'")
        values[key] = value
    for field_name in names:
        if field_name not in values:
            if field_name not in defaults:
                raise TypeError(f"{name} missing required argument: '{field_name}'")
            default = defaults[field_name]
            values[field_name] = default.make() if isinstance(default, _Factory) else default
        object.__setattr__(self, field_name, values[field_name])


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, n) for n in self._fields)


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return bool(_values(self) == _values(other))


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    return f"{self.__class__.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"


def _setattr(self: Any, attr: str, value: Any) -> None:
    raise AttributeError(f"cannot assign to field '{attr}' of frozen {self.__class__.__name__}")


def _replace(self: Any, **changes: Any) -> Any:
    return self.__class__(**{**{n: getattr(self, n) for n in self._fields}, **changes})


def _asdict(self: Any) -> dict[str, Any]:
    return {n: getattr(self, n) for n in self._fields}


def _members(ns: dict[str, Any]) -> dict[str, Any]:
    """A record class's namespace: its class body's ``ns`` with its fields (its annotations) as slots and
    the methods of a frozen dataclass; the defaults move out of the class into ``_field_defaults``, which
    ``__init__`` reads. The methods are shared by every record (they read the class's ``_fields``): a set
    of closures per class cost ~0.3 M instructions of PID 1's start-up for the model's 16."""
    names = tuple(ns.get("__annotations__", {}))
    ns_out = {k: v for k, v in ns.items() if k not in names}
    ns_out.update(__slots__=names, __init__=_init, __eq__=_eq, __hash__=_hash, __repr__=_repr,
                  __setattr__=_setattr, _replace=_replace, _asdict=_asdict, _fields=names,
                  _field_defaults={n: ns[n] for n in names if n in ns})
    return ns_out


class _RecordType(type):
    """Makes each subclass of ``Record`` a record as its class statement runs: its slots have to be there
    when the class is made, and a decorator that made the class again with them (as ``dataclass(slots=True)``
    does) built every record class twice, ~1 M instructions of PID 1's start-up for the model's 16."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> _RecordType:
        return super().__new__(mcls, name, bases, _members(ns) if bases else ns)


class Record(metaclass=_RecordType):
    """Base of every record: declares the two helpers its metaclass fills in."""

    __slots__ = ()

    def _replace(self, **changes: Any) -> Any:
        raise NotImplementedError

    def _asdict(self) -> dict[str, Any]:
        raise NotImplementedError


def _field(*, default_factory: Callable[[], Any]) -> Any:
    return _Factory(default_factory)


def _record(cls: type) -> type:
    """``@record`` marks a record class for type checkers (a frozen dataclass); ``Record`` made it one."""
    if not isinstance(cls, _RecordType) or cls is Record:
        raise TypeError(f"@record: {cls.__name__} is not a subclass of Record")
    return cls


if TYPE_CHECKING:

    def field(*, default_factory: Callable[[], T]) -> T: ...

    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def record(cls: type[T]) -> type[T]: ...

else:
    field = _field
    record = _record
