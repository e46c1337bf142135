"""The template executor: walks the tree of :mod:`.nodes` over the data (the environment as a Go
``map[string]string`` with ``missingkey=zero``), checks each call's arguments against the function's Go
signature and prints each action's value with Go's ``fmt.Fprint``, raw: nothing is escaped for the JSON5
around it (Go does not)."""

from __future__ import annotations

from collections.abc import Mapping

from pypilot import gofmt

from . import nodes as n
from .errors import TemplateError
from .funcs import FuncError, truth

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MAX_DEPTH = 100  # nested {{template}} calls (each costs a few Python frames, and so may each if/range)
_MISSING = object()  # "no final value" (the first command of a pipeline)


class Environment(dict):
    """The data: ContainerPilot's ``template.Environment`` (a ``map[string]string``)."""

    __slots__ = ()
    go_name = "template.Environment"


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Executor:
    def __init__(self, src: str, data: Mapping[str, str],
                 funcs: dict[str, tuple[Callable[..., Any], tuple[str, ...], str | None]],
                 defines: dict[str, list[n.Node]]) -> None:
        self.src, self.funcs, self.defines = src, funcs, defines
        self.vars: list[tuple[str, Any]] = [("$", Environment(data))]
        self.out: list[str] = []
        self.depth = 0
        self.name = ""  # the template executing: "" or a {{define}}'s name, as Go's errors say
        self.at: n.Node | None = None  # the node evaluated last: where Go reports a type mismatch

    # --- errors -----------------------------------------------------------------------------------

    def fail(self, node: n.Node, msg: str) -> TemplateError:
        """Go's ``template: :LINE:COL: executing "" at <NODE>: MSG`` (COL counts bytes, from 0)."""
        start = self.src.rfind("\n", 0, node.pos) + 1
        col = len(self.src[start : node.pos].encode("utf-8", "surrogateescape"))
        return TemplateError(f'template: :{node.line}:{col}: executing "{self.name}" at <{node}>: {msg}')

    # --- statements -------------------------------------------------------------------------------

    def walk(self, dot: Any, body: list[n.Node]) -> None:
        for node in body:
            if isinstance(node, n.TextNode):
                self.out.append(node.text)
            elif isinstance(node, n.ActionNode):
                val = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:  # a declaration prints nothing; it stays in scope until {{end}}
                    self.out.append("<no value>" if val is None else gofmt.sprint(val))
            elif isinstance(node, n.Branch):
                if node.kind == "range":
                    self.range(dot, node)
                else:
                    mark = len(self.vars)
                    val = self.pipeline(dot, node.pipe)
                    if truth(val):
                        self.walk(val if node.kind == "with" else dot, node.body)
                    else:
                        self.walk(dot, node.else_body)
                    del self.vars[mark:]
            elif isinstance(node, n.TemplateCall):
                self.call_template(dot, node)
            elif isinstance(node, n.LoopControl):
                raise _Break if node.kind == "break" else _Continue

    def call_template(self, dot: Any, node: n.TemplateCall) -> None:
        body = self.defines.get(node.name)
        if body is None:
            raise self.fail(node, f'template "{node.name}" not defined')
        if self.depth >= MAX_DEPTH:
            # Go stops at 100000 calls; Python's stack holds fewer, so the limit is lower, the words Go's
            raise self.fail(node, "exceeded maximum template depth (100000)")
        new_dot = self.pipeline(dot, node.pipe) if node.pipe else None
        saved, self.vars, saved_name, self.name = self.vars, [("$", new_dot)], self.name, node.name
        self.depth += 1
        try:
            self.walk(new_dot, body)
        finally:
            self.depth -= 1
            self.vars, self.name = saved, saved_name

    def range(self, dot: Any, node: n.Branch) -> None:
        mark = len(self.vars)
        decl = node.pipe.decl
        val = self.pipeline(dot, n.Pipeline([], False, node.pipe.cmds, node.pipe.pos, node.pipe.line))
        if isinstance(val, (list, tuple)):
            items: list[tuple[Any, Any]] = list(enumerate(val))
        elif isinstance(val, Mapping):
            items = [(k, val[k]) for k in sorted(val)]
        elif val is None:
            items = []
        else:
            raise self.fail(self.at or node, f"range can't iterate over {gofmt.sprint(val)}")
        if not items:
            self.walk(dot, node.else_body)
        for key, elem in items:
            if len(decl) == 1:
                self.vars.append((decl[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], elem))
            try:
                self.walk(elem, node.body)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self.vars[mark:]
        del self.vars[mark:]

    # --- pipelines --------------------------------------------------------------------------------

    def pipeline(self, dot: Any, pipe: n.Pipeline) -> Any:
        val: Any = _MISSING
        for cmd in pipe.cmds:
            val = self.command(dot, cmd, val)
        for name in pipe.decl:
            if pipe.assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == name:
                        self.vars[i] = (name, val)
                        break
                else:
                    raise self.fail(self.at or pipe, f"undefined variable: {name}")
            else:
                self.vars.append((name, val))
        return val

    def command(self, dot: Any, cmd: n.Command, final: Any) -> Any:
        head = cmd.args[0]
        if isinstance(head, n.Ident):
            return self.call(dot, head, cmd.args[1:], final, cmd)
        if len(cmd.args) > 1 or final is not _MISSING:
            if isinstance(head, (n.Field, n.Variable)) and head.chain:
                raise self.fail(head, f"{head.chain[-1]} is not a method but has arguments")
            raise self.fail(head, f"can't give argument to non-function {head}")
        if isinstance(head, n.Nil):
            raise self.fail(head, "nil is not a command")
        return self.operand(dot, head)

    def operand(self, dot: Any, node: n.Node) -> Any:
        self.at = node
        if isinstance(node, n.Literal):
            v = node.value
            if isinstance(v, int) and not isinstance(v, bool) and v >= 1 << 63:
                raise self.fail(node, f"{node.text} overflows int")
            return v
        if isinstance(node, n.Dot):
            return dot
        if isinstance(node, n.Field):
            return self.fields(dot, node.chain, node)
        if isinstance(node, n.Variable):
            for name, v in reversed(self.vars):
                if name == node.name:
                    return self.fields(v, node.chain, node)
            raise self.fail(node, f"undefined variable: {node.name}")
        if isinstance(node, n.Paren):
            return self.fields(self.pipeline(dot, node.pipe), node.chain, node)
        if isinstance(node, n.Ident):
            return self.call(dot, node, [], _MISSING, node)
        if isinstance(node, n.Nil):
            return None
        raise self.fail(node, f"can't evaluate {node}")

    def fields(self, val: Any, chain: list[str], node: n.Node) -> Any:
        for name in chain:
            if isinstance(val, Mapping):
                val = val.get(name, "")  # missingkey=zero over a map[string]string: ""
            elif val is None:
                return None  # Go: a field of no value is no value
            else:
                at = self.at if isinstance(node, n.Paren) and self.at else node  # Go: the last node it saw
                raise self.fail(at, f"can't evaluate field {name} in type {gofmt.go_type(val)}")
        return val

    # --- calls ------------------------------------------------------------------------------------

    def call(self, dot: Any, ident: n.Ident, args: list[n.Node], final: Any, cmd: n.Node) -> Any:
        name = ident.name
        self.at = ident
        fn, params, variadic = self.funcs[name]
        nargs = len(args) + (final is not _MISSING)
        if (variadic is None and nargs != len(params)) or (variadic is not None and nargs < len(params)):
            want = f"at least {len(params)}" if variadic is not None else str(len(params))
            raise self.fail(ident, f"wrong number of args for {name}: want {want} got {nargs}")
        if name in ("and", "or"):  # short-circuit, as Go 1.18+ does
            v: Any = None
            for a in args:
                v = self.arg(dot, a, "any")
                if truth(v) == (name == "or"):
                    return v
            return final if final is not _MISSING else v
        values = [self.arg(dot, a, params[i] if i < len(params) else variadic or "any")
                  for i, a in enumerate(args)]
        if final is not _MISSING:
            typ = params[len(values)] if len(values) < len(params) else variadic or "any"
            values.append(self.check(ident, final, typ))
        try:
            return fn(*values)
        except FuncError as e:
            raise self.fail(cmd, f"error calling {name}: {e}") from None

    def arg(self, dot: Any, node: n.Node, typ: str) -> Any:
        self.at = node
        if typ != "any":
            if isinstance(node, n.Nil):
                if typ.startswith("[]"):  # a slice can be nil: an empty one
                    return gofmt.Strings()
                raise self.fail(node, f"cannot assign nil to {typ}")
            if isinstance(node, n.Literal) and typ != "string":
                raise self.fail(node, f"can't handle {node} for arg of type {typ}")
            if isinstance(node, n.Literal) and not isinstance(node.value, str):
                raise self.fail(node, f"expected {typ}; found {node.text}")
        elif isinstance(node, n.Nil):
            return None
        return self.check(node, self.operand(dot, node), typ)

    def check(self, node: n.Node, v: Any, typ: str) -> Any:
        if typ == "any":
            return v
        node = self.at or node
        if v is None:
            raise self.fail(node, f"invalid value; expected {typ}")
        got = gofmt.go_type(v)
        if got != typ:
            raise self.fail(node, f"wrong type for value; expected {typ}; got {got}")
        return v
