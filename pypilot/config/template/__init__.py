"""Go's ``text/template`` as ContainerPilot 3.8 rendered configs with it (Go 1.19, ``missingkey=zero``),
byte for byte: the engine is :mod:`.lexer` → :mod:`.parser` (a tree of :mod:`.nodes`) → :mod:`.executor`,
calling :mod:`.funcs` (Go's built-ins and CP's ``default env split join replaceAll regexReplaceAll loop``;
:mod:`.regex` is RE2, loaded only when a template calls ``regexReplaceAll``). Values print through
:mod:`pypilot.gofmt` and are pasted raw: Go escapes nothing for the JSON5 around them.

Not supported, with a clear ``TemplateError``: ``call`` (the data holds no function values).

Difference from ContainerPilot, on purpose: CP built the ``{{ .VAR }}`` map by splitting each ``K=V`` on every
``=`` and keeping only the second part, so ``FOO=a=b`` rendered ``a``. Here ``{{ .FOO }}`` is the full value
``a=b``, the same as ``{{ env "FOO" }}``.

Errors read like Go's: ``template: :LINE: message`` for syntax, ``template: :LINE:COL: executing "" at <node>:
message`` for execution.
"""

from __future__ import annotations

from collections.abc import Mapping

from pypilot.gofmt import go_float, sprint

from .errors import TemplateError
from .executor import Executor
from .funcs import table
from .parser import Parser

__all__ = ["TemplateError", "go_float", "go_value", "render"]


def go_value(v: object) -> str:
    """Go ``fmt.Sprint`` of one value as a template prints it (an absent value is ``<no value>``)."""
    return "<no value>" if v is None else sprint(v)


def render(text: str, environ: Mapping[str, str]) -> str:
    """Render ``text`` as a Go template over ``environ`` (``{{ .VAR }}`` = the full value; see above)."""
    if "{{" not in text:
        return text  # the common case costs nothing
    funcs = table(environ)
    try:
        parser = Parser(text, funcs)
        tree = parser.parse()
        ex = Executor(text, dict(environ), funcs, parser.defines)
        ex.walk(ex.vars[0][1], tree)
    except RecursionError:  # nesting deeper than Python's stack (Go's is larger): an error, never a crash
        raise TemplateError("template: : nested too deeply for pypilot's template engine") from None
    return "".join(ex.out)
