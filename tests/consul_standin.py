"""A stand-in Consul agent for pypilot's tests (no Consul server can be installed here).

This module owns the fake: a loopback-only HTTP(S) server that answers the subset of Consul's
HTTP API that pypilot sends through py-consul, with Consul's field names, JSON types, status
codes and error bodies (taken from Consul's API docs and its agent/http code), plus the
knobs tests need to simulate outages.

Served API (everything else under ``/v1/`` gets Consul's 404 "Invalid URL path"):

* ``PUT /v1/agent/service/register[?replace-existing-checks]`` -- body decoded like Consul's
  strict decoder (``lib.DecodeJSON``: Go's case-insensitive field matching, unknown fields and
  wrong JSON types are a 400 ``Request decode failed: json: ...``).  ``Check``/``Checks`` are
  CheckType objects: durations (``TTL``, ``Interval``, ``Timeout``,
  ``DeregisterCriticalServiceAfter``) are Go duration strings, or numbers of *nanoseconds*.
  A check's id field is ``CheckID``: ``ID`` inside a check is an unknown field.
* ``PUT /v1/agent/service/deregister/<id>``, ``PUT /v1/agent/service/maintenance/<id>?enable=``,
  ``PUT /v1/agent/maintenance?enable=`` (node), ``PUT /v1/agent/check/pass|warn|fail/<id>?note=``,
  ``PUT /v1/agent/check/update/<id>`` (body ``{"Status", "Output"}``), ``PUT
  /v1/agent/check/deregister/<id>``. Unknown ids are answered as Consul 1.0.1 (the release
  ContainerPilot 3.8 pinned, and the real agent of ``tests/real_consul.py``) does: deregistering an
  unknown service or check is a 200; a TTL update of an unknown check is a 500 ``CheckID "x" does
  not have associated TTL`` (what an agent restarted without its data answers); maintenance of an
  unknown service is a 404 ``No service registered with ID "x"``. ``tests/discovery/test_real_agent.py``
  replays the same requests against the real agent and compares.
* ``GET /v1/agent/services``, ``/v1/agent/checks``, ``/v1/agent/self``,
  ``/v1/agent/service/<id>``.
* ``GET /v1/health/service/<name>`` (``passing``, ``tag`` (all must match), ``dc``) and ``GET
  /v1/catalog/services``, ``/v1/catalog/service/<name>``: blocking queries with ``index`` and
  ``wait`` (default 5 min, capped at 10 min, plus up to wait/16 of jitter like Consul), headers
  ``X-Consul-Index`` (never 0), ``X-Consul-KnownLeader``, ``X-Consul-LastContact``.

Semantics kept from Consul: a TTL check not updated within its TTL goes critical with output
``TTL expired``; a check's initial status is ``critical`` unless ``Status`` says otherwise;
re-registering a service keeps the status of its existing checks; ``DeregisterCriticalServiceAfter``
removes the service once the check has been critical that long, but never sooner than
``deregister_min`` (Consul's ``check_deregister_interval_min``, 60 s); maintenance adds the
critical check ``_service_maintenance:<id>``; an output-only TTL update does not change the
health index (Consul defers those syncs).  The stand-in runs no HTTP/TCP/script checks: they keep
their initial status.  Time for TTLs and deregistration is virtual: ``advance()`` and
``set_time_speed()`` move it.

Test knobs (Python API on :class:`ConsulStandin`; over HTTP in process mode, see ``_standin``
paths below): ``go_down()``/``come_up()`` (listener closed, open connections reset, same port),
``fail_with(500)``, ``set_delay(seconds)``, ``set_garbage(True)``, ``lose_registrations()``,
``require_tokens({...})``, ``add_remote_service()`` (instances on other nodes or datacenters),
``advance()``/``set_time_speed()``, and the request log (``requests()``, ``wait_for_request()``).

Process mode: ``python tests/consul_standin.py --port N [--control-port M] [--tls-cert C
--tls-key K]`` prints ``READY address=127.0.0.1:N control=127.0.0.1:M`` and serves until SIGTERM.
Its knobs are under ``/_standin/`` on the API port and on the control port (which stays up while
the API port is "down"); :func:`start_process` and :class:`StandinControl` wrap both:

* ``GET /_standin/state`` (agent services, checks, index), ``GET /_standin/requests?since=N``
* ``POST /_standin/fail?status=500`` (``status=0`` clears), ``/_standin/delay?seconds=2``,
  ``/_standin/garbage?enable=1``, ``/_standin/lose_registrations?reset_index=0``,
  ``/_standin/down[?seconds=N]`` (come back after N s), ``/_standin/up``,
  ``/_standin/advance?seconds=60``, ``/_standin/speed?factor=10``,
  ``/_standin/tokens`` (body ``{"tokens": [...]}`` or ``{"tokens": null}``),
  ``/_standin/remote_service`` (body: keyword arguments of ``add_remote_service``),
  ``/_standin/clear_log``, ``/_standin/reset``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import decimal
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
_STATUSES = (PASSING, WARNING, CRITICAL)

DEFAULT_QUERY_TIME = 300.0  # Consul's default blocking wait
MAX_QUERY_TIME = 600.0  # Consul caps ?wait at 10 minutes
CHECK_BUF_SIZE = 4096  # Consul's default OutputMaxSize
DEFAULT_SERVICE_MAINT_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)
DEFAULT_NODE_MAINT_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
)
SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT_CHECK_ID = "_node_maintenance"
INVALID_PATH = "Invalid URL path: not a recognized HTTP API endpoint\n"


# ---------------------------------------------------------------------------------------------
# Go durations


class GoDurationError(ValueError):
    """A string Go's time.ParseDuration rejects; the message is Go's."""


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Parse a Go duration ("10s", "1m30s", "1.5h", "0") into seconds, like time.ParseDuration."""
    orig = text
    quoted = json.dumps(orig, ensure_ascii=False)
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise GoDurationError(f"time: invalid duration {quoted}")
    total = 0.0
    while text:
        number = re.match(r"\d*(\.\d*)?", text).group(0)  # type: ignore[union-attr]
        if number in ("", ".") or not any(c.isdigit() for c in number):
            raise GoDurationError(f"time: invalid duration {quoted}")
        text = text[len(number) :]
        unit = re.match(r"[^\d.]*", text).group(0)  # type: ignore[union-attr]
        if not unit:
            raise GoDurationError(f"time: missing unit in duration {quoted}")
        if unit not in _DURATION_UNITS:
            raise GoDurationError(
                f"time: unknown unit {json.dumps(unit, ensure_ascii=False)} in duration {quoted}"
            )
        total += float(number) * _DURATION_UNITS[unit]
        text = text[len(unit) :]
    return sign * total


def _frac(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_go_duration(seconds: float) -> str:
    """Format seconds like Go's time.Duration.String() ("10s", "1m30s", "1h0m0s", "500ms")."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_frac(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_frac(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _frac(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _go_parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(text)


# ---------------------------------------------------------------------------------------------
# Strict decoding of request bodies, shaped after Go's encoding/json with DisallowUnknownFields


class DecodeError(ValueError):
    """A body Consul's decoder rejects; the message is the one Go would give."""


STRING, INT, BOOL, ANY, DURATION, OBJECT = "string", "int", "bool", "any", "duration", "object"


@dataclasses.dataclass(frozen=True)
class _Struct:
    go_name: str
    fields: dict[str, Any]
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)  # json key -> field
    ignored: tuple[str, ...] = ()

    def lookup(self, key: str) -> tuple[str, Any] | None:
        """Go matches a key to a field exactly first, then case-insensitively."""
        candidates: list[tuple[str, str | None]] = [(k, k) for k in self.fields]
        candidates += list(self.aliases.items())
        candidates += [(k, None) for k in self.ignored]
        for name, target in candidates:
            if name == key:
                return self._resolve(target)
        for name, target in candidates:
            if name.casefold() == key.casefold():
                return self._resolve(target)
        return None

    def _resolve(self, target: str | None) -> tuple[str, Any]:
        if target is None:
            return ("", ANY)
        return (target, self.fields[target])


def _go_type(spec: Any) -> str:
    if isinstance(spec, _Struct):
        return spec.go_name
    if isinstance(spec, tuple):
        kind, elem = spec
        return f"[]{_go_type(elem)}" if kind == "list" else f"map[string]{_go_type(elem)}"
    return {OBJECT: "map[string]interface {}"}.get(spec, spec)


def _json_kind(value: Any, *, literal: bool = False) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | decimal.Decimal):
        return f"number {value}" if literal else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _decode(value: Any, spec: Any, struct: str, path: str) -> Any:
    """Check *value* against *spec*; return it with canonical field names (None = unset)."""

    def mismatch(literal: bool = False) -> DecodeError:
        where = f"Go struct field {struct}.{path}" if path else "Go value"
        return DecodeError(
            f"json: cannot unmarshal {_json_kind(value, literal=literal)} into {where} "
            f"of type {_go_type(spec)}"
        )

    if value is None:
        return None
    if spec == ANY:
        return _plain(value)
    if spec == DURATION:
        if isinstance(value, str):
            try:
                return parse_go_duration(value)
            except GoDurationError as err:
                raise DecodeError(str(err)) from None
        if isinstance(value, int | decimal.Decimal) and not isinstance(value, bool):
            return float(value) / 1e9  # a JSON number is nanoseconds
        return None  # Consul ignores other types: the duration stays zero
    if spec == STRING:
        if not isinstance(value, str):
            raise mismatch()
        return value
    if spec == BOOL:
        if not isinstance(value, bool):
            raise mismatch()
        return value
    if spec == INT:
        if isinstance(value, bool) or not isinstance(value, int | decimal.Decimal):
            raise mismatch()
        if isinstance(value, decimal.Decimal) or not -(2**63) <= value < 2**63:
            raise mismatch(literal=True)
        return value
    if spec == OBJECT:
        if not isinstance(value, dict):
            raise mismatch()
        return _plain(value)
    if isinstance(spec, tuple):
        kind, elem = spec
        if kind == "list":
            if not isinstance(value, list):
                raise mismatch()
            return [_decode(v, elem, struct, path) for v in value]
        if not isinstance(value, dict):
            raise mismatch()
        return {k: _decode(v, elem, struct, path) for k, v in value.items()}
    assert isinstance(spec, _Struct)
    if not isinstance(value, dict):
        raise mismatch()
    out: dict[str, Any] = {}
    for key, item in value.items():
        found = spec.lookup(key)
        if found is None:
            raise DecodeError(f"json: unknown field {json.dumps(key)}")
        field, field_spec = found
        decoded = _decode(item, field_spec, spec.go_name, f"{path}.{field}" if path else field)
        if field and decoded is not None:
            out[field] = decoded
    return out


def _plain(value: Any) -> Any:
    """Decimals (from parse_float) back to floats."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def decode_body(body: bytes, spec: _Struct) -> dict[str, Any]:
    """Decode a request body like Consul's decodeBody; raise DecodeError with Go's message."""
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise DecodeError("EOF")
    try:
        value, _end = json.JSONDecoder(parse_float=decimal.Decimal).raw_decode(text)  # trailing data ignored
    except json.JSONDecodeError as err:
        if err.pos >= len(text):
            raise DecodeError("unexpected EOF") from None
        raise DecodeError(f"invalid character {text[err.pos]!r} looking for beginning of value") from None
    if not isinstance(value, dict) and value is not None:
        raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type {spec.go_name}")
    return _decode(value or {}, spec, spec.go_name, "")


_CHECK_TYPE = _Struct(
    "structs.CheckType",
    {
        "CheckID": STRING,
        "Name": STRING,
        "Status": STRING,
        "Notes": STRING,
        "ScriptArgs": (("list", STRING)),
        "HTTP": STRING,
        "H2PING": STRING,
        "H2PingUseTLS": BOOL,
        "Header": ("map", ("list", STRING)),
        "Method": STRING,
        "Body": STRING,
        "DisableRedirects": BOOL,
        "TCP": STRING,
        "TCPUseTLS": BOOL,
        "UDP": STRING,
        "Interval": DURATION,
        "AliasNode": STRING,
        "AliasService": STRING,
        "DockerContainerID": STRING,
        "Shell": STRING,
        "GRPC": STRING,
        "GRPCUseTLS": BOOL,
        "OSService": STRING,
        "TLSServerName": STRING,
        "TLSSkipVerify": BOOL,
        "Timeout": DURATION,
        "TTL": DURATION,
        "SuccessBeforePassing": INT,
        "FailuresBeforeWarning": INT,
        "FailuresBeforeCritical": INT,
        "ProxyHTTP": STRING,
        "ProxyGRPC": STRING,
        "DeregisterCriticalServiceAfter": DURATION,
        "OutputMaxSize": INT,
    },
    aliases={
        "args": "ScriptArgs",
        "script_args": "ScriptArgs",
        "deregister_critical_service_after": "DeregisterCriticalServiceAfter",
        "docker_container_id": "DockerContainerID",
        "tls_server_name": "TLSServerName",
        "tls_skip_verify": "TLSSkipVerify",
        "grpc_use_tls": "GRPCUseTLS",
        "h2ping_use_tls": "H2PingUseTLS",
    },
    ignored=("ServiceID", "service_id"),
)

_SERVICE_ADDRESS = _Struct("structs.ServiceAddress", {"Address": STRING, "Port": INT})

_SERVICE_DEFINITION = _Struct(
    "structs.ServiceDefinition",
    {
        "Kind": STRING,
        "ID": STRING,
        "Name": STRING,
        "Tags": ("list", STRING),
        "Address": STRING,
        "TaggedAddresses": ("map", _SERVICE_ADDRESS),
        "Meta": ("map", STRING),
        "Port": INT,
        "SocketPath": STRING,
        "Check": _CHECK_TYPE,
        "Checks": ("list", _CHECK_TYPE),
        "Weights": _Struct("structs.Weights", {"Passing": INT, "Warning": INT}),
        "Token": STRING,
        "EnableTagOverride": BOOL,
        "Proxy": OBJECT,
        "Connect": OBJECT,
        "Locality": _Struct("structs.Locality", {"Region": STRING, "Zone": STRING}),
    },
    aliases={"enable_tag_override": "EnableTagOverride", "tagged_addresses": "TaggedAddresses"},
)

_CHECK_UPDATE = _Struct("agent.checkUpdate", {"Status": STRING, "Output": STRING})

_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


def _validate_meta(meta: dict[str, str]) -> str | None:
    """structs.ValidateServiceMetadata for a typical service."""
    if len(meta) > 64:
        return "Node metadata cannot contain more than 64 key/value pairs"
    for key, value in meta.items():
        if not key:
            return "Key cannot be blank"
        if not _META_KEY.match(key):
            return f"Key contains invalid characters: {key}"
        if len(key) > 128:
            return f"Key is too long (limit: 128 characters): {key}"
        if key.startswith("consul-"):
            return "Key prefix 'consul-' is reserved for internal use"
        if len(value) > 512:
            return f"Value is too long (limit: 512 characters): {value}"
    return None


def _check_type_error(chk: dict[str, Any]) -> str | None:
    """structs.CheckType.Validate."""
    interval = chk.get("Interval") or 0.0
    ttl = chk.get("TTL") or 0.0
    alias = bool(chk.get("AliasNode") or chk.get("AliasService"))
    interval_check = bool(
        chk.get("ScriptArgs")
        or chk.get("HTTP")
        or chk.get("TCP")
        or chk.get("UDP")
        or chk.get("GRPC")
        or chk.get("H2PING")
        or chk.get("OSService")
    )
    if interval > 0 and ttl > 0:
        return "Interval and TTL cannot both be specified"
    if interval_check and interval <= 0:
        return "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    if interval_check and alias:
        return "Interval cannot be set for Alias checks"
    if alias and ttl > 0:
        return "TTL must be not be set for Alias checks"
    if not interval_check and not alias and ttl <= 0:
        return "TTL must be > 0 for TTL checks"
    if (chk.get("OutputMaxSize") or 0) < 0:
        return "MaxOutputMaxSize must be positive"
    if (chk.get("FailuresBeforeWarning") or 0) > (chk.get("FailuresBeforeCritical") or 0):
        return "FailuresBeforeWarning can't be higher than FailuresBeforeCritical"
    return None


def _check_kind(chk: dict[str, Any]) -> str:
    interval = (chk.get("Interval") or 0) > 0
    if chk.get("GRPC") and interval:
        return "grpc"
    if chk.get("HTTP") and interval:
        return "http"
    if (chk.get("TTL") or 0) > 0:
        return "ttl"
    if chk.get("TCP") and interval:
        return "tcp"
    if chk.get("UDP") and interval:
        return "udp"
    if chk.get("AliasNode") or chk.get("AliasService"):
        return "alias"
    if chk.get("ScriptArgs") and chk.get("DockerContainerID") and interval:
        return "docker"
    if chk.get("ScriptArgs"):
        return "script"
    if chk.get("H2PING") and interval:
        return "h2ping"
    if chk.get("OSService") and interval:
        return "os_service"
    return ""


# ---------------------------------------------------------------------------------------------
# State


@dataclasses.dataclass
class _Service:
    id: str
    name: str
    tags: list[str]
    address: str
    port: int
    meta: dict[str, str]
    tagged_addresses: dict[str, dict[str, Any]]
    weights: dict[str, int]
    enable_tag_override: bool
    kind: str = ""
    socket_path: str = ""
    locality: dict[str, str] | None = None
    token: str = ""
    create_index: int = 0
    modify_index: int = 0

    def same_as(self, other: _Service) -> bool:
        mine = dataclasses.asdict(self) | {"create_index": 0, "modify_index": 0}
        theirs = dataclasses.asdict(other) | {"create_index": 0, "modify_index": 0}
        return mine == theirs

    def _extras(self) -> dict[str, Any]:
        """Fields Consul 1.0.1 does not have: shown only when a registration set them (a client
        that sends them talks to a later Consul; 1.0.1 would have ignored them)."""
        out: dict[str, Any] = {}
        if self.meta:
            out["Meta"] = dict(self.meta)
        if self.weights != {"Passing": 1, "Warning": 1}:
            out["Weights"] = dict(self.weights)
        if self.tagged_addresses:
            out["TaggedAddresses"] = dict(self.tagged_addresses)
        if self.socket_path:
            out["SocketPath"] = self.socket_path
        if self.locality:
            out["Locality"] = dict(self.locality)
        return out

    def node_service(self) -> dict[str, Any]:
        """structs.NodeService as Consul 1.0.1's health and catalog endpoints show it."""
        out: dict[str, Any] = {"Kind": self.kind} if self.kind else {}
        out.update(ID=self.id, Service=self.name, Tags=list(self.tags), Address=self.address, Port=self.port)
        out.update(EnableTagOverride=self.enable_tag_override, **self._extras())
        out.update(CreateIndex=self.create_index, ModifyIndex=self.modify_index)
        return out

    def agent_service(self, datacenter: str) -> dict[str, Any]:
        """api.AgentService as Consul 1.0.1's /v1/agent/services shows it (the same fields)."""
        return self.node_service()


@dataclasses.dataclass
class _Check:
    check_id: str
    name: str
    status: str
    notes: str
    output: str
    service_id: str
    service_name: str
    service_tags: list[str]
    type: str
    interval: str = ""
    timeout: str = ""
    ttl: float = 0.0
    deadline: float | None = None  # virtual time at which a TTL check lapses
    deregister_after: float = 0.0  # effective DeregisterCriticalServiceAfter, seconds
    critical_since: float | None = None
    output_max: int = CHECK_BUF_SIZE
    synced_output: str = ""  # what the catalog shows (Consul defers output-only syncs)
    create_index: int = 0
    modify_index: int = 0

    def health_check(self, node: str, *, agent_view: bool) -> dict[str, Any]:
        """structs.HealthCheck as Consul 1.0.1 shows it."""
        return {
            "Node": node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": self.notes,
            "Output": self.output if agent_view else self.synced_output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": [] if agent_view else list(self.service_tags),  # as 1.0.1's agent shows
            "Definition": {},
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclasses.dataclass
class _RemoteInstance:
    datacenter: str
    node: str
    node_address: str
    service: _Service
    status: str
    output: str


@dataclasses.dataclass
class RecordedRequest:
    """One request the stand-in answered (control paths are not recorded)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any
    token: str
    status: int
    response_body: str
    time: float

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["body"] = self.body.decode("utf-8", errors="replace")
        return out


class _HTTPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


_Response = tuple[int, dict[str, str], bytes]


# ---------------------------------------------------------------------------------------------
# The server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], standin: ConsulStandin, control_only: bool) -> None:
        self.standin = standin
        self.control_only = control_only
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.standin.ssl_context is not None and not self.control_only:
            sock = self.standin.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.sockets_lock:
            self.open_sockets.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def reset_connections(self) -> None:
        with self.sockets_lock:
            socks = list(self.open_sockets)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connections reset by go_down() or by clients are expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "ConsulStandin"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        status, headers, payload = self.server.standin._serve(self, body)
        if status < 0:
            self.close_connection = True
            return
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class ConsulStandin:
    """A fake Consul agent on 127.0.0.1 for tests; see the module docstring for what it serves."""

    def __init__(
        self,
        port: int = 0,
        *,
        datacenter: str = "dc1",
        node_name: str = "standin-node",
        datacenters: Iterable[str] = (),
        tls: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        tls_client_ca: str | os.PathLike[str] | None = None,
        deregister_min: float = 60.0,
        jitter: bool = True,
        control_port: int | None = None,
        enable_control_paths: bool = False,
    ) -> None:
        self.datacenter = datacenter
        self.node_name = node_name
        self.node_id = str(uuid.uuid4())
        self.node_address = "127.0.0.1"
        self.datacenters = {datacenter, *datacenters}
        self.deregister_min = deregister_min
        self.jitter = jitter
        self.enable_control_paths = enable_control_paths
        self.ssl_context: ssl.SSLContext | None = None
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            if tls_client_ca is not None:
                ctx.load_verify_locations(str(tls_client_ca))
                ctx.verify_mode = ssl.CERT_REQUIRED
            self.ssl_context = ctx
        self._requested_port = port
        self._control_port = control_port
        self.port = 0
        self.control_address: str | None = None

        self._cond = threading.Condition(threading.RLock())
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._control_server: _Server | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._generation = 0
        self._up_timer: threading.Timer | None = None
        self._reset_state()
        self._reset_knobs()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """ "127.0.0.1:PORT", as pypilot's `consul` config takes it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.address}"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def start(self) -> ConsulStandin:
        self._stopping.clear()
        self._bind(self._requested_port)
        if self._control_port is not None:
            self._control_server = _Server(("127.0.0.1", self._control_port), self, control_only=True)
            self.control_address = f"127.0.0.1:{self._control_server.server_address[1]}"
            threading.Thread(
                target=self._control_server.serve_forever, args=(0.05,), name="standin-control", daemon=True
            ).start()
        self._ticker = threading.Thread(target=self._tick_loop, name="standin-ticker", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._up_timer is not None:
            self._up_timer.cancel()
        self.go_down()
        if self._control_server is not None:
            self._control_server.shutdown()
            self._control_server.reset_connections()
            self._control_server.server_close()
            self._control_server = None
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None

    def __enter__(self) -> ConsulStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self, port: int) -> None:
        server = _Server(("127.0.0.1", port), self, control_only=False)
        self.port = server.server_address[1]
        self._requested_port = self.port  # come back on the same port
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="standin-http", daemon=True)
        thread.start()
        self._server, self._server_thread = server, thread

    # -- outage knobs --------------------------------------------------------------------------

    def go_down(self, for_seconds: float | None = None) -> None:
        """Close the listener and reset open connections (connection refused until come_up())."""
        server, self._server = self._server, None
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        if server is not None:
            server.shutdown()
            server.server_close()
            server.reset_connections()
        if for_seconds is not None:
            self._up_timer = threading.Timer(for_seconds, self.come_up)
            self._up_timer.daemon = True
            self._up_timer.start()

    def come_up(self) -> None:
        """Listen again on the same port; registrations survive (see lose_registrations())."""
        if self._server is None and not self._stopping.is_set():
            self._bind(self.port)

    def fail_with(
        self, status: int | None = 500, body: str = "rpc error making call: No cluster leader"
    ) -> None:
        """Answer every API call with *status* (None: back to normal)."""
        with self._cond:
            self._fail = (status, body) if status else None

    def set_delay(self, seconds: float) -> None:
        """Hold every API call *seconds* before answering it (0: no delay)."""
        with self._cond:
            self._delay = max(0.0, seconds)

    def set_garbage(self, enabled: bool = True, body: bytes = b'{"Node": {"ID": [1, 2,') -> None:
        """Answer every API call 200 with a body that is not JSON (X-Consul-Index still set)."""
        with self._cond:
            self._garbage = body if enabled else None

    def lose_registrations(self, *, reset_index: bool = False) -> None:
        """Forget every service and check, like an agent restarted without its data dir.

        With reset_index the index restarts low, as after a cluster rebuild: a client blocking
        with an old, higher index must reset it (Consul's docs require that)."""
        with self._cond:
            names = {s.name for s in self._services.values()}
            self._services.clear()
            self._checks.clear()
            if reset_index:
                self._index = 1
                self._name_index.clear()
                self._catalog_index.clear()
            for name in names:
                self._touch(self.datacenter, name, catalog=True)
            self._cond.notify_all()

    def require_tokens(self, tokens: Iterable[str] | None) -> None:
        """Enable ACLs with these valid tokens (None: ACLs off).

        Unknown token: 403 "ACL not found".  No token: writes and agent/self get 403
        "Permission denied: ..."; catalog and health reads come back empty (filtered)."""
        with self._cond:
            self._tokens = set(tokens) if tokens is not None else None

    # -- time knobs ----------------------------------------------------------------------------

    def now(self) -> float:
        """The stand-in's virtual clock (seconds) that drives TTLs and deregistration."""
        with self._cond:
            return self._virtual_base + (time.monotonic() - self._real_base) * self._speed

    def advance(self, seconds: float) -> None:
        """Move virtual time forward and apply TTL lapses and deregistrations at once."""
        with self._cond:
            self._virtual_base += seconds
            self._evaluate_timers()

    def set_time_speed(self, factor: float) -> None:
        """Run virtual time *factor* times faster than real time (1.0: real time)."""
        with self._cond:
            self._virtual_base = self.now()
            self._real_base = time.monotonic()
            self._speed = factor

    # -- remote instances ----------------------------------------------------------------------

    def add_remote_service(
        self,
        name: str,
        *,
        node: str = "other-node",
        address: str = "10.0.0.2",
        port: int = 0,
        tags: Iterable[str] = (),
        status: str = PASSING,
        service_id: str | None = None,
        datacenter: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        """Add (or replace) an instance of *name* on another node, or in another datacenter."""
        dc = datacenter or self.datacenter
        sid = service_id or name
        with self._cond:
            self.datacenters.add(dc)
            self._index += 1
            service = _Service(
                id=sid,
                name=name,
                tags=list(tags),
                address=address,
                port=port,
                meta=dict(meta or {}),
                tagged_addresses={},
                weights={"Passing": 1, "Warning": 1},
                enable_tag_override=False,
                create_index=self._index,
                modify_index=self._index,
            )
            self._remote[(dc, node, sid)] = _RemoteInstance(dc, node, address, service, status, "")
            self._touch(dc, name, catalog=True)

    def set_remote_status(self, name: str, status: str, *, node: str = "other-node", **kw: Any) -> None:
        dc = kw.get("datacenter") or self.datacenter
        sid = kw.get("service_id") or name
        with self._cond:
            self._remote[(dc, node, sid)].status = status
            self._touch(dc, name)

    def remove_remote_service(self, name: str, *, node: str = "other-node", **kw: Any) -> None:
        dc = kw.get("datacenter") or self.datacenter
        sid = kw.get("service_id") or name
        with self._cond:
            self._remote.pop((dc, node, sid), None)
            self._touch(dc, name, catalog=True)

    # -- inspection ----------------------------------------------------------------------------

    def services(self) -> dict[str, dict[str, Any]]:
        """What GET /v1/agent/services would answer."""
        with self._cond:
            return {sid: s.agent_service(self.datacenter) for sid, s in self._services.items()}

    def checks(self) -> dict[str, dict[str, Any]]:
        """What GET /v1/agent/checks would answer."""
        with self._cond:
            self._evaluate_timers()
            return {cid: c.health_check(self.node_name, agent_view=True) for cid, c in self._checks.items()}

    def check_status(self, check_id: str) -> str | None:
        with self._cond:
            self._evaluate_timers()
            chk = self._checks.get(check_id)
            return chk.status if chk else None

    def health(self, name: str, *, passing: bool = False, tags: Iterable[str] = ()) -> list[dict[str, Any]]:
        """What GET /v1/health/service/<name> would answer."""
        with self._cond:
            self._evaluate_timers()
            return self._health_entries(name, self.datacenter, list(tags), passing)

    @property
    def blocked_queries(self) -> int:
        """How many blocking queries are waiting for a change right now."""
        with self._cond:
            return self._blocked

    @property
    def index(self) -> int:
        with self._cond:
            return self._index

    def requests(
        self, method: str | None = None, path: str | None = None, prefix: str | None = None
    ) -> list[RecordedRequest]:
        """The request log, optionally filtered by method, exact path or path prefix."""
        with self._cond:
            log = list(self._log)
        return [
            r
            for r in log
            if (method is None or r.method == method)
            and (path is None or r.path == path)
            and (prefix is None or r.path.startswith(prefix))
        ]

    def clear_log(self) -> None:
        with self._cond:
            self._log.clear()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
        """Poll *predicate* until it returns something truthy; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    def wait_for_request(
        self,
        method: str | None = None,
        path: str | None = None,
        prefix: str | None = None,
        timeout: float = 5.0,
    ) -> RecordedRequest:
        found = self.wait_for(lambda: self.requests(method, path, prefix), timeout)
        return found[-1]

    def reset(self) -> None:
        """Back to a fresh agent: no registrations, no knobs, empty log."""
        with self._cond:
            self._reset_state()
            self._reset_knobs()
            self._cond.notify_all()

    # -- internals: state ----------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._services: dict[str, _Service] = {}
        self._checks: dict[str, _Check] = {}
        self._remote: dict[tuple[str, str, str], _RemoteInstance] = {}
        self._index = 10
        self._name_index: dict[tuple[str, str], int] = {}
        self._catalog_index: dict[str, int] = {}
        self._log: list[RecordedRequest] = []
        self._virtual_base = 0.0
        self._real_base = time.monotonic()
        self._speed = 1.0
        self._blocked = getattr(self, "_blocked", 0)

    def _reset_knobs(self) -> None:
        self._fail: tuple[int, str] | None = None
        self._delay = 0.0
        self._garbage: bytes | None = None
        self._tokens: set[str] | None = None

    def _touch(self, dc: str, name: str, *, catalog: bool = False) -> None:
        self._index += 1
        self._name_index[(dc, name.lower())] = self._index
        if catalog:
            self._catalog_index[dc] = self._index
        self._cond.notify_all()

    def _name_idx(self, dc: str, name: str) -> int:
        return self._name_index.get((dc, name.lower()), 1)

    def _tick_loop(self) -> None:
        while not self._stopping.wait(0.02):
            with self._cond:
                self._evaluate_timers()

    def _evaluate_timers(self) -> None:
        """TTL lapses, then DeregisterCriticalServiceAfter reaping (both on virtual time)."""
        now = self._virtual_base + (time.monotonic() - self._real_base) * self._speed
        for chk in list(self._checks.values()):
            if chk.deadline is not None and now >= chk.deadline:
                chk.deadline = None
                output = "TTL expired"
                if chk.output:
                    output = f"TTL expired (last output before timeout follows): {chk.output}"
                self._set_check(chk, CRITICAL, output, at=now)
        reap = {
            chk.service_id
            for chk in self._checks.values()
            if chk.deregister_after > 0
            and chk.status == CRITICAL
            and chk.critical_since is not None
            and now - chk.critical_since >= chk.deregister_after
            and chk.service_id in self._services
        }
        for sid in reap:
            self._remove_service(sid)

    def _set_check(self, chk: _Check, status: str, output: str, *, at: float | None = None) -> None:
        """Record a check result; *at* is given for a TTL lapse (which does not re-arm the TTL)."""
        now = self.now() if at is None else at
        if len(output) > chk.output_max:
            output = f"{output[: chk.output_max]} ... (captured {chk.output_max} of {len(output)} bytes)"
        chk.output = output
        if chk.ttl > 0:
            chk.deadline = None if at is not None else now + chk.ttl
        if status != chk.status:
            chk.status = status
            chk.synced_output = output
            chk.critical_since = now if status == CRITICAL else None
            if chk.service_id:
                self._touch(self.datacenter, chk.service_name)
            else:  # a node check changes every service on the node
                self._touch_all_local()
            chk.modify_index = self._index

    def _touch_all_local(self) -> None:
        for name in {s.name for s in self._services.values()}:
            self._touch(self.datacenter, name)

    def _remove_service(self, sid: str) -> None:
        service = self._services.pop(sid)
        for cid in [cid for cid, c in self._checks.items() if c.service_id == sid]:
            del self._checks[cid]
        self._touch(self.datacenter, service.name, catalog=True)

    def _node_checks(self) -> list[_Check]:
        serf = _Check(
            check_id="serfHealth",
            name="Serf Health Status",
            status=PASSING,
            notes="",
            output="Agent alive and reachable",
            service_id="",
            service_name="",
            service_tags=[],
            type="",
            synced_output="Agent alive and reachable",
            create_index=5,
            modify_index=5,
        )
        return [serf, *(c for c in self._checks.values() if not c.service_id)]

    def _node_json(self, node: str, address: str, dc: str) -> dict[str, Any]:
        return {
            "ID": self.node_id if node == self.node_name else str(uuid.uuid5(uuid.NAMESPACE_DNS, node)),
            "Node": node,
            "Address": address,
            "Datacenter": dc,
            "TaggedAddresses": {"lan": address, "wan": address},
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 5,
            "ModifyIndex": 5,
        }

    def _instances(
        self, name: str, dc: str, tags: list[str]
    ) -> list[tuple[str, str, _Service, list[_Check]]]:
        """(node, node address, service, checks) for every instance of *name* in *dc*."""
        out: list[tuple[str, str, _Service, list[_Check]]] = []
        wanted = [t.lower() for t in tags]

        def tagged(service: _Service) -> bool:
            have = {t.lower() for t in service.tags}
            return all(t in have for t in wanted)

        if dc == self.datacenter:
            node_checks = self._node_checks()
            for sid, service in sorted(self._services.items()):
                if service.name.lower() == name.lower() and tagged(service):
                    checks = node_checks + [c for c in self._checks.values() if c.service_id == sid]
                    out.append((self.node_name, self.node_address, service, checks))
        for (rdc, node, sid), inst in sorted(self._remote.items()):
            if rdc == dc and inst.service.name.lower() == name.lower() and tagged(inst.service):
                serf = self._node_checks()[0]
                svc_check = _Check(
                    check_id=f"service:{sid}",
                    name=f"Service '{inst.service.name}' check",
                    status=inst.status,
                    notes="",
                    output=inst.output,
                    service_id=sid,
                    service_name=inst.service.name,
                    service_tags=list(inst.service.tags),
                    type="ttl",
                    synced_output=inst.output,
                    create_index=inst.service.create_index,
                    modify_index=inst.service.modify_index,
                )
                out.append((node, inst.node_address, inst.service, [serf, svc_check]))
        return out

    def _health_entries(self, name: str, dc: str, tags: list[str], passing: bool) -> list[dict[str, Any]]:
        entries = []
        for node, address, service, checks in self._instances(name, dc, tags):
            if passing and any(c.status != PASSING for c in checks):
                continue
            entries.append(
                {
                    "Node": self._node_json(node, address, dc),
                    "Service": service.node_service(),
                    "Checks": [c.health_check(node, agent_view=False) for c in checks],
                }
            )
        return entries

    # -- internals: HTTP -----------------------------------------------------------------------

    def _serve(self, handler: _Handler, body: bytes) -> _Response:
        split = urllib.parse.urlsplit(handler.path)
        path = urllib.parse.unquote(split.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if handler.server.control_only or (path.startswith("/_standin/") and self.enable_control_paths):
            if not path.startswith("/_standin/"):
                return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"control port: /_standin/ only\n"
            return self._control(
                handler.command, path[len("/_standin/") :], query, body, handler.server.control_only
            )
        generation = self._generation
        token = _token_of(query, handler.headers)
        with self._cond:
            delay, fail, garbage = self._delay, self._fail, self._garbage
        if delay and (self._stopping.wait(delay) or generation != self._generation):
            return -1, {}, b""  # went down while "slow"
        if fail is not None:
            status, headers, payload = fail[0], _text_headers(), fail[1].encode()
        elif garbage is not None:
            status, headers = 200, {"Content-Type": "application/json", "X-Consul-Index": str(self._index)}
            payload = garbage
        else:
            try:
                status, headers, payload = self._route(handler.command, path, query, body, token, generation)
            except _HTTPError as err:
                status, headers, payload = err.status, _text_headers(), err.body.encode()
        headers.setdefault("X-Consul-Default-Acl-Policy", "deny" if self._tokens is not None else "allow")
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            method=handler.command,
            path=path,
            query=query,
            headers=dict(handler.headers.items()),
            body=body,
            json=parsed,
            token=token,
            status=status,
            response_body=payload[:2000].decode("utf-8", errors="replace"),
            time=time.time(),
        )
        with self._cond:
            self._log.append(record)
        if generation != self._generation:
            return -1, {}, b""
        return status, headers, payload

    _ROUTES: list[tuple[str, tuple[str, ...], str]] = [
        (r"/v1/agent/service/register", ("PUT",), "_register"),
        (r"/v1/agent/service/deregister/(?P<id>.*)", ("PUT",), "_deregister"),
        (r"/v1/agent/service/maintenance/(?P<id>.*)", ("PUT",), "_service_maintenance"),
        (r"/v1/agent/maintenance", ("PUT",), "_node_maintenance"),
        (r"/v1/agent/check/(?P<verb>pass|warn|fail)/(?P<id>.*)", ("PUT",), "_check_verb"),
        (r"/v1/agent/check/update/(?P<id>.*)", ("PUT",), "_check_update"),
        (r"/v1/agent/check/deregister/(?P<id>.*)", ("PUT",), "_check_deregister"),
        (r"/v1/agent/services", ("GET",), "_agent_services"),
        (r"/v1/agent/service/(?P<id>.+)", ("GET",), "_agent_service"),
        (r"/v1/agent/checks", ("GET",), "_agent_checks"),
        (r"/v1/agent/self", ("GET",), "_agent_self"),
        (r"/v1/health/service/(?P<name>.*)", ("GET",), "_health_service"),
        (r"/v1/catalog/services", ("GET",), "_catalog_services"),
        (r"/v1/catalog/service/(?P<name>.*)", ("GET",), "_catalog_service"),
    ]

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, token: str, generation: int
    ) -> _Response:
        for pattern, methods, handler_name in self._ROUTES:
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            if method == "OPTIONS":
                return 200, {"Allow": ",".join(("OPTIONS", *methods))}, b""
            if method not in methods:
                headers = _text_headers() | {"Allow": ",".join(("OPTIONS", *methods))}
                return 405, headers, f"method {method} not allowed".encode()
            handler = getattr(self, handler_name)
            return handler(query=query, body=body, token=token, generation=generation, **match.groupdict())
        return 404, _text_headers(), INVALID_PATH.encode()

    def _acl(self, token: str, *, write: bool, resource: str, name: str) -> None:
        if self._tokens is None:
            return
        if token and token not in self._tokens:
            raise _HTTPError(403, "ACL not found")
        if not token and write:
            raise _HTTPError(
                403,
                f"Permission denied: anonymous token lacks permission '{resource}:write' on "
                f"{json.dumps(name)}. "
                "The anonymous token is used implicitly when a request does not specify a token.",
            )

    def _acl_filtered(self, token: str) -> bool:
        """A read with no token sees nothing when ACLs are on (default deny)."""
        if self._tokens is None:
            return False
        if token and token not in self._tokens:
            raise _HTTPError(403, "ACL not found")
        return not token

    # -- agent write endpoints -----------------------------------------------------------------

    def _register(self, *, query: dict[str, list[str]], body: bytes, token: str, **_: Any) -> _Response:
        try:
            args = decode_body(body, _SERVICE_DEFINITION)
        except DecodeError as err:
            raise _HTTPError(400, f"Request decode failed: {err}") from None
        name = args.get("Name", "")
        if not name:
            raise _HTTPError(400, "Missing service name")
        if args.get("Address", "") in ("0.0.0.0", "::", "[::]"):
            raise _HTTPError(400, "Invalid service address")
        weights = args.get("Weights")
        if weights is not None:
            passing, warning = weights.get("Passing", 0), weights.get("Warning", 0)
            if passing < 1:
                raise _HTTPError(400, "Invalid Weights: Passing must be greater than 0")
            if warning < 0:
                raise _HTTPError(400, "Invalid Weights: Warning must be greater or equal than 0")
        meta_error = _validate_meta(args.get("Meta") or {})
        if meta_error:
            raise _HTTPError(400, f"Invalid Service Meta: {meta_error}")
        kind = args.get("Kind", "")
        if kind not in (
            "",
            "connect-proxy",
            "mesh-gateway",
            "terminating-gateway",
            "ingress-gateway",
            "api-gateway",
        ):
            raise _HTTPError(400, f"Validation failed: Invalid service kind: {kind!r}")
        check_defs: list[dict[str, Any]] = []
        single = args.get("Check")
        if single:  # CheckType.Empty() checks are skipped
            check_defs.append(single)
        check_defs += [c or {} for c in args.get("Checks") or []]
        for chk in check_defs:
            problem = _check_type_error(chk)
            if problem:
                raise _HTTPError(400, f"Invalid check: {problem}")
            if chk.get("Status", "") and chk["Status"] not in _STATUSES:
                raise _HTTPError(400, "Status for checks must 'passing', 'warning', 'critical'")
        self._acl(token, write=True, resource="service", name=name)

        sid = args.get("ID") or name
        replace = "replace-existing-checks" in query and query["replace-existing-checks"][0] in ("", "true")
        with self._cond:
            self._evaluate_timers()
            now = self.now()
            service = _Service(
                id=sid,
                name=name,
                tags=list(args.get("Tags") or []),
                address=args.get("Address", ""),
                port=args.get("Port", 0),
                meta=dict(args.get("Meta") or {}),
                tagged_addresses=dict(args.get("TaggedAddresses") or {}),
                weights={"Passing": 1, "Warning": 1} | (weights or {}),
                enable_tag_override=bool(args.get("EnableTagOverride", False)),
                kind=kind,
                socket_path=args.get("SocketPath", ""),
                locality=args.get("Locality"),
                token=args.get("Token", ""),
            )
            old = self._services.get(sid)
            changed = old is None or not old.same_as(service)
            if old is not None and old.name != name:
                self._touch(self.datacenter, old.name, catalog=True)
            if changed:
                self._index += 1
                service.create_index = old.create_index if old else self._index
                service.modify_index = self._index
                self._services[sid] = service
            else:
                assert old is not None
                service = old
            new_ids: set[str] = set()
            for i, chk in enumerate(check_defs):
                cid = chk.get("CheckID") or (
                    f"service:{sid}:{i + 1}" if len(check_defs) > 1 else f"service:{sid}"
                )
                new_ids.add(cid)
                prev = self._checks.get(cid)
                ttl = chk.get("TTL") or 0.0
                dcsa = chk.get("DeregisterCriticalServiceAfter") or 0.0
                status = chk.get("Status") or CRITICAL
                output = ""
                if prev is not None:  # Consul restores the state of a check it already had
                    status, output = prev.status, prev.output
                self._index += 1
                created = _Check(
                    check_id=cid,
                    name=chk.get("Name") or f"Service '{name}' check",
                    status=status,
                    notes=chk.get("Notes", ""),
                    output=output,
                    service_id=sid,
                    service_name=name,
                    service_tags=list(service.tags),
                    type=_check_kind(chk),
                    interval=format_go_duration(chk["Interval"]) if chk.get("Interval") else "",
                    timeout=format_go_duration(chk["Timeout"]) if chk.get("Timeout") else "",
                    ttl=ttl,
                    deadline=now + ttl if ttl > 0 else None,
                    deregister_after=max(dcsa, self.deregister_min) if dcsa > 0 else 0.0,
                    critical_since=(prev.critical_since if prev else now) if status == CRITICAL else None,
                    output_max=chk.get("OutputMaxSize") or CHECK_BUF_SIZE,
                    synced_output=prev.synced_output if prev else output,
                    create_index=prev.create_index if prev else self._index,
                    modify_index=self._index,
                )
                if prev is None or prev.status != status or prev.name != created.name or changed:
                    changed = True
                self._checks[cid] = created
            if replace:
                for cid in [
                    cid
                    for cid, c in self._checks.items()
                    if c.service_id == sid and cid not in new_ids and not cid.startswith(SERVICE_MAINT_PREFIX)
                ]:
                    del self._checks[cid]
                    changed = True
            if changed:
                self._touch(self.datacenter, name, catalog=True)
        return 200, {}, b""

    def _deregister(self, *, id: str, token: str, **_: Any) -> _Response:
        with self._cond:
            service = self._services.get(id)
            if service is None:  # Consul 1.0.1: nothing to remove is a success
                self._acl(token, write=True, resource="service", name=id)
                return 200, {}, b""
            self._acl(token, write=True, resource="service", name=service.name)
            self._remove_service(id)
        return 200, {}, b""

    def _service_maintenance(
        self, *, id: str, query: dict[str, list[str]], token: str, **_: Any
    ) -> _Response:
        if not id:
            raise _HTTPError(400, "Missing service ID")
        enable = _enable_param(query)
        with self._cond:
            service = self._services.get(id)
            if service is None:
                raise _HTTPError(404, f"No service registered with ID {json.dumps(id)}")
            self._acl(token, write=True, resource="service", name=service.name)
            cid = SERVICE_MAINT_PREFIX + id
            if enable and cid not in self._checks:
                self._index += 1
                self._checks[cid] = _Check(
                    check_id=cid,
                    name="Service Maintenance Mode",
                    status=CRITICAL,
                    notes=(query.get("reason") or [""])[0] or DEFAULT_SERVICE_MAINT_REASON,
                    output="",
                    service_id=id,
                    service_name=service.name,
                    service_tags=list(service.tags),
                    type="maintenance",
                    create_index=self._index,
                    modify_index=self._index,
                )
                self._touch(self.datacenter, service.name)
            elif not enable and cid in self._checks:
                del self._checks[cid]
                self._touch(self.datacenter, service.name)
        return 200, {}, b""

    def _node_maintenance(self, *, query: dict[str, list[str]], token: str, **_: Any) -> _Response:
        enable = _enable_param(query)
        self._acl(token, write=True, resource="node", name=self.node_name)
        with self._cond:
            if enable and NODE_MAINT_CHECK_ID not in self._checks:
                self._index += 1
                self._checks[NODE_MAINT_CHECK_ID] = _Check(
                    check_id=NODE_MAINT_CHECK_ID,
                    name="Node Maintenance Mode",
                    status=CRITICAL,
                    notes=(query.get("reason") or [""])[0] or DEFAULT_NODE_MAINT_REASON,
                    output="",
                    service_id="",
                    service_name="",
                    service_tags=[],
                    type="maintenance",
                    create_index=self._index,
                    modify_index=self._index,
                )
                self._touch_all_local()
            elif not enable and NODE_MAINT_CHECK_ID in self._checks:
                del self._checks[NODE_MAINT_CHECK_ID]
                self._touch_all_local()
        return 200, {}, b""

    def _update_ttl(self, check_id: str, status: str, output: str, token: str) -> _Response:
        with self._cond:
            self._evaluate_timers()
            chk = self._checks.get(check_id)
            if chk is None:  # Consul 1.0.1's answer (later versions: 404 Unknown check ID)
                raise _HTTPError(500, f"CheckID {json.dumps(check_id)} does not have associated TTL")
            self._acl(
                token, write=True, resource="service" if chk.service_id else "node", name=chk.service_name
            )
            if chk.ttl <= 0:
                raise _HTTPError(500, f"CheckID {json.dumps(check_id)} does not have associated TTL")
            self._set_check(chk, status, output)
        return 200, {}, b""

    def _check_verb(
        self, *, verb: str, id: str, query: dict[str, list[str]], token: str, **_: Any
    ) -> _Response:
        status = {"pass": PASSING, "warn": WARNING, "fail": CRITICAL}[verb]
        return self._update_ttl(id, status, (query.get("note") or [""])[0], token)

    def _check_update(self, *, id: str, body: bytes, token: str, **_: Any) -> _Response:
        try:
            update = decode_body(body, _CHECK_UPDATE)
        except DecodeError as err:
            raise _HTTPError(400, f"Request decode failed: {err}") from None
        status = update.get("Status", "")
        if status not in _STATUSES:
            raise _HTTPError(400, f"Invalid check status: '{status}'")
        return self._update_ttl(id, status, update.get("Output", ""), token)

    def _check_deregister(self, *, id: str, token: str, **_: Any) -> _Response:
        with self._cond:
            chk = self._checks.get(id)
            if chk is None:  # Consul 1.0.1: nothing to remove is a success
                return 200, {}, b""
            self._acl(
                token, write=True, resource="service" if chk.service_id else "node", name=chk.service_name
            )
            del self._checks[id]
            self._touch(self.datacenter, chk.service_name, catalog=True)
        return 200, {}, b""

    # -- agent read endpoints ------------------------------------------------------------------

    def _agent_services(self, *, query: dict[str, list[str]], token: str, **_: Any) -> _Response:
        _no_filter(query)
        with self._cond:
            out = {} if self._acl_filtered(token) else self.services()
        return _json_response(out)

    def _agent_service(self, *, id: str, token: str, **_: Any) -> _Response:
        with self._cond:
            self._acl_filtered(token)
            service = self._services.get(id)
            if service is None:
                raise _HTTPError(404, f"unknown service ID: {id}")
            out = service.agent_service(self.datacenter)
        out["ContentHash"] = format(abs(hash(json.dumps(out, sort_keys=True))), "x")[:16]
        return _json_response(out, {"X-Consul-Contenthash": out["ContentHash"]})

    def _agent_checks(self, *, query: dict[str, list[str]], token: str, **_: Any) -> _Response:
        _no_filter(query)
        with self._cond:
            out = {} if self._acl_filtered(token) else self.checks()
        return _json_response(out)

    def _agent_self(self, *, token: str, **_: Any) -> _Response:
        with self._cond:
            if self._acl_filtered(token):
                raise _HTTPError(
                    403,
                    f"Permission denied: anonymous token lacks permission 'agent:read' on "
                    f"{json.dumps(self.node_name)}. The anonymous token is used implicitly when a request "
                    "does not specify a token.",
                )
        config = {
            "Datacenter": self.datacenter,
            "PrimaryDatacenter": self.datacenter,
            "NodeName": self.node_name,
            "NodeID": self.node_id,
            "Revision": "standin",
            "Server": False,
            "Version": "1.17.0",
            "BuildDate": "2023-11-03T14:56:56Z",
        }
        member = {
            "Name": self.node_name,
            "Addr": self.node_address,
            "Port": 8301,
            "Tags": {"dc": self.datacenter, "id": self.node_id, "role": "node", "segment": "", "vsn": "2"},
            "Status": 1,
            "ProtocolMin": 1,
            "ProtocolMax": 5,
            "ProtocolCur": 2,
            "DelegateMin": 2,
            "DelegateMax": 5,
            "DelegateCur": 4,
        }
        out = {
            "Config": config,
            "DebugConfig": {"Datacenter": self.datacenter, "NodeName": self.node_name},
            "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
            "Member": member,
            "Stats": {
                "agent": {
                    "check_monitors": "0",
                    "check_ttls": str(len(self._checks)),
                    "services": str(len(self._services)),
                }
            },
            "Meta": {"consul-network-segment": ""},
        }
        return _json_response(out)

    # -- blocking read endpoints ---------------------------------------------------------------

    def _blocking(
        self,
        query: dict[str, list[str]],
        token: str,
        generation: int,
        index_of: Callable[[str], int],
        result_of: Callable[[str, bool], Any],
    ) -> _Response:
        wait_text = (query.get("wait") or [""])[0]
        wait = DEFAULT_QUERY_TIME
        if wait_text:
            try:
                wait = parse_go_duration(wait_text)
            except GoDurationError:
                return 400, _text_headers(), b"Invalid wait time"
        min_index = 0
        index_text = (query.get("index") or [""])[0]
        if index_text:
            if not index_text.isdigit() or int(index_text) >= 2**64:
                return 400, _text_headers(), b"Invalid index"
            min_index = int(index_text)
        if "stale" in query and "consistent" in query:
            return 400, _text_headers(), b"Cannot specify ?stale with ?consistent, conflicting semantics."
        dc = (query.get("dc") or [""])[0] or self.datacenter
        consistency = "stale" if "stale" in query else "consistent" if "consistent" in query else "leader"
        with self._cond:
            if dc not in self.datacenters:
                raise _HTTPError(500, "No path to datacenter")
            filtered = self._acl_filtered(token)
            if min_index > 0:
                wait = min(wait if wait > 0 else DEFAULT_QUERY_TIME, MAX_QUERY_TIME)
                if self.jitter:
                    wait += random.uniform(0, wait / 16)
                deadline = time.monotonic() + wait
                self._blocked += 1
                while (
                    index_of(dc) <= min_index
                    and generation == self._generation
                    and not self._stopping.is_set()
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._blocked -= 1
            self._evaluate_timers()
            index = max(1, index_of(dc))
            result = result_of(dc, filtered)
        headers = {
            "X-Consul-Index": str(index),
            "X-Consul-Knownleader": "true",
            "X-Consul-Lastcontact": "0",
            "X-Consul-Effective-Consistency": consistency,
        }
        if filtered:
            headers["X-Consul-Results-Filtered-By-Acls"] = "true"
        return _json_response(result, headers)

    def _health_service(
        self, *, name: str, query: dict[str, list[str]], token: str, generation: int, **_: Any
    ):
        _no_filter(query)
        if not name:
            raise _HTTPError(400, "Missing service name")
        passing = False
        if "passing" in query:
            try:
                passing = query["passing"][0] == "" or _go_parse_bool(query["passing"][0])
            except ValueError:
                raise _HTTPError(400, "Invalid value for ?passing") from None
        tags = query.get("tag", [])

        def result(dc: str, filtered: bool) -> Any:
            return [] if filtered else self._health_entries(name, dc, tags, passing)

        return self._blocking(query, token, generation, lambda dc: self._name_idx(dc, name), result)

    def _catalog_services(self, *, query: dict[str, list[str]], token: str, generation: int, **_: Any):
        _no_filter(query)

        def result(dc: str, filtered: bool) -> Any:
            out: dict[str, list[str]] = {}
            if filtered:
                return out
            services = list(self._services.values()) if dc == self.datacenter else []
            services += [i.service for i in self._remote.values() if i.datacenter == dc]
            for service in services:
                tags = out.setdefault(service.name, [])
                tags += [t for t in service.tags if t not in tags]
            return out

        return self._blocking(query, token, generation, lambda dc: self._catalog_index.get(dc, 1), result)

    def _catalog_service(
        self, *, name: str, query: dict[str, list[str]], token: str, generation: int, **_: Any
    ):
        _no_filter(query)
        if not name:
            raise _HTTPError(400, "Missing service name")
        tags = query.get("tag", [])

        def result(dc: str, filtered: bool) -> Any:
            if filtered:
                return []
            out = []
            for node, address, service, _checks in self._instances(name, dc, tags):
                node_json = self._node_json(node, address, dc)
                out.append(
                    {
                        "ID": node_json["ID"],
                        "Node": node,
                        "Address": address,
                        "Datacenter": dc,
                        "TaggedAddresses": node_json["TaggedAddresses"],
                        "NodeMeta": node_json["Meta"],
                        "ServiceKind": service.kind,
                        "ServiceID": service.id,
                        "ServiceName": service.name,
                        "ServiceTags": list(service.tags),
                        "ServiceAddress": service.address,
                        "ServiceTaggedAddresses": dict(service.tagged_addresses) or None,
                        "ServiceWeights": dict(service.weights),
                        "ServiceMeta": dict(service.meta),
                        "ServicePort": service.port,
                        "ServiceSocketPath": service.socket_path,
                        "ServiceEnableTagOverride": service.enable_tag_override,
                        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
                        "ServiceConnect": {},
                        "CreateIndex": service.create_index,
                        "ModifyIndex": service.modify_index,
                    }
                )
            return out

        return self._blocking(query, token, generation, lambda dc: self._name_idx(dc, name), result)

    # -- control API (process mode) ------------------------------------------------------------

    def _control(
        self, method: str, op: str, query: dict[str, list[str]], body: bytes, on_control_port: bool
    ) -> _Response:
        def arg(name: str, default: str = "") -> str:
            return (query.get(name) or [default])[0]

        payload: Any = json.loads(body) if body.strip() else {}
        result: Any = {"ok": True}
        if op == "state" and method == "GET":
            result = {
                "address": self.address,
                "up": self.is_up,
                "index": self.index,
                "services": self.services(),
                "checks": self.checks(),
                "virtual_time": self.now(),
            }
        elif op == "requests" and method == "GET":
            since = int(arg("since", "0"))
            result = [r.to_json() for r in self.requests()[since:]]
        elif method != "POST":
            return 405, _text_headers(), f"method {method} not allowed".encode()
        elif op == "fail":
            status = int(arg("status", "500"))
            self.fail_with(status or None, arg("body", "rpc error making call: No cluster leader"))
        elif op == "delay":
            self.set_delay(float(arg("seconds", "0")))
        elif op == "garbage":
            self.set_garbage(_go_parse_bool(arg("enable", "true")))
        elif op == "lose_registrations":
            self.lose_registrations(reset_index=_go_parse_bool(arg("reset_index", "false")))
        elif op == "down":
            seconds = float(arg("seconds")) if arg("seconds") else None
            if on_control_port:
                self.go_down(seconds)
            else:  # answer first: the answer travels on a connection that going down resets
                threading.Timer(0.05, self.go_down, args=(seconds,)).start()
        elif op == "up":
            self.come_up()
        elif op == "advance":
            self.advance(float(arg("seconds", "0")))
        elif op == "speed":
            self.set_time_speed(float(arg("factor", "1")))
        elif op == "tokens":
            tokens = payload.get("tokens")
            self.require_tokens(tokens)
        elif op == "remote_service":
            self.add_remote_service(**payload)
        elif op == "clear_log":
            self.clear_log()
        elif op == "reset":
            self.reset()
        else:
            return 404, _text_headers(), f"unknown stand-in control {op!r}".encode()
        return _json_response(result)


def _token_of(query: dict[str, list[str]], headers: Any) -> str:
    """The ACL token a request carries, with Consul's precedence: ?token, X-Consul-Token, Bearer."""
    if query.get("token", [""])[0]:
        return query["token"][0]
    if headers.get("X-Consul-Token"):
        return str(headers["X-Consul-Token"])
    auth = str(headers.get("Authorization") or "").split(" ")
    if len(auth) > 1 and auth[0] == "Bearer":
        return " ".join(auth[1:]).strip().split(" ")[0]
    return ""


def _enable_param(query: dict[str, list[str]]) -> bool:
    if "enable" not in query:
        raise _HTTPError(400, "Missing value for enable")
    raw = query["enable"][0]
    try:
        return _go_parse_bool(raw)
    except ValueError:
        raise _HTTPError(400, f"Invalid value for enable: {json.dumps(raw)}") from None


def _no_filter(query: dict[str, list[str]]) -> None:
    if query.get("filter", [""])[0]:
        raise _HTTPError(500, "consul stand-in: ?filter expressions are not implemented")


def _text_headers() -> dict[str, str]:
    return {"Content-Type": "text/plain; charset=utf-8"}


def _json_response(obj: Any, headers: dict[str, str] | None = None) -> _Response:
    return 200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


# ---------------------------------------------------------------------------------------------
# TLS helper


def make_self_signed_cert(
    directory: str | os.PathLike[str], hostname: str = "localhost"
) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and *hostname* into *directory*.

    Uses the `cryptography` package when it is installed, else the `openssl` command.  Returns
    (cert_path, key_path); the certificate is its own CA, so clients verify with cert_path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / "standin-cert.pem", out / "standin-key.pem"
    try:
        _cert_with_cryptography(cert_path, key_path, hostname)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError(
                "neither the cryptography package nor the openssl command is available"
            ) from None
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
                "-keyout", str(key_path), "-out", str(cert_path), "-subj", f"/CN={hostname}",
                "-addext", f"subjectAltName=DNS:{hostname},IP:127.0.0.1",
                "-addext", "basicConstraints=critical,CA:TRUE",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert_path, key_path


def _cert_with_cryptography(cert_path: Path, key_path: Path, hostname: str) -> None:
    import datetime
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found]
    from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found]
    from cryptography.hazmat.primitives.asymmetric import rsa  # type: ignore[import-not-found]
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found]

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# ---------------------------------------------------------------------------------------------
# Process mode


class StandinControl:
    """Drives a stand-in running as a separate process through its /_standin/ paths."""

    def __init__(self, control_address: str) -> None:
        self.base = f"http://{control_address}/_standin/"

    def _call(self, method: str, op: str, body: Any = None, **params: Any) -> Any:
        url = self.base + op + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", "requests", since=since)

    def fail_with(self, status: int | None = 500) -> None:
        self._call("POST", "fail", status=status or 0)

    def set_delay(self, seconds: float) -> None:
        self._call("POST", "delay", seconds=seconds)

    def set_garbage(self, enabled: bool = True) -> None:
        self._call("POST", "garbage", enable=str(enabled).lower())

    def lose_registrations(self, reset_index: bool = False) -> None:
        self._call("POST", "lose_registrations", reset_index=str(reset_index).lower())

    def go_down(self, for_seconds: float | None = None) -> None:
        self._call("POST", "down", **({"seconds": for_seconds} if for_seconds is not None else {}))

    def come_up(self) -> None:
        self._call("POST", "up")

    def advance(self, seconds: float) -> None:
        self._call("POST", "advance", seconds=seconds)

    def set_time_speed(self, factor: float) -> None:
        self._call("POST", "speed", factor=factor)

    def require_tokens(self, tokens: Iterable[str] | None) -> None:
        self._call("POST", "tokens", {"tokens": list(tokens) if tokens is not None else None})

    def add_remote_service(self, name: str, **kwargs: Any) -> None:
        self._call("POST", "remote_service", {"name": name, **kwargs})

    def clear_log(self) -> None:
        self._call("POST", "clear_log")

    def reset(self) -> None:
        self._call("POST", "reset")


@dataclasses.dataclass
class StandinProcess:
    """A stand-in started by start_process(); stop() ends it."""

    proc: subprocess.Popen[str]
    address: str
    control: StandinControl
    control_address: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_process(*args: str, timeout: float = 10.0) -> StandinProcess:
    """Run `python tests/consul_standin.py --port 0 --control-port 0 *args` and wait until it serves."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--port", "0", "--control-port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY") or not line:
            break
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"consul stand-in did not start: {line!r}")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return StandinProcess(proc, fields["address"], StandinControl(fields["control"]), fields["control"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-in Consul agent for pypilot tests (loopback only).")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--control-port", type=int, default=None, help="extra port serving only /_standin/")
    parser.add_argument("--datacenter", default="dc1")
    parser.add_argument("--node", default="standin-node")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-client-ca")
    parser.add_argument("--deregister-min", type=float, default=60.0)
    opts = parser.parse_args(argv)
    tls = (opts.tls_cert, opts.tls_key) if opts.tls_cert else None
    standin = ConsulStandin(
        opts.port,
        datacenter=opts.datacenter,
        node_name=opts.node,
        tls=tls,
        tls_client_ca=opts.tls_client_ca,
        deregister_min=opts.deregister_min,
        control_port=opts.control_port,
        enable_control_paths=True,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    standin.start()
    print(f"READY address={standin.address} control={standin.control_address or standin.address}", flush=True)
    done.wait()
    standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
