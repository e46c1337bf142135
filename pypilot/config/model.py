"""The typed, immutable configuration that the rest of pypilot reads.

The loader (``pypilot.config.loader``) turns a ContainerPilot 3 JSON5 file into these objects after every
validation rule has passed; nothing downstream re-validates. Durations are float seconds, signals are
numbers, ``restarts`` is an int with ``UNLIMITED`` for CP's "unlimited". Field names follow the config
keys in snake_case; keys that go beyond ContainerPilot are marked so in their comment.
"""

from __future__ import annotations

import _signal  # the C module, not signal: signal.py builds IntEnums (enum, functools: ~3 M instructions)

from .record import Record, field, record

UNLIMITED = -1
DEFAULT_SOCKET = "/var/run/containerpilot.socket"


@record
class Backoff(Record):
    """Restart backoff for a crash-looping job (beyond CP): Kubernetes' shape."""

    initial: float = 0.1  # delay after the second failed run in a row; the first restart is immediate
    factor: float = 2.0
    max: float = 30.0
    reset_after: float = 10.0  # a run at least this long resets the delay


@record
class HealthConfig(Record):
    exec: tuple[str, ...] | None = None
    interval: float = 0.0  # seconds (CP: int seconds, required >= 1)
    ttl: int = 0
    timeout: float = 0.0  # defaults to interval
    raw_logging: bool = False
    # beyond CP: native probes and thresholds
    http: str | None = None
    tcp: str | None = None
    success_threshold: int = 1
    failure_threshold: int = 1
    initial_delay: float = 0.0


@record
class Trigger(Record):
    """One (source, event) pair that can start a job."""

    source: str
    event: str  # a CP event name: exitSuccess, healthy, stopping, changed, ...


@record
class WhenConfig(Record):
    """When a job starts. All None = once on ``startup`` from ``global``."""

    source: str | None = None
    once: str | None = None
    each: str | None = None
    interval: float | None = None
    timeout: float | None = None
    # beyond CP (#435): start once every trigger here has fired (AND), each at least once
    all: tuple[Trigger, ...] = ()


@record
class ProcessConfig(Record):
    """Beyond CP: how a job's process is started (``user``, ``group``, ``workdir``, ``umask``, ``rlimits``,
    ``noNewPrivileges``, ``ppidShim``), resolved at load: names are uids/gids already."""

    user: str | None = None  # as configured, for messages
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None  # supplementary groups; None = PID 1's
    env: tuple[tuple[str, str | None], ...] = ()  # HOME, USER, LOGNAME for the user (None = unset)
    workdir: str | None = None
    umask: int | None = None
    rlimits: tuple[tuple[int, int, int], ...] = ()  # (RLIMIT_*, soft, hard); -1 = unlimited
    no_new_privileges: bool = False
    ppid_shim: bool = False

    def identity(self) -> ProcessConfig:
        """Only who the process runs as: what a job's exec health check takes from it."""
        return ProcessConfig(user=self.user, uid=self.uid, gid=self.gid, groups=self.groups, env=self.env)


@record
class JobLogConfig(Record):
    """A job's output to its own file, rotated by size (beyond CP: the job's ``logging.file``)."""

    file: str
    max_size: int = 10 << 20  # bytes; 0 = never rotate (an external logrotate, with SIGUSR1)
    keep: int = 5  # rotated files kept: file.1 (newest) ... file.<keep>; 0 = truncate instead
    timestamps: bool = False  # prefix each line with the time it was read


@record
class ReadyConfig(Record):
    """Beyond CP: how a job says it is ready (``ready``, ``watchdog``): the sd_notify protocol on a
    per-job ``NOTIFY_SOCKET`` (``kind`` "notify"), or s6's notification fd (``kind`` "fd")."""

    kind: str  # "notify" | "fd"
    fd: int = -1  # kind "fd": the job's fd number the pipe's write end is put at
    watchdog: float = 0.0  # seconds; kind "notify" only: a job silent (no WATCHDOG=1) this long is restarted


@record
class JobConfig(Record):
    name: str
    exec: tuple[str, ...] | None = None
    port: int = 0
    tags: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ("eth0:inet", "inet")
    ip: str | None = None  # resolved from interfaces when port != 0
    initial_status: str | None = None
    enable_tag_override: bool = False
    deregister_critical_service_after: str | None = None
    health: HealthConfig | None = None
    when: WhenConfig = field(default_factory=WhenConfig)
    timeout: float | None = None  # exec timeout; interval jobs default to the interval
    stop_timeout: float = 0.0
    restarts: int = 0  # UNLIMITED = -1
    raw_logging: bool = False
    # beyond CP
    stop_signal: int = _signal.SIGTERM
    reload_signal: int | None = None
    backoff: Backoff | None = field(default_factory=Backoff)  # None = off
    main: bool = False  # the container exits with this job's code when it ends for good
    exit_code_map: tuple[tuple[int, int], ...] = ()  # e.g. ((143, 0),)
    process: ProcessConfig | None = None  # None: started as ContainerPilot started it
    interactive: bool = False  # tini mode's job (no config key): pypilot's stdin, its terminal's foreground
    log: JobLogConfig | None = None  # logging.file: the job's lines to a file, not pypilot's log
    ready: ReadyConfig | None = None  # ready/watchdog: None = healthy only by its health check, as in CP

    @property
    def has_service(self) -> bool:
        return self.port != 0


@record
class WatchConfig(Record):
    name: str
    interval: int
    tag: str | None = None
    dc: str | None = None


@record
class MetricConfig(Record):
    namespace: str
    subsystem: str
    name: str
    help: str
    type: str  # counter | gauge | histogram | summary

    @property
    def full_name(self) -> str:
        return "_".join(p for p in (self.namespace, self.subsystem, self.name) if p)


@record
class TelemetryConfig(Record):
    port: int = 9090
    interfaces: tuple[str, ...] = ("eth0:inet", "inet")
    ip: str | None = None
    tags: tuple[str, ...] = ()
    metrics: tuple[MetricConfig, ...] = ()


@record
class TLSConfig(Record):
    cafile: str | None = None
    capath: str | None = None
    clientcert: str | None = None
    clientkey: str | None = None
    servername: str | None = None
    verify: bool = True  # beyond CP: CP defaulted to False; an explicit false turns it off


@record
class ConsulConfig(Record):
    address: str = "127.0.0.1:8500"
    scheme: str = "http"
    token: str | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)


@record
class LoggingConfig(Record):
    level: str = "INFO"  # DEBUG INFO WARN ERROR FATAL PANIC
    format: str = "default"  # default | text | json
    output: str = "stdout"  # stdout | stderr | a file path


@record
class ControlConfig(Record):
    socket: str = DEFAULT_SOCKET
    # beyond CP
    socket_mode: int = 0o600
    reload: str = "restart"  # restart (CP: every job restarts) | diff (beyond CP: only what changed)
    reload_grace: float = 30.0
    allow_uids: tuple[int, ...] = ()  # connecting uids accepted (SO_PEERCRED); () = any the mode lets in
    worker_idle: float = 60.0  # the control worker exits after this long with no connection; 0: it stays


@record
class Config(Record):
    consul: ConsulConfig | None
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    jobs: tuple[JobConfig, ...] = ()
    watches: tuple[WatchConfig, ...] = ()
    telemetry: TelemetryConfig | None = None
    control: ControlConfig = field(default_factory=ControlConfig)
    stop_timeout: float = 5.0  # seconds; negative = no grace before the final SIGKILL
    path: str | None = None  # where it was loaded from (for reloads)
