"""The template's syntax tree: one class per node kind, each with its source offset ``pos`` and ``line``.

Plain classes with ``__slots__`` (dataclasses cost PID 1's start-up). ``str(node)`` gives the source form
Go's error messages quote (``at <.A.B>``)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Node:
    __slots__ = ("line", "pos")

    def __init__(self, pos: int, line: int) -> None:
        self.pos, self.line = pos, line


# --- operands --------------------------------------------------------------------------------------


class Literal(Node):
    """A string, number or bool constant; ``text`` is its source form."""

    __slots__ = ("text", "value")

    def __init__(self, value: Any, text: str, pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.value, self.text = value, text

    def __str__(self) -> str:
        return self.text


class Nil(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class Dot(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class Field(Node):
    """``.A.B``: a chain of keys from dot."""

    __slots__ = ("chain",)

    def __init__(self, chain: list[str], pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.chain = chain

    def __str__(self) -> str:
        return "".join("." + p for p in self.chain)


class Variable(Node):
    """``$x.A``: a variable and the keys after it."""

    __slots__ = ("chain", "name")

    def __init__(self, name: str, chain: list[str], pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.name, self.chain = name, chain

    def __str__(self) -> str:
        return self.name + "".join("." + p for p in self.chain)


class Ident(Node):
    """A function name."""

    __slots__ = ("name",)

    def __init__(self, name: str, pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.name = name

    def __str__(self) -> str:
        return self.name


class Paren(Node):
    """``(pipeline).A.B``: a parenthesised pipeline and the keys after it."""

    __slots__ = ("chain", "pipe")

    def __init__(self, pipe: Pipeline, chain: list[str], pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.pipe, self.chain = pipe, chain

    def __str__(self) -> str:
        return f"({self.pipe})" + "".join("." + p for p in self.chain)


class Command(Node):
    """One stage of a pipeline: an operand and its arguments."""

    __slots__ = ("args",)

    def __init__(self, args: list[Node], pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.args = args

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args)


class Pipeline(Node):
    """``$a, $b := cmd | cmd``; ``assign`` for ``=`` rather than ``:=``."""

    __slots__ = ("assign", "cmds", "decl")

    def __init__(self, decl: list[str], assign: bool, cmds: list[Command], pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.decl, self.assign, self.cmds = decl, assign, cmds

    def __str__(self) -> str:
        head = ", ".join(self.decl) + (" = " if self.assign else " := ") if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


# --- statements ------------------------------------------------------------------------------------


class TextNode(Node):
    __slots__ = ("text",)

    def __init__(self, text: str, pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.text = text


class ActionNode(Node):
    """``{{ pipeline }}``: printed unless it declares or assigns variables."""

    __slots__ = ("pipe",)

    def __init__(self, pipe: Pipeline, pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.pipe = pipe


class Branch(Node):
    """``if``, ``with`` or ``range``: ``kind`` names which."""

    __slots__ = ("body", "else_body", "kind", "pipe")

    def __init__(self, kind: str, pipe: Pipeline, body: list[Node], else_body: list[Node], pos: int,
                 line: int) -> None:
        super().__init__(pos, line)
        self.kind, self.pipe, self.body, self.else_body = kind, pipe, body, else_body


class TemplateCall(Node):
    """``{{ template "name" pipeline }}`` (and the call a ``block`` leaves where it stands)."""

    __slots__ = ("name", "pipe")

    def __init__(self, name: str, pipe: Pipeline | None, pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.name, self.pipe = name, pipe

    def __str__(self) -> str:
        return f'{{{{template "{self.name}"' + (f" {self.pipe}" if self.pipe else "") + "}}"


class LoopControl(Node):
    """``{{ break }}`` or ``{{ continue }}`` inside a range (Go 1.18; CP 3.8's binary is Go 1.19)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str, pos: int, line: int) -> None:
        super().__init__(pos, line)
        self.kind = kind
