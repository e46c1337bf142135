"""Decode and validate a parsed config into the model (§2.4–§3.8, §5, §6.1, §7.1, §10.3 of the spec).

The order of the checks, and their wording, is ContainerPilot 3.8's, because users see the first error:
logging/stopTimeout decode → unknown top-level keys → consul → control → jobs (decode all, then each job in
order: health → discovery → when → stopTimeout → restarts → exec) → watches → telemetry → logging values.
(CP's spec summary puts consul first, but its code decodes logging and stopTimeout before it; the code wins.)

Every error goes through a ``Collector`` so ``validate_all`` reports them all with the same code path.

Differences from ContainerPilot, on purpose (all beyond-CP keys are listed in the model):
- a job ``consul`` block without ``deregisterCriticalServiceAfter`` is accepted (CP rejected it with
  ``time: invalid duration ``);
- two jobs with the same name, and two ``main`` jobs, are errors (CP ran both);
- ``control.socketMode`` given as a number is read as the octal it looks like (``600`` is ``0o600``);
- messages that keep CP's text get `` (in <place in the file>)`` after it where CP's text did not say where;
- ``-validate`` goes on past a block with a decode error, so every error shows at once.

Kept from CP on purpose, with a warning for ``-validate``: an exec of spaces only (``"   "``) or ``[""]`` is
one empty argument (accepted; every start fails with ``exec: no command``); a run of spaces in an exec
string gives empty arguments (``"a  b"`` is ``a``, ``""``, ``b``); keys in the wrong case are accepted; an
integer field given ``NaN`` or an infinity gets Go's ``int64()`` of it (the smallest int64), and
``restarts: Infinity`` means no restarts.
- consul ``tls.verify`` defaults to true (CP: false); an explicit ``false`` (or ``CONSUL_HTTP_SSL_VERIFY=0``)
  turns it off;
- logging level/format are checked here, with CP's messages, instead of when logging starts.
"""

from __future__ import annotations

import os

from . import model as m
from .durations import NS_PER_MS, NS_PER_S, DurationError, parse_cp_duration, parse_go_duration
from .errors import Collector
from .names import validate_name
from .weak import decode_list, decode_scalar, decode_struct, go_int, go_quote, weak_str
from .weak import go_v as _v

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from .weak import Spec

__all__ = ["decode_config", "parse_exec"]

EVENT_CODES = frozenset((
    "exitSuccess", "exitFailed", "stopping", "stopped", "healthy", "unhealthy", "changed", "timerExpired",
    "enterMaintenance", "exitMaintenance", "error", "quit", "startup", "shutdown", "SIGHUP", "SIGUSR2"))
SIGNAL_SOURCES = ("SIGHUP", "SIGUSR2")
TOP_KEYS = ("consul", "logging", "control", "stopTimeout", "jobs", "watches", "telemetry")

_LOGGING: Spec = [("Level", "str"), ("Format", "str"), ("Output", "str")]
_LOGRAW: Spec = [("raw", "bool")]
_HEALTH: Spec = [("exec", "any"), ("timeout", "str"), ("interval", "int"), ("ttl", "int"),
                 ("logging", _LOGRAW),
                 # beyond CP
                 ("http", "str"), ("tcp", "str"), ("successThreshold", "int"), ("failureThreshold", "int"),
                 ("initialDelay", "str")]
_WHEN: Spec = [("interval", "str"), ("source", "str"), ("once", "str"), ("each", "str"), ("timeout", "str"),
               ("all", "list")]
_JOB: Spec = [
    ("name", "str"), ("exec", "any"), ("port", "int"), ("initial_status", "str"), ("interfaces", "any"),
    ("tags", "strs"), ("consul", [("enableTagOverride", "bool"), ("deregisterCriticalServiceAfter", "str")]),
    ("health", _HEALTH), ("timeout", "str"), ("restarts", "any"), ("stopTimeout", "str"), ("when", _WHEN),
    ("logging", [*_LOGRAW, ("file", "any"), ("maxSize", "any"), ("keep", "any"), ("timestamps", "any")]),
    # beyond CP
    ("stopSignal", "any"), ("reloadSignal", "any"), ("backoff", "any"), ("main", "bool"),
    ("exitCodeMap", "any"),
    # beyond CP: how the process is started (config/process.py, its KEYS)
    ("user", "any"), ("group", "any"), ("workdir", "str"), ("umask", "any"), ("rlimits", "any"),
    ("noNewPrivileges", "bool"), ("ppidShim", "bool"),
    # beyond CP: readiness (jobs.py, readiness.py)
    ("ready", "any"), ("watchdog", "any"),
]
PROCESS_KEYS = ("user", "group", "workdir", "umask", "rlimits", "noNewPrivileges", "ppidShim")  # process.KEYS
_WATCH: Spec = [("name", "str"), ("interval", "int"), ("tag", "str"), ("dc", "str")]
_TELEMETRY: Spec = [("port", "int"), ("interfaces", "list"), ("tags", "strs"), ("metrics", "list")]
_METRIC: Spec = [("namespace", "str"), ("subsystem", "str"), ("name", "str"), ("help", "str"),
                 ("type", "str")]
_CONTROL: Spec = [("socket", "str"), ("socketMode", "any"), ("reload", "str"), ("reloadGrace", "str"),
                  ("allowUids", "any"), ("workerIdle", "str")]
_TLS: Spec = [("cafile", "str"), ("capath", "str"), ("clientcert", "str"), ("clientkey", "str"),
              ("servername", "str"), ("verify", "bool")]
_CONSUL: Spec = [("address", "str"), ("scheme", "str"), ("token", "str"), ("tls", _TLS)]

# Prometheus' own and ContainerPilot's built-in metric names cannot be registered twice
_BUILTIN_METRICS = frozenset(("containerpilot_events", "containerpilot_control_http_requests",
                              "containerpilot_watch_instances"))

if TYPE_CHECKING:
    Resolver = Callable[[list[str] | None], str]




def _secs(ns: int) -> float:
    return ns / NS_PER_S


# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.strip also strips \x1c-\x1f)
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
    "\u2028\u2029\u202f\u205f\u3000"


def parse_exec(raw: Any) -> tuple[str, ...]:
    """CP's exec parsing (§3.3): a string is trimmed (Go's TrimSpace) and split on each single space (no
    shell, no quotes: ``"a  b"`` is ``a``, ``""``, ``b``), a list is argv. Only an empty string or an empty
    list is an error; ``"   "`` is one empty argument, as in ContainerPilot (the start then fails)."""
    args: list[str] = []
    if isinstance(raw, str):
        if raw != "":
            args = raw.strip(_GO_SPACE).split(" ")
    elif isinstance(raw, list) and all(isinstance(e, str) for e in raw):
        args = list(raw)  # what to_strings gives, without its module (~0.6 M instructions of the start)
    else:
        from .interfaces import InterfaceError, to_strings

        try:
            args = to_strings(raw) or []
        except InterfaceError:
            args = []
    if not args:
        raise ValueError("received zero-length argument")
    return tuple(args)


def _exec_warnings(where: str, raw: Any, args: tuple[str, ...], errs: Collector) -> None:
    if args[0] == "":
        errs.warn(f"{where}: the program is empty, so every start fails with 'exec: no command' "
                  "(accepted, as ContainerPilot did)")
    elif isinstance(raw, str) and "" in args:
        n = args.count("")
        errs.warn(f"{where}: {go_quote(raw)} has {n} empty argument{'s' if n > 1 else ''}: the string is "
                  "split on each single space, as ContainerPilot did; use single spaces, or an array")


def _duration(value: str) -> int:
    return parse_cp_duration(value)


def _signal_num(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)) and raw == int(raw) and 0 < raw < 65:
        return int(raw)
    if isinstance(raw, str):
        if raw.isdigit():
            return _signal_num(int(raw))
        name = raw.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        # signal.Signals' names, read from the C module: its members are its SIG* names but SIG_*, and
        # signal.py would build that IntEnum (enum, functools: ~3 M instructions before the first spawn)
        import _signal

        sig = None if name.startswith("SIG_") else getattr(_signal, name, None)
        return sig if isinstance(sig, int) else None
    return None


# --------------------------------------------------------------------------------------------------


def _consul(raw: Any, env: Mapping[str, str], errs: Collector) -> m.ConsulConfig | None:
    tls: dict[str, Any] = {}
    if isinstance(raw, str):
        address, scheme, token = raw, "http", ""
        if raw.startswith("http://"):
            address = raw[len("http://"):]
        elif raw.startswith("https://"):
            address, scheme = raw[len("https://"):], "https"
    elif isinstance(raw, dict):
        d, err = decode_struct(raw, _CONSUL, where="consul", warnings=errs.warnings)
        if err:
            errs.add(err)  # and go on, so that -validate sees the rest
        d = d or {}
        address, scheme, token = d.get("address", ""), d.get("scheme", ""), d.get("token", "")
        tls = d.get("tls") or {}
    else:
        errs.add("no discovery backend defined")
        return None
    for key, var in (("cafile", "CONSUL_CACERT"), ("capath", "CONSUL_CAPATH"),
                     ("clientcert", "CONSUL_CLIENT_CERT"),
                     ("clientkey", "CONSUL_CLIENT_KEY"), ("servername", "CONSUL_TLS_SERVER_NAME")):
        if env.get(var):
            tls[key] = env[var]
    verify = tls.get("verify", True)
    ssl_verify = env.get("CONSUL_HTTP_SSL_VERIFY", "").lower()
    if ssl_verify in ("1", "true"):
        verify = True
    elif ssl_verify in ("0", "false"):
        verify = False
    if env.get("CONSUL_HTTP_TOKEN"):
        token = env["CONSUL_HTTP_TOKEN"]
    # the Consul client's own defaults for what the config leaves empty
    if not address:
        address = env.get("CONSUL_HTTP_ADDR") or "127.0.0.1:8500"
    if not scheme:
        scheme = "https" if env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "t", "true") else "http"
    if "://" in address:
        proto, _, rest = address.partition("://")
        if proto == "https":
            scheme = "https"
        elif proto not in ("http", "unix"):
            errs.add(f"Unknown protocol scheme: {proto} (in consul)")
            return None
        address = rest if proto != "unix" else address
    return m.ConsulConfig(
        address=address, scheme=scheme, token=token or None,
        tls=m.TLSConfig(cafile=tls.get("cafile") or None, capath=tls.get("capath") or None,
                        clientcert=tls.get("clientcert") or None, clientkey=tls.get("clientkey") or None,
                        servername=tls.get("servername") or None, verify=bool(verify)))


def _control(raw: Any, errs: Collector) -> m.ControlConfig:
    if raw is None:
        return m.ControlConfig()
    d, err = decode_struct(raw, _CONTROL, where="control", warnings=errs.warnings)
    if err:
        errs.add(f"unable to parse control: control config parsing error: {err}")
    if d is None:
        return m.ControlConfig()
    kw: dict[str, Any] = {}
    if d.get("socket"):
        kw["socket"] = d["socket"]
    mode = d.get("socketMode")
    if mode is not None:
        val: int | None = None
        if isinstance(mode, int) and not isinstance(mode, bool):
            # a number is what chmod would read: 600 means 0o600 (JSON has no octal literals); one with
            # an 8 or a 9 in it is refused rather than guessed at
            digits = str(mode)
            if mode >= 0 and all(c in "01234567" for c in digits):
                val = int(digits, 8)
        elif isinstance(mode, str):
            try:
                val = int(mode, 8)
            except ValueError:
                val = None
        if val is None or not 0 <= val <= 0o777:
            hint = (" (a number is read as octal digits, as chmod reads them)"
                    if isinstance(mode, (int, float)) and not isinstance(mode, bool) else "")
            errs.add(f"unable to parse control: control.socketMode '{_v(mode)}' invalid: "
                     f"must be an octal mode such as \"0600\"{hint}")
        else:
            kw["socket_mode"] = val
    if "reload" in d:
        if d["reload"] not in ("diff", "restart"):
            errs.add(f"unable to parse control: control.reload '{d['reload']}' invalid: "
                     "must be 'diff' or 'restart'")
        else:
            kw["reload"] = d["reload"]
    if d.get("reloadGrace"):
        try:
            kw["reload_grace"] = _secs(_duration(d["reloadGrace"]))
        except DurationError as e:
            errs.add(f"unable to parse control: control.reloadGrace '{d['reloadGrace']}': {e}")
    if d.get("workerIdle") not in (None, ""):
        try:
            kw["worker_idle"] = _secs(_duration(d["workerIdle"]))
        except DurationError as e:
            errs.add(f"unable to parse control: control.workerIdle '{d['workerIdle']}': {e}")
        else:
            if kw["worker_idle"] < 0:
                errs.add(f"unable to parse control: control.workerIdle '{d['workerIdle']}' invalid: "
                         "must be 0 (the worker stays) or more")
    uids = d.get("allowUids")
    if uids is not None:
        if isinstance(uids, list) and all(isinstance(u, int) and not isinstance(u, bool) and u >= 0
                                          for u in uids):
            kw["allow_uids"] = tuple(uids)
        else:
            errs.add(f"unable to parse control: control.allowUids '{_v(uids)}' invalid: "
                     "must be a list of numeric uids such as [0, 1000]")
    return m.ControlConfig(**kw)


def _health(name: str, h: dict[str, Any], errs: Collector) -> m.HealthConfig:
    interval = h.get("interval", 0)
    ttl = h.get("ttl", 0)
    if interval < 1:
        errs.add(f"job[{name}].health.interval must be > 0")
    if ttl < 1:
        errs.add(f"job[{name}].health.ttl must be > 0")
    timeout = float(interval)
    if h.get("timeout", "") != "":
        try:
            timeout = _secs(_duration(h["timeout"]))
        except DurationError as e:
            errs.add(f"could not parse job[{name}].health.timeout '{h['timeout']}': {e}")
    exe = None
    if "exec" in h:
        try:
            exe = parse_exec(h["exec"])
            _exec_warnings(f"job[{name}].health.exec", h["exec"], exe, errs)
        except ValueError as e:
            errs.add(f"unable to create job[{name}].health.exec: {e}")
    kw: dict[str, Any] = {}
    probes = [k for k in ("exec", "http", "tcp") if h.get(k) not in (None, "")]
    if len(probes) > 1:
        errs.add(f"job[{name}].health can have only one of 'exec', 'http', or 'tcp'")
    if h.get("http"):
        url = h["http"]
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or rest[0] in "/:?#":
            errs.add(f"job[{name}].health.http '{url}' invalid: must be an http:// or https:// URL")
        kw["http"] = url
    if h.get("tcp"):
        addr = h["tcp"]
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            errs.add(f"job[{name}].health.tcp '{addr}' invalid: must be host:port")
        kw["tcp"] = addr
    for key, field in (("successThreshold", "success_threshold"), ("failureThreshold", "failure_threshold")):
        if key in h:
            if h[key] < 1:
                errs.add(f"job[{name}].health.{key} must be > 0")
            else:
                kw[field] = h[key]
    if h.get("initialDelay"):
        try:
            kw["initial_delay"] = _secs(_duration(h["initialDelay"]))
        except DurationError as e:
            errs.add(f"unable to parse job[{name}].health.initialDelay '{h['initialDelay']}': {e}")
    return m.HealthConfig(exec=exe, interval=float(interval), ttl=ttl, timeout=timeout,
                          raw_logging=bool((h.get("logging") or {}).get("raw", False)), **kw)


def _when(name: str, w: dict[str, Any] | None, errs: Collector) -> m.WhenConfig:
    if w is None:
        return m.WhenConfig()
    interval, once, each = w.get("interval", ""), w.get("once", ""), w.get("each", "")
    if sum(1 for x in (interval, once, each) if x) > 1:
        errs.add(f"job[{name}].when can have only one of 'interval', 'once', or 'each'")
        return m.WhenConfig()
    if w.get("all") and (interval or once or each):
        errs.add(f"job[{name}].when.all cannot be used with 'interval', 'once', or 'each'")
        return m.WhenConfig()
    if interval:
        try:
            ns = _duration(interval)
        except DurationError as e:
            errs.add(f"unable to parse job[{name}].when.interval '{interval}': {e}")
            return m.WhenConfig()
        if ns < NS_PER_MS:
            errs.add(f"job[{name}].when.interval '{interval}' cannot be less than 1ms")
            return m.WhenConfig()
        return m.WhenConfig(interval=_secs(ns))  # CP ignores source and timeout here
    timeout = None
    if w.get("timeout"):
        try:
            timeout = _secs(_duration(w["timeout"]))
        except DurationError as e:
            errs.add(f"unable to parse job[{name}].when.timeout: {e}")
    code = once or each
    if code and code not in EVENT_CODES:
        errs.add(f"unable to parse job[{name}].when.event: {code} is not a valid event code")
    triggers = []
    for i, t in enumerate(w.get("all") or []):
        if not isinstance(t, dict) or set(t) - {"source", "once"}:
            errs.add(f"job[{name}].when.all[{i}] must be an object {{source, once}}")
            continue
        src, ev = weak_str(t.get("source")), weak_str(t.get("once"))
        if not src:
            errs.add(f"job[{name}].when.all[{i}].source must not be blank")
        elif not ev or ev not in EVENT_CODES:
            errs.add(f"unable to parse job[{name}].when.all[{i}].once: {ev or ''} is not a valid event code")
        else:
            triggers.append(m.Trigger(source=src, event=ev))
    # source "" (from `when: {}`) is kept as "" rather than None: in CP such a job never starts
    return m.WhenConfig(source=w.get("source", ""), once=once or None, each=each or None, timeout=timeout,
                        all=tuple(triggers))


def _restarts(name: str, raw: Any, when: m.WhenConfig, each: str, errs: Collector) -> int:
    if raw is None:
        return m.UNLIMITED if when.interval else 0
    # a function, not a string: printing the value loads the template engine (~2 ms of every start)
    def msg() -> str:
        return f"job[{name}].restarts field '{_v(raw)}' invalid: "

    if isinstance(raw, str):
        if raw == "unlimited":
            if each:
                errs.add(msg() + "may not be used when 'job.when.each' is set because it may result in "
                         "infinite processes")
                return 0
            return m.UNLIMITED
        if raw == "never":
            return 0
        body = raw[1:] if raw[:1] in "+-" else raw
        if body.isascii() and body.isdigit() and int(raw) >= 0:
            return int(raw)
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if raw >= 0:  # NaN is not
            n = go_int(float(raw)) if isinstance(raw, float) or raw >= 1 << 63 else raw
            if n < 0:  # Go's int64(+Inf) is the smallest int64: CP then never restarted the job
                errs.warn(f"job[{name}].restarts {_v(raw)} means no restarts, as in ContainerPilot: "
                          "for restarts without limit write \"unlimited\"")
                return 0
            return n  # CP truncates 1.9 to 1
        errs.add(msg() + "number must be positive integer")
        return 0
    errs.add(msg() + 'accepts positive integers, "unlimited", or "never"')
    return 0


def _backoff(name: str, raw: Any, errs: Collector, loc: str = "") -> m.Backoff | None:
    if raw is None or raw is True:
        return m.Backoff()
    if raw is False:
        return None
    if not isinstance(raw, dict):
        errs.add(f"job[{name}].backoff must be false or an object {{initial, factor, max, resetAfter}}")
        return m.Backoff()
    spec: Spec = [("initial", "str"), ("factor", "float"), ("max", "str"), ("resetAfter", "str")]
    d, err = decode_struct(raw, spec, f"[{name}].backoff", where=f"{loc}.backoff" if loc else "",
                           warnings=errs.warnings)
    if err:
        errs.add(f"job[{name}].backoff: {err}")
    d = d or {}
    kw: dict[str, Any] = {}
    for key, field in (("initial", "initial"), ("max", "max"), ("resetAfter", "reset_after")):
        if key in d:
            try:
                kw[field] = _secs(_duration(d[key]))
            except DurationError as e:
                errs.add(f"unable to parse job[{name}].backoff.{key} '{d[key]}': {e}")
    if "factor" in d:
        if not d["factor"] >= 1:
            errs.add(f"job[{name}].backoff.factor must be >= 1")
        else:
            kw["factor"] = d["factor"]
    return m.Backoff(**kw)


def _exit_code_map(name: str, raw: Any, errs: Collector) -> tuple[tuple[int, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        errs.add(f"job[{name}].exitCodeMap must be an object such as {{\"143\": 0}}")
        return ()
    pairs = []
    for k, v in raw.items():
        ok_k = isinstance(k, str) and k.isdigit() and int(k) < 256
        ok_v = isinstance(v, (int, float)) and not isinstance(v, bool) and v == int(v) and 0 <= v < 256
        if not ok_k or not ok_v:
            errs.add(f"job[{name}].exitCodeMap '{k}': {_v(v)} invalid: exit codes must be 0-255")
            continue
        pairs.append((int(k), int(v)))
    return tuple(pairs)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "k": 1 << 10, "mb": 1 << 20, "mib": 1 << 20,
               "m": 1 << 20, "gb": 1 << 30, "gib": 1 << 30, "g": 1 << 30}


def parse_size(raw: Any) -> int | None:
    """A size in bytes: a whole number, or ``"10MB"``/``"512KiB"``/``"1.5GB"`` (KB = 1024, as in
    supervisord); None if it is not one."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if raw >= 0 else None
    if not isinstance(raw, str):
        return None
    text = raw.strip().lower()
    num = text.rstrip("bkimg")
    unit = text[len(num):]
    try:
        value = float(num.strip())
    except ValueError:
        return None
    if unit not in _SIZE_UNITS or not value >= 0 or value == float("inf"):
        return None
    return int(value * _SIZE_UNITS[unit])


def _job_log(name: str, raw: dict[str, Any] | None, errs: Collector) -> m.JobLogConfig | None:
    """Beyond CP: ``logging: {file, maxSize, keep, timestamps}``, the job's lines to its own file."""
    if not raw or not any(k in raw for k in ("file", "maxSize", "keep", "timestamps")):
        return None
    where = f"job[{name}].logging"
    path = raw.get("file")
    if not isinstance(path, str) or not path.strip():
        errs.add(f"{where}.file must be set to a file path when maxSize, keep or timestamps are "
                 f"(got {_v(path) if 'file' in raw else 'nothing'})")
        return None
    if not os.path.isabs(path):
        errs.add(f"{where}.file '{path}' must be an absolute path")
        return None
    if raw.get("raw"):
        errs.add(f"{where}.file cannot be used with {where}.raw: raw output is not read by pypilot")
        return None
    kw: dict[str, Any] = {}
    if "maxSize" in raw:
        size = parse_size(raw["maxSize"])
        if size is None:
            errs.add(f"{where}.maxSize '{_v(raw['maxSize'])}' invalid: a size such as \"10MB\", "
                     "\"512KB\" or a number of bytes (0: never rotate)")
        else:
            kw["max_size"] = size
    if "keep" in raw:
        keep = raw["keep"]
        whole = isinstance(keep, (int, float)) and not isinstance(keep, bool) and keep == int(keep)
        if not whole or not 0 <= keep <= 1000:
            errs.add(f"{where}.keep '{_v(keep)}' invalid: the number of rotated files to keep, 0-1000")
        else:
            kw["keep"] = int(keep)
    if "timestamps" in raw:
        if not isinstance(raw["timestamps"], bool):
            errs.add(f"{where}.timestamps '{_v(raw['timestamps'])}' invalid: true or false")
        else:
            kw["timestamps"] = raw["timestamps"]
    return m.JobLogConfig(file=path, **kw)


def _ready(name: str, d: dict[str, Any], errs: Collector) -> m.ReadyConfig | None:
    """Beyond CP: ``ready: "notify"`` (sd_notify) or ``ready: {fd: N}`` (s6), and ``watchdog``."""
    raw, dog = d.get("ready"), d.get("watchdog")
    if raw is None and dog is None:
        return None
    where = f"job[{name}].ready"
    if not d.get("exec"):
        errs.add(f"{where} needs an exec: only a process can say it is ready")
        return None
    kw: dict[str, Any] = {}
    if raw == "notify":
        kw["kind"] = "notify"
    elif isinstance(raw, dict) and set(raw) == {"fd"}:
        fd = raw["fd"]
        if isinstance(fd, bool) or not isinstance(fd, (int, float)) or fd != int(fd) or not 3 <= fd <= 1023:
            errs.add(f"{where}.fd '{_v(fd)}' invalid: a file descriptor number from 3 to 1023 "
                     "(0-2 are the job's stdio)")
            return None
        kw["kind"], kw["fd"] = "fd", int(fd)
    elif raw is None:
        errs.add(f"job[{name}].watchdog needs ready: \"notify\" (the job pings it with WATCHDOG=1)")
        return None
    else:
        errs.add(f"{where} '{_v(raw)}' invalid: \"notify\" (sd_notify on NOTIFY_SOCKET) or "
                 "{fd: N} (a newline written to fd N)")
        return None
    if dog is not None:
        if kw["kind"] != "notify":
            errs.add(f"job[{name}].watchdog needs ready: \"notify\" (the job pings it with WATCHDOG=1)")
            return None
        try:
            ns = _duration(dog) if isinstance(dog, str) else -1
        except DurationError as e:
            errs.add(f"unable to parse job[{name}].watchdog '{_v(dog)}': {e}")
            return None
        if ns <= 0:
            errs.add(f"job[{name}].watchdog '{_v(dog)}' invalid: a duration greater than 0, such as \"10s\"")
            return None
        kw["watchdog"] = _secs(ns)
    return m.ReadyConfig(**kw)


def _job(d: dict[str, Any], errs: Collector, resolve: Resolver, loc: str = "") -> m.JobConfig:
    name: str = d.get("name", "")
    label = f", job {go_quote(name)}" if name else ""
    port: int = d.get("port", 0)
    health = d.get("health")
    kw: dict[str, Any] = {}
    # 1. health
    if port != 0 and health is None and name != "containerpilot":
        errs.add(f"job[{name}].health must be set if 'port' is set")
    if health is not None:
        kw["health"] = _health(name, health, errs)
    # 2. discovery: only for jobs with a port (a blank name always fails here)
    if port != 0 or name == "":
        status = d.get("initial_status", "")
        if status and status not in ("passing", "warning", "critical"):
            errs.add(f"job[{name}].initialStatus must be one of 'passing', 'warning' or 'critical'")
        name_err = validate_name(name)
        if name_err:
            errs.add(name_err + (f" (in {loc}.name{label})" if loc else ""))
        else:
            from .interfaces import InterfaceError, to_strings

            try:
                specs = to_strings(d.get("interfaces"))
                kw["ip"] = resolve(specs)
                if specs:
                    kw["interfaces"] = tuple(specs)
            except InterfaceError as e:
                errs.add(str(e) + (f" (in {loc}.interfaces{label})" if loc else ""))
            consul = d.get("consul")
            if consul is not None:
                dereg = consul.get("deregisterCriticalServiceAfter", "")
                if dereg != "":  # CP required it whenever the block was present: a bug, fixed here
                    try:
                        parse_go_duration(dereg)
                        kw["deregister_critical_service_after"] = dereg
                    except DurationError as e:
                        errs.add(f"unable to parse job[{name}].consul.deregisterCriticalServiceAfter: {e}")
                kw["enable_tag_override"] = bool(consul.get("enableTagOverride", False))
    # 3. when
    when_raw = d.get("when")
    when = _when(name, when_raw, errs)
    # 4. stopTimeout
    if d.get("stopTimeout"):
        try:
            kw["stop_timeout"] = _secs(_duration(d["stopTimeout"]))
        except DurationError as e:
            errs.add(f"unable to parse job[{name}].stopTimeout '{d['stopTimeout']}': {e}")
    # 5. restarts
    kw["restarts"] = _restarts(name, d.get("restarts"), when, (when_raw or {}).get("each", ""), errs)
    # 6. exec
    if d.get("timeout"):
        try:
            ns = _duration(d["timeout"])
            if ns < NS_PER_MS:
                errs.add(f"job[{name}].timeout '{d['timeout']}' cannot be less than 1ms")
            else:
                kw["timeout"] = _secs(ns)
        except DurationError as e:
            errs.add(f"unable to parse job[{name}].timeout '{d['timeout']}': {e}")
    elif when.interval:
        kw["timeout"] = when.interval
    if "exec" in d:
        try:
            kw["exec"] = parse_exec(d["exec"])
            _exec_warnings(f"job[{name}].exec", d["exec"], kw["exec"], errs)
        except ValueError as e:
            errs.add(f"unable to create job[{name}].exec: {e}")
    # beyond CP
    for key, field in (("stopSignal", "stop_signal"), ("reloadSignal", "reload_signal")):
        if key in d:
            sig = _signal_num(d[key])
            if sig is None:
                errs.add(f"job[{name}].{key} '{_v(d[key])}' invalid: unknown signal")
            else:
                kw[field] = sig
    kw["backoff"] = _backoff(name, d.get("backoff"), errs, loc)
    kw["exit_code_map"] = _exit_code_map(name, d.get("exitCodeMap"), errs)
    if any(k in d for k in PROCESS_KEYS):  # config/process.py (~0.5 M instructions) only for a job with them
        from .process import decode_process

        kw["process"] = decode_process(name, d, errs)
    kw["log"] = _job_log(name, d.get("logging"), errs)
    kw["ready"] = _ready(name, d, errs)
    return m.JobConfig(
        name=name, port=port, tags=tuple(d.get("tags") or ()), initial_status=d.get("initial_status") or None,
        when=when, raw_logging=bool((d.get("logging") or {}).get("raw", False)),
        main=bool(d.get("main", False)),
        **kw)


def _as_list(raw: Any) -> list[Any]:
    """CP's ``decode.ToSlice``: a non-array is ignored, null elements are dropped."""
    return [x for x in raw if x is not None] if isinstance(raw, list) else []


def _jobs(raw: Any, errs: Collector, resolve: Resolver) -> list[m.JobConfig]:
    items = _as_list(raw)
    decoded, bad, err = decode_list(items, _JOB, where="jobs", noun="job", warnings=errs.warnings)
    if err:
        errs.add(f"unable to parse jobs: job configuration error: {err}")
    jobs = []
    sub = _Prefixed(errs, "unable to parse jobs: ")
    for i, d in enumerate(decoded):
        if d is None or (bad[i] and "name" not in d):
            continue  # no object, or no usable name: checking further would only add noise
        before = len(errs)
        job = _job(d, sub, resolve, f"jobs[{i}]")  # type: ignore[arg-type]
        if len(errs) == before and not bad[i]:
            jobs.append(job)
    _unique_jobs(decoded, sub)
    return jobs


def _unique_jobs(decoded: list[dict[str, Any] | None], errs: _Prefixed) -> None:
    """Beyond CP, which ran both: a job name is defined once (jobs are addressed by name: events, the
    control API, reloads), and only one job can be the container's ``main`` one."""
    where: dict[str, list[int]] = {}
    mains: list[str] = []
    for i, d in enumerate(decoded):
        if d is None or not d.get("name"):
            continue
        where.setdefault(d["name"], []).append(i)
        if d.get("main"):
            mains.append(f"{go_quote(d['name'])} (jobs[{i}])")
    for name, idx in where.items():
        if len(idx) > 1:
            errs.add(f"job[{name}] is defined {len(idx)} times, at "
                     f"{', '.join(f'jobs[{i}]' for i in idx)}: job names must be unique")
    if len(mains) > 1:
        errs.add(f"only one job can have 'main: true'; {len(mains)} have it: {', '.join(mains)}")


class _Prefixed:
    """A view of a Collector that prefixes each message (CP wraps each section's errors)."""

    def __init__(self, errs: Collector, prefix: str) -> None:
        self.errs, self.prefix = errs, prefix

    def add(self, message: str) -> None:
        self.errs.add(self.prefix + message)

    def warn(self, message: str) -> None:
        self.errs.warn(message)

    @property
    def warnings(self) -> list[str]:
        return self.errs.warnings

    def __len__(self) -> int:
        return len(self.errs)


def _watches(raw: Any, errs: Collector) -> list[m.WatchConfig]:
    decoded, bad, err = decode_list(_as_list(raw), _WATCH, where="watches", noun="watch",
                                    warnings=errs.warnings)
    if err:
        errs.add(f"unable to parse watches: Watch configuration error: {err}")
    out = []
    for i, d in enumerate(decoded):
        if d is None or (bad[i] and "name" not in d):
            continue
        name = d.get("name", "")
        name_err = validate_name(name)
        if name_err:
            label = f", watch {go_quote(name)}" if name else ""
            errs.add(f"unable to parse watches: {name_err} (in watches[{i}].name{label})")
            continue
        if d.get("interval", 0) < 1:
            errs.add(f"unable to parse watches: watch[{name}].interval must be > 0")
            continue
        if not bad[i]:
            out.append(m.WatchConfig(name=name, interval=d["interval"], tag=d.get("tag") or None,
                                     dc=d.get("dc") or None))
    return out


def _telemetry(raw: Any, errs: Collector, resolve: Resolver, version: str) -> m.TelemetryConfig | None:
    if raw is None:
        return None
    d, err = decode_struct(raw, _TELEMETRY, where="telemetry", warnings=errs.warnings)
    if err:
        errs.add(f"telemetry configuration error: {err}")
    if d is None:
        return None
    from .interfaces import InterfaceError, to_strings

    port = d.get("port", 9090)
    specs = to_strings(d.get("interfaces") or None)
    ip = None
    try:
        ip = resolve(specs)
    except InterfaceError as e:
        errs.add(f"telemetry validation error: {e}")
    tags = tuple(d.get("tags") or ()) + ((version,) if version else ())
    metrics: list[m.MetricConfig] = []
    if "metrics" in d:
        decoded, bad, err = decode_list(d["metrics"], _METRIC, where="telemetry.metrics", noun="metric",
                                        warnings=errs.warnings)
        if err:
            errs.add(f"MetricConfig configuration error: {err}")
        seen = set(_BUILTIN_METRICS)
        for i, md in enumerate(decoded):
            if md is None or bad[i]:
                continue
            mc = m.MetricConfig(namespace=md.get("namespace", ""), subsystem=md.get("subsystem", ""),
                                name=md.get("name", ""), help=md.get("help", ""), type=md.get("type", ""))
            if mc.type not in ("counter", "gauge", "histogram", "summary"):
                errs.add(f"invalid metric type: {mc.type} (in telemetry.metrics[{i}].type)")
                continue
            full = mc.full_name
            if not _metric_name_ok(full):
                errs.add(f"descriptor for metric {go_quote(full)} is invalid: {go_quote(full)} is not a "
                         "valid "
                         "metric name")
                continue
            if not mc.help:
                errs.add(f"descriptor for metric {go_quote(full)} is invalid: empty help string")
                continue
            if full in seen:
                errs.add(f"metric {go_quote(full)}: duplicate metrics collector registration attempted")
                continue
            seen.add(full)
            metrics.append(mc)
    return m.TelemetryConfig(port=port, interfaces=tuple(specs) if specs else m.TelemetryConfig().interfaces,
                             ip=ip, tags=tags, metrics=tuple(metrics))


def _metric_name_ok(name: str) -> bool:
    if not name or not (name[0].isascii() and (name[0].isalpha() or name[0] in "_:")):
        return False
    return all(c.isascii() and (c.isalnum() or c in "_:") for c in name)


_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARN", "warning": "WARN", "error": "ERROR",
           "fatal": "FATAL", "panic": "PANIC"}


def _logging_values(d: dict[str, Any], errs: Collector) -> m.LoggingConfig:
    level = d.get("Level") or "INFO"
    fmt = d.get("Format") or "default"
    out = d.get("Output") or "stdout"
    norm_level = _LEVELS.get(level.lower())
    if norm_level is None:
        errs.add(f"Unknown log level '{level}': not a valid logrus Level: {go_quote(level)} "
                 "(in logging.level)")
        norm_level = "INFO"
    if fmt.lower() not in ("default", "text", "json"):
        errs.add(f"Unknown log format '{fmt}' (in logging.format)")
        fmt = "default"
    if out.lower() in ("stdout", "stderr"):
        out = out.lower()
    return m.LoggingConfig(level=norm_level, format=fmt.lower(), output=out)


def decode_config(raw: Any, env: Mapping[str, str], errs: Collector, resolve: Resolver,
                  version: str = "") -> m.Config:
    """Turn the parsed JSON5 top level into a Config, reporting each problem to ``errs`` in CP's order."""
    if raw is None:
        raw = {}
    logging, err = decode_struct(raw.get("logging"), _LOGGING, where="logging", warnings=errs.warnings)
    if err:
        errs.add(err)
    stop, err = decode_scalar("int", raw.get("stopTimeout"),
                              where="stopTimeout, a whole number of seconds such as 5")
    if err:
        errs.add(err)
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        errs.add(f"unknown config keys: [{' '.join(sorted(unknown))}]")
    consul = _consul(raw.get("consul"), env, errs)
    control = _control(raw.get("control"), errs)
    jobs = _jobs(raw.get("jobs"), errs, resolve)
    watches = _watches(raw.get("watches"), errs)
    telemetry = _telemetry(raw.get("telemetry"), errs, resolve, version)
    if telemetry is not None:
        clash = [i for i, j in enumerate(jobs) if j.name == "containerpilot"]
        if clash:
            errs.add("unable to parse jobs: job[containerpilot] clashes with the job that telemetry adds "
                     "under that name: rename it")
        # CP appends the telemetry service as a job named "containerpilot" (always healthy, 5 s / 15 s TTL)
        jobs.append(m.JobConfig(name="containerpilot", port=telemetry.port, interfaces=telemetry.interfaces,
                                ip=telemetry.ip, tags=telemetry.tags,
                                health=m.HealthConfig(interval=5.0, ttl=15, timeout=5.0)))
    log_cfg = _logging_values(logging or {}, errs)
    return m.Config(consul=consul, logging=log_cfg, jobs=tuple(jobs), watches=tuple(watches),
                    telemetry=telemetry,
                    control=control, stop_timeout=float(stop) if stop else 5.0)
