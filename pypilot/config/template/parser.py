"""The template parser: lexer items to the tree of :mod:`.nodes`, with the parse-time checks Go makes
(undefined functions and variables, ``{{end}}`` pairing, ``break`` outside ``range``)."""

from __future__ import annotations

from . import nodes as n
from .errors import TemplateError
from .lexer import Action, Lexer, Text, Tok

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Container


class Parser:
    def __init__(self, src: str, funcs: Container[str]) -> None:
        self.items = Lexer(src).run()
        self.i = 0
        self.funcs = funcs
        self.defines: dict[str, list[n.Node]] = {}
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    def parse(self) -> list[n.Node]:
        body, end = self._list(())
        if end is not None:
            raise TemplateError(f"template: :{end.line}: unexpected {{{{{end.toks[0].val}}}}}")
        return body

    def _list(self, stops: tuple[str, ...]) -> tuple[list[n.Node], Action | None]:
        """Nodes up to one of the keywords in ``stops``, returned with the action that holds it."""
        out: list[n.Node] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, Text):
                out.append(n.TextNode(item.text, item.pos, item.line))
                continue
            toks, line = item.toks, item.line
            if not toks:
                raise TemplateError(f"template: :{line}: missing value for command")
            head = toks[0]
            kw = head.val if head.kind == "keyword" else None
            if kw in ("end", "else"):
                if kw == "end" and len(toks) > 1:
                    raise TemplateError(f"template: :{line}: unexpected {_quote_tok(toks[1])} in end")
                if kw not in stops:
                    if stops == ("end",):
                        raise TemplateError(f"template: :{line}: expected end; found {{{{{kw}}}}}")
                    raise TemplateError(f"template: :{line}: unexpected {{{{{kw}}}}}")
                return out, item
            if kw in ("if", "with", "range"):
                out.append(self._branch(kw, toks[1:], item))
            elif kw in ("define", "block"):
                out.extend(self._define(kw, toks, item))
            elif kw == "template":
                if len(toks) < 2 or toks[1].kind != "string":
                    what = _quote_tok(toks[1]) if len(toks) > 1 else "EOF"
                    raise TemplateError(f"template: :{line}: unexpected {what} in template clause")
                pipe = self._pipeline(toks[2:], line, "template") if len(toks) > 2 else None
                out.append(n.TemplateCall(toks[1].val, pipe, toks[1].pos, line))
            elif kw in ("break", "continue"):
                if not self.range_depth:
                    raise TemplateError(f"template: :{line}: {{{{{kw}}}}} outside {{{{range}}}}")
                if len(toks) > 1:
                    what = _quote_tok(toks[1])
                    raise TemplateError(f"template: :{line}: unexpected {what} in {{{{{kw}}}}}")
                out.append(n.LoopControl(kw, head.pos, line))
            else:
                pipe = self._pipeline(toks, line, "command")
                out.append(n.ActionNode(pipe, pipe.pos, line))
        return out, None

    def _define(self, kw: str, toks: list[Tok], item: Action) -> list[n.Node]:
        if len(toks) < 2 or toks[1].kind != "string":
            raise TemplateError(f"template: :{item.line}: {kw} requires a quoted name")
        name = toks[1].val
        pipe = self._pipeline(toks[2:], item.line, kw) if kw == "block" and len(toks) > 2 else None
        saved, self.vars = self.vars, ["$"]
        body, end = self._list(("end",))
        self.vars = saved
        if end is None:
            raise TemplateError(f"template: :{item.line}: unexpected EOF")
        self.defines[name] = body
        return [n.TemplateCall(name, pipe, toks[1].pos, item.line)] if kw == "block" else []

    def _branch(self, kw: str, toks: list[Tok], item: Action) -> n.Branch:
        mark = len(self.vars)
        pipe = self._pipeline(toks, item.line, kw)
        if kw == "range":
            self.range_depth += 1
        body, end = self._list(("end", "else"))
        if kw == "range":
            self.range_depth -= 1
        if end is None:
            raise TemplateError(f"template: :{item.line}: unexpected EOF")
        else_body: list[n.Node] = []
        if end.toks[0].val == "else":
            rest = end.toks[1:]
            if rest and rest[0].kind == "keyword" and rest[0].val == "if":
                # {{else if x}}: a nested if that ends at the shared {{end}}
                else_body = [self._branch("if", rest[1:], end)]
            elif rest:
                raise TemplateError(f"template: :{end.line}: unexpected {_quote_tok(rest[0])} in else")
            else:
                else_body, end2 = self._list(("end",))
                if end2 is None:
                    raise TemplateError(f"template: :{item.line}: unexpected EOF")
        del self.vars[mark:]
        return n.Branch(kw, pipe, body, else_body, item.pos, item.line)

    def _pipeline(self, toks: list[Tok], line: int, ctx: str) -> n.Pipeline:
        decl: list[str] = []
        assign = False
        pos0 = toks[0].pos if toks else 0
        # declarations: $x := ... | $x = ... | $i, $v := ... (two only in range)
        k, names = 0, []
        while k < len(toks) and toks[k].kind == "var" and not toks[k].val[1]:
            names.append(toks[k].val[0])
            if k + 1 < len(toks) and toks[k + 1].kind == "comma":
                if ctx != "range" or len(names) >= 2:
                    raise TemplateError(f"template: :{line}: too many declarations in {ctx}")
                k += 2
                continue
            k += 1
            break
        if names and k < len(toks) and toks[k].kind in ("declare", "assign"):
            decl, assign = names, toks[k].kind == "assign"
            toks = toks[k + 1 :]
        elif len(names) > 1:
            raise TemplateError(f"template: :{line}: range can only initialize variables")
        if not toks:
            raise TemplateError(f"template: :{line}: missing value for {ctx}")
        cmds: list[n.Command] = []
        args: list[n.Node] = []
        pos = 0
        while pos < len(toks):
            t = toks[pos]
            if t.kind == "pipe":
                if not args:
                    raise TemplateError(f'template: :{line}: unexpected "|" in command')
                cmds.append(n.Command(args, args[0].pos, line))
                args = []
                pos += 1
                continue
            node, pos = self._operand(toks, pos, line)
            args.append(node)
        if args:  # Go 1.19 accepts a trailing "|" with no command after it
            cmds.append(n.Command(args, args[0].pos, line))
        for i, c in enumerate(cmds[1:]):
            if isinstance(c.args[0], (n.Literal, n.Nil, n.Dot)):
                raise TemplateError(f"template: :{line}: non executable command in pipeline stage {i + 2}")
        if not assign:
            self.vars.extend(decl)
        return n.Pipeline(decl, assign, cmds, pos0, line)

    def _use_var(self, name: str, line: int) -> None:
        if name not in self.vars:
            raise TemplateError(f'template: :{line}: undefined variable "{name}"')

    def _operand(self, toks: list[Tok], pos: int, line: int) -> tuple[n.Node, int]:
        t = toks[pos]
        node: n.Node
        if t.kind == "(":
            depth, k = 1, pos + 1
            while k < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[k].kind, 0)
                k += 1
            if depth:
                raise TemplateError(f"template: :{line}: unclosed left paren")
            inner = self._pipeline(toks[pos + 1 : k - 1], line, "parenthesized pipeline")
            chain: list[str] = []
            while k < len(toks) and toks[k].kind == "field" and toks[k].val and _touches(toks, k):
                chain.extend(toks[k].val)
                k += 1
            return n.Paren(inner, chain, t.pos, line), k
        if t.kind == ")":
            raise TemplateError(f'template: :{line}: unexpected ")" in command')
        if t.kind in ("string", "number", "bool"):
            node = n.Literal(t.val, t.text, t.pos, line)
        elif t.kind == "nil":
            node = n.Nil(t.pos, line)
        elif t.kind == "field":
            # Go places a chain (.A.B) at its second link
            at = t.pos + 1 + len(t.val[0]) if len(t.val) > 1 else t.pos
            node = n.Field(t.val, at, line) if t.val else n.Dot(t.pos, line)
        elif t.kind == "var":
            self._use_var(t.val[0], line)
            at = t.pos + len(t.val[0]) if t.val[1] else t.pos
            node = n.Variable(t.val[0], t.val[1], at, line)
        elif t.kind == "ident":
            if t.val not in self.funcs:
                raise TemplateError(f'template: :{line}: function "{t.val}" not defined')
            node = n.Ident(t.val, t.pos, line)
        elif t.kind == "keyword":
            raise TemplateError(f"template: :{line}: unexpected <{t.val}> in command")
        else:
            raise TemplateError(f"template: :{line}: unexpected {_quote_tok(t)} in operand")
        return node, pos + 1


def _touches(toks: list[Tok], k: int) -> bool:
    """Whether token ``k`` follows the one before it with no space: ``(x).F`` chains, ``(x) .F`` does not."""
    return toks[k].pos == toks[k - 1].end


def _quote_tok(t: Tok) -> str:
    return f"<{t.text}>" if t.kind in ("keyword", "ident", "field", "var") else f'"{t.text}"'
