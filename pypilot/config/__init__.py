"""Configuration: locate, render, parse and validate a ContainerPilot 3 config into ``model`` objects.

Public API::

    load(path, environ=None, *, addresses=None) -> Config     # raises ConfigError (CP's first message)
    validate_all(path, environ=None, *, addresses=None) -> list[str]   # every error, for -validate
    check(path, environ=None, *, addresses=None) -> (errors, warnings)  # what -validate prints
    read_control(path, environ=None) -> (control block, note)  # lenient: for the client commands
    render(path, environ=None) -> str                          # the template only, for -template
    env_name(command) / ip_env_name(job)                       # CONTAINERPILOT_<X>_PID / _IP names

Modules: ``loader`` (file, template, JSON5 and its error format), ``template`` (Go text/template subset),
``weak`` (mapstructure-style weak typing), ``decode`` (validation in CP's order), ``durations`` (Go duration
syntax), ``interfaces`` (interface specs), ``names``, ``errors``, ``model``. Heavy parts (the template engine,
pyjson5) are imported only when used, because PID 1 imports this package at start-up.

Consul TLS: ``tls.verify`` defaults to **true** in pypilot (ContainerPilot defaulted to false, so TLS was not
verified unless asked); an explicit ``verify: false`` or ``CONSUL_HTTP_SSL_VERIFY=0`` turns it off.
"""

from __future__ import annotations

from .errors import ConfigError
from .loader import check, load, read_control, render, validate_all
from .names import env_name, ip_env_name, ip_var, pid_var

__all__ = ["ConfigError", "check", "env_name", "ip_env_name", "ip_var", "load", "pid_var", "read_control",
           "render", "validate_all"]
