"""The one error the template engine raises."""


class TemplateError(Exception):
    """A template that cannot be parsed or executed; the message is Go-shaped and names the line."""
