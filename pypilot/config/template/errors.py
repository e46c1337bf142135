"""The errors of the template engine: what it raises, and what a built-in function returns."""


class TemplateError(Exception):
    """A template that cannot be parsed or executed; the message is Go-shaped and names the line."""


class FuncError(Exception):
    """An error a function returned: Go reports it as ``error calling NAME: MESSAGE``."""
