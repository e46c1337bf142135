"""The template parser: lexer items to the tree of :mod:`.nodes`, with the parse-time checks Go makes
(undefined functions and variables, ``{{end}}`` pairing, ``break`` outside ``range``)."""

from __future__ import annotations

from pypilot import gofmt

from . import nodes as n
from .errors import TemplateError
from .lexer import Action, Lexer, Text, Tok, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Container


class Parser:
    def __init__(self, src: str, funcs: Container[str]) -> None:
        self.items = Lexer(src).run()
        self.eof_line = src.count("\n") + 1
        self.lookahead: Tok | None = None
        self.lookahead_line = 0
        self.i = 0
        self.funcs = funcs
        self.defines: dict[str, list[n.Node]] = {}
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    def parse(self) -> list[n.Node]:
        body, end = self._list(())
        if end is not None:
            raise TemplateError(f"template: :{end.toks[0].line}: unexpected {{{{{end.toks[0].val}}}}}")
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
                raise TemplateError(f"template: :{item.end_line}: missing value for command")
            head = toks[0]
            kw = head.val if head.kind == "keyword" else None
            if kw in ("end", "else"):
                if len(toks) > 1 and (kw == "end" or toks[1].val != "if"):
                    raise self._unexpected(toks[1], kw, line)
                if kw not in stops:
                    if stops == ("end",):
                        raise TemplateError(f"template: :{head.line}: expected end; found {{{{{kw}}}}}")
                    raise TemplateError(f"template: :{head.line}: unexpected {{{{{kw}}}}}")
                return out, item
            if kw in ("if", "with", "range"):
                out.append(self._branch(kw, toks[1:], item))
            elif kw == "define" and stops:  # Go reads {{define}} only at the top level
                raise self._unexpected(head, "command", line)
            elif kw in ("define", "block"):
                out.extend(self._define(kw, toks, item))
            elif kw == "template":
                if len(toks) < 2 or toks[1].kind != "string":
                    name_tok = toks[1] if len(toks) > 1 else self._close(item)
                    raise self._unexpected(name_tok, "template clause", line)
                pipe = self._pipeline(toks[2:], item, "template clause") if len(toks) > 2 else None
                out.append(n.TemplateCall(value(toks[1]), pipe, toks[1].pos, line))
            elif kw in ("break", "continue"):
                if len(toks) > 1:
                    raise self._unexpected(toks[1], f"{{{{{kw}}}}}", line)
                if not self.range_depth:
                    raise TemplateError(f"template: :{item.end_line}: {{{{{kw}}}}} outside {{{{range}}}}")
                out.append(n.LoopControl(kw, head.pos, line))
            else:
                pipe = self._pipeline(toks, item, "command")
                out.append(n.ActionNode(pipe, pipe.pos, line))
        return out, None

    def _define(self, kw: str, toks: list[Tok], item: Action) -> list[n.Node]:
        ctx = f"{kw} clause"
        if len(toks) < 2 or toks[1].kind != "string":
            raise self._unexpected(toks[1] if len(toks) > 1 else self._close(item), ctx, item.line)
        name = value(toks[1])
        if kw == "define" and len(toks) > 2:
            raise self._unexpected(toks[2], ctx, item.line)
        pipe = self._pipeline(toks[2:], item, ctx) if kw == "block" and len(toks) > 2 else None
        saved, self.vars = self.vars, ["$"]
        body, end = self._list(("end",))
        self.vars = saved
        if end is None:
            raise TemplateError(f"template: :{self.eof_line}: unexpected EOF")
        self.defines[name] = body
        return [n.TemplateCall(name, pipe, toks[1].pos, item.line)] if kw == "block" else []

    def _branch(self, kw: str, toks: list[Tok], item: Action) -> n.Branch:
        mark = len(self.vars)
        pipe = self._pipeline(toks, item, kw)
        if kw == "range":
            self.range_depth += 1
        body, end = self._list(("end", "else"))
        if kw == "range":
            self.range_depth -= 1
        if end is None:
            raise TemplateError(f"template: :{self.eof_line}: unexpected EOF")
        else_body: list[n.Node] = []
        if end.toks[0].val == "else":
            rest = end.toks[1:]
            if rest and rest[0].kind == "keyword" and rest[0].val == "if":
                # {{else if x}}: a nested if that ends at the shared {{end}}
                else_body = [self._branch("if", rest[1:], end)]
            elif rest:
                raise self._unexpected(rest[0], "else", end.line)
            else:
                else_body, end2 = self._list(("end",))
                if end2 is None:
                    raise TemplateError(f"template: :{self.eof_line}: unexpected EOF")
        del self.vars[mark:]
        return n.Branch(kw, pipe, body, else_body, item.pos, item.line)

    def _pipeline(self, toks: list[Tok], item: Action, ctx: str) -> n.Pipeline:
        """The pipeline that is an action's tokens (after its keyword), as Go's parser reads it."""
        line = item.line
        toks = [*toks, self._close(item)]
        depth = 0
        for i, t in enumerate(toks):  # the lexer's error: where the action closes with a paren open
            depth += {"(": 1, ")": -1}.get(t.kind, 0)
            if t.kind == "}}" and depth > 0:
                toks.insert(i, Tok("error", "unclosed left paren", "", t.pos, t.pos, t.line))
                break
        pipe, _ = self._pipe(toks, 0, line, ctx, "}}")
        return pipe

    def _pipe(self, toks: list[Tok], k: int, line: int, ctx: str, end: str) -> tuple[n.Pipeline, int]:
        """``[decl :=] command | command ...`` up to the ``end`` token; returns what follows it."""
        pos0 = toks[k].pos
        decl, assign, k = self._decls(toks, k, line, ctx)
        cmds: list[n.Command] = []
        while True:
            t = toks[k]
            if t.kind == end:
                k += 1
                end_line = t.line
                break
            if t.kind not in _TERMS:
                raise self._unexpected(t, ctx, line)
            cmd, k = self._command(toks, k, line)
            cmds.append(cmd)
        if not cmds:
            raise TemplateError(f"template: :{end_line}: missing value for {ctx}")
        for i, c in enumerate(cmds[1:]):
            if isinstance(c.args[0], (n.Literal, n.Nil, n.Dot)):
                msg = f"non executable command in pipeline stage {i + 2}"
                raise TemplateError(f"template: :{end_line}: {msg}")
        return n.Pipeline(decl, assign, cmds, pos0, line), k

    def _decls(self, toks: list[Tok], k: int, line: int, ctx: str) -> tuple[list[str], bool, int]:
        """``$x :=``, ``$x =`` or (in range) ``$i, $v :=``; Go knows the variable from here on."""
        decl: list[str] = []
        if toks[k].kind == "var":  # Go peeks past it for ":=": its errors name the peeked token's line
            self.lookahead, self.lookahead_line = toks[k], toks[k + 1].line
        while toks[k].kind == "var" and not toks[k].val[1]:
            nxt = toks[k + 1].kind
            if nxt in ("declare", "assign"):
                decl.append(toks[k].val[0])
                self.vars.append(toks[k].val[0])
                return decl, nxt == "assign", k + 2
            if nxt != "comma":
                break
            decl.append(toks[k].val[0])
            self.vars.append(toks[k].val[0])
            if ctx == "range" and len(decl) < 2:
                if toks[k + 2].kind in ("var", "}}", ")"):
                    k += 2
                    continue
                raise TemplateError(f"template: :{toks[k + 2].line}: range can only initialize variables")
            raise TemplateError(f"template: :{toks[k + 1].line}: too many declarations in {ctx}")
        return decl, False, k  # "$i, $v" with no ":=": Go keeps $i declared and $v as the command

    def _command(self, toks: list[Tok], k: int, line: int) -> tuple[n.Command, int]:
        args: list[n.Node] = []
        while True:
            node, k = self._term(toks, k, line)
            if node is not None:
                args.append(node)
            t = toks[k]
            if t.kind in ("}}", ")"):
                break
            if t.kind == "pipe":
                k += 1
                break
            if node is None or _touches(toks, k):  # a space parts operands; anything else is an error
                raise self._unexpected(t, "operand", line)
        if not args:
            raise TemplateError(f"template: :{toks[k].line}: empty command")
        return n.Command(args, args[0].pos, line), k

    def _term(self, toks: list[Tok], k: int, line: int) -> tuple[n.Node | None, int]:
        """One operand and the ``.field`` links that touch it (Go's operand), or None if none starts here."""
        t = toks[k]
        node: n.Node
        if t.kind == "(":
            inner, k = self._pipe(toks, k + 1, line, "parenthesized pipeline", ")")
            chain, k = _links(toks, k)
            return n.Paren(inner, chain, t.pos, line), k
        if t.kind in ("string", "number", "bool", "nil") or (t.kind == "field" and not t.val):
            node = (n.Nil(t.pos, line) if t.kind == "nil" else n.Dot(t.pos, line) if t.kind == "field"
                    else n.Literal(value(t), t.text, t.pos, line))
            if toks[k + 1].kind == "field" and toks[k + 1].val and _touches(toks, k + 1):
                raise TemplateError(f"template: :{t.line}: unexpected . after term {gofmt.quote(str(node))}")
            return node, k + 1
        if t.kind == "field":
            chain, k2 = _links(toks, k + 1)
            # Go places a chain (.A.B) at its second link
            return n.Field(t.val + chain, toks[k + 1].pos if chain else t.pos, line), k2
        if t.kind == "var":
            self._use_var(t.val[0], self.lookahead_line if t is self.lookahead else t.line)
            chain, k2 = _links(toks, k + 1)
            return n.Variable(t.val[0], chain, toks[k + 1].pos if chain else t.pos, line), k2
        if t.kind == "ident":
            if t.val not in self.funcs:
                raise TemplateError(f'template: :{t.line}: function "{t.val}" not defined')
            return n.Ident(t.val, t.pos, line), k + 1
        return None, k

    def _use_var(self, name: str, line: int) -> None:
        if name not in self.vars:
            raise TemplateError(f'template: :{line}: undefined variable "{name}"')

    @staticmethod
    def _unexpected(t: Tok, ctx: str, action_line: int) -> TemplateError:
        """Go's parser at a token it cannot take: the lexer's error where there was one, else what it
        found and where (each on the token's own line)."""
        if t.kind == "error":
            extra = ""
            if t.line != action_line:
                extra = f" in action started at :{action_line}"
                if t.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            return TemplateError(f"template: :{t.line}: {t.val}{extra}")
        return TemplateError(f"template: :{t.line}: unexpected {_quote_tok(t)} in {ctx}")

    @staticmethod
    def _close(item: Action) -> Tok:
        """The action's closing delimiter as a token: where a pipeline ends."""
        end = item.toks[-1].end if item.toks else item.pos + 2
        return Tok("}}", "}}", "}}", end, end + 2, item.end_line)


_TERMS = frozenset(("(", "string", "number", "bool", "nil", "field", "var", "ident"))


def _links(toks: list[Tok], k: int) -> tuple[list[str], int]:
    """The ``.field`` tokens from ``k`` on that touch each other: a chain's links."""
    chain: list[str] = []
    while toks[k].kind == "field" and toks[k].val and _touches(toks, k):
        chain.extend(toks[k].val)
        k += 1
    return chain, k


def _touches(toks: list[Tok], k: int) -> bool:
    """Whether token ``k`` follows the one before it with no space: ``(x).F`` chains, ``(x) .F`` does not."""
    return toks[k].pos == toks[k - 1].end


def _quote_tok(t: Tok) -> str:
    """A token as Go's parser names it: a keyword (nil and a lone dot are keywords to Go) in <>, anything
    else quoted, 10 bytes at most."""
    if t.kind in ("keyword", "nil") or t.text == ".":
        return f"<{t.text}>"
    return gofmt.sprintf("%.10q...", t.text) if len(t.text.encode()) > 10 else gofmt.quote(t.text)
