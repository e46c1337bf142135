"""``@record``: frozen, slotted value classes for the config model, without importing ``dataclasses``.

PID 1 loads its config before the first spawn, and ``dataclasses`` (with the ``inspect`` it pulls in
and the code it ``exec``s per class) cost ~13 ms of that start-up (python -X importtime). A record has
what the model needs of a frozen dataclass: keyword/positional ``__init__`` with defaults and
``field(default_factory=...)``, value ``==`` and ``hash``, ``repr``, ``_replace`` and ``_asdict``.
Type checkers see it as a frozen dataclass (``dataclass_transform``).
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


class Record:
    """Base of every record: declares the two helpers ``@record`` fills in."""

    __slots__ = ()

    def _replace(self, **changes: Any) -> Any:
        raise NotImplementedError

    def _asdict(self) -> dict[str, Any]:
        raise NotImplementedError


def _field(*, default_factory: Callable[[], Any]) -> Any:
    return _Factory(default_factory)


def _record(cls: type) -> type:
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063 (inspect is what we avoid)
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
    ns = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__} takes {len(names)} positional arguments")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{cls.__name__} got an unexpected keyword argument '{key}'")
            if key in values:
                raise TypeError(f"{cls.__name__} got multiple values for argument '{key}'")
            values[key] = value
        for name in names:
            if name not in values:
                if name not in defaults:
                    raise TypeError(f"{cls.__name__} missing required argument: '{name}'")
                default = defaults[name]
                values[name] = default.make() if isinstance(default, _Factory) else default
            object.__setattr__(self, name, values[name])

    def _values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in names)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(_values(self) == _values(other))

    def __hash__(self: Any) -> int:
        return hash(_values(self))

    def __repr__(self: Any) -> str:
        return f"{cls.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field '{name}' of frozen {cls.__name__}")

    def _replace(self: Any, **changes: Any) -> Any:
        return self.__class__(**{**{n: getattr(self, n) for n in names}, **changes})

    def _asdict(self: Any) -> dict[str, Any]:
        return {n: getattr(self, n) for n in names}

    ns.update(__slots__=names, __init__=__init__, __eq__=__eq__, __hash__=__hash__, __repr__=__repr__,
              __setattr__=__setattr__, _replace=_replace, _asdict=_asdict, _fields=names)
    return type(cls.__name__, cls.__bases__, ns)


if TYPE_CHECKING:

    def field(*, default_factory: Callable[[], T]) -> T: ...

    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def record(cls: type[T]) -> type[T]: ...

else:
    field = _field
    record = _record
